#include "cli/image_fetch.h"

#include <memory>
#include <string>
#include <vector>

#include "cache/rocksdb_blob_store.h"
#include "common/digest.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oci/manifest.h"
#include "oci/media_types.h"

namespace farm::cli {
namespace {

using ::testing::HasSubstr;

class ImageFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("image-fetch");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    remote_ = Open("remote");
    local_ = Open("local");
  }

  std::unique_ptr<cache::RocksDbBlobStore> Open(const std::string& name) {
    cache::RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), name);
    o.max_size = 1 << 30;
    auto s = cache::RocksDbBlobStore::Create(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  oci::Descriptor Put(cache::BlobStore& store, const std::string& data, const char* type) {
    common::Digest d = common::DigestOf(data);
    EXPECT_TRUE(store.WriteBlob(d, data).ok());
    oci::Descriptor desc;
    desc.media_type = type;
    desc.digest = d.OciString();
    desc.size = d.size_bytes;
    return desc;
  }

  // An image in `remote_` with `n` layers (the i-th holding `layer_bytes` bytes); its manifest.
  oci::Descriptor Image(int n, int layer_bytes, const std::string& salt = "") {
    oci::Manifest m;
    m.media_type = oci::kOciManifest;
    m.config = Put(*remote_, "{\"config\":\"" + salt + "\"}", oci::kOciConfig);
    for (int i = 0; i < n; ++i) {
      m.layers.push_back(
          Put(*remote_, std::string(layer_bytes, 'a' + i) + salt, oci::kOciLayerGzip));
    }
    layers_ = m.layers;
    return Put(*remote_, m.ToJson(), oci::kOciManifest);
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::unique_ptr<cache::RocksDbBlobStore> remote_, local_;
  std::vector<oci::Descriptor> layers_;
};

TEST_F(ImageFetchTest, FetchesOnlyWhatIsMissingThenNothing) {
  oci::Descriptor top = Image(3, 3 << 20);
  // One layer is already local.
  ASSERT_TRUE(local_
                  ->WriteBlob(*common::Digest::ParseOci(layers_[1].digest, layers_[1].size),
                              std::string(3 << 20, 'b'))
                  .ok());
  int calls = 0;
  FetchOptions o;
  o.progress = [&](const FetchStats&) { ++calls; };
  auto st = FetchImage(*remote_, *local_, top, o);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->layers, 3);
  EXPECT_EQ(st->layers_fetched, 2);
  EXPECT_EQ(st->blobs, 5);          // manifest, config, 3 layers
  EXPECT_EQ(st->blobs_fetched, 4);  // manifest, config, 2 layers
  EXPECT_EQ(st->bytes_fetched, top.size + st->bytes_total - top.size - (3 << 20));
  EXPECT_EQ(calls, 3);  // config and the two layers (the manifest is read first)
  EXPECT_EQ(st->Summary(), "fetched 2 of 3 layers, 6.292MB");

  // Everything is local now: nothing moves.
  auto again = FetchImage(*remote_, *local_, top, o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->blobs_fetched, 0);
  EXPECT_EQ(again->Summary(), "all 3 layers were local");
  std::vector<common::Digest> all;
  for (const auto& l : layers_) all.push_back(*common::Digest::ParseOci(l.digest, l.size));
  EXPECT_TRUE(local_->FindMissing(all)->empty());
}

TEST_F(ImageFetchTest, AMissingBlobIsNamedAndWhatLandedStays) {
  oci::Descriptor top = Image(2, 1000);
  common::Digest gone = *common::Digest::ParseOci(layers_[0].digest, layers_[0].size);
  ASSERT_TRUE(remote_->Remove({gone}).ok());
  FetchOptions o;
  o.parallel = 1;
  auto st = FetchImage(*remote_, *local_, top, o);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(absl::IsNotFound(st.status())) << st.status();
  EXPECT_THAT(std::string(st.status().message()), HasSubstr(gone.OciString()));
  // The manifest (read first) is kept locally: a second attempt resumes.
  EXPECT_TRUE(local_->ReadBlob(*common::Digest::ParseOci(top.digest, top.size)).ok());
}

TEST_F(ImageFetchTest, AnIndexBringsEveryPlatform) {
  oci::Descriptor a = Image(1, 100, "amd64");
  oci::Descriptor b = Image(2, 100, "arm64");
  oci::Index index;
  index.media_type = oci::kOciIndex;
  index.manifests = {a, b};
  oci::Descriptor top = Put(*remote_, index.ToJson(), oci::kOciIndex);
  auto st = FetchImage(*remote_, *local_, top, FetchOptions());
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->layers, 3);
  EXPECT_EQ(st->blobs, 8);  // index, 2 manifests, 2 configs, 3 layers
  EXPECT_EQ(st->blobs_fetched, 8);
}

}  // namespace
}  // namespace farm::cli
