#include "scheduler/image/store.h"

#include <algorithm>
#include <string>

#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "scheduler/image/assemble.h"
#include "scheduler/image/testing/layers.h"

namespace farm::scheduler::image {
namespace {

using testing::MakeTar;
using testing::PutLayer;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<common::TempDir>(common::TempDir::Create("imgstore").value());
    store_ = RocksDbImageStore::Create(tmp_->path() + "/images").value();
    shared_ = PutLayer(cas_, MakeTar({{"shared", "s"}}), oci::Compression::kGzip).value();
  }

  // An image with the shared layer plus one of its own, described from the CAS.
  ImageRecord MakeImage(const std::string& content) {
    farm::v1::Layer own =
        PutLayer(cas_, MakeTar({{"f", content}}), oci::Compression::kGzip).value();
    AssembleRequest r;
    r.steps.push_back({"COPY shared / # buildkit", shared_});
    r.steps.push_back({"COPY f / # buildkit", own});
    r.source_date_epoch = 0;
    AssembledImage img = Assemble(cas_, r).value();
    ImageRecord rec = DescribeImage(cas_, img.manifest, img.layers).value();
    EXPECT_TRUE(store_->Put(rec).ok());
    return rec;
  }

  oci::Reference Ref(const std::string& s) {
    return oci::Reference::ParseWithDefaultTag(s).value();
  }

  std::unique_ptr<common::TempDir> tmp_;
  cache::testing::MemoryBlobStore cas_;
  std::unique_ptr<RocksDbImageStore> store_;
  farm::v1::Layer shared_;
};

TEST_F(StoreTest, RecordsRoundTripAndSurviveReopen) {
  ImageRecord a = MakeImage("a");
  ASSERT_EQ(a.manifests.size(), 1u);
  EXPECT_EQ(a.manifests[0].layers.size(), 2u);
  EXPECT_GT(a.manifests[0].layers[1].uncompressed_size(), 0);
  EXPECT_EQ(a.created, "1970-01-01T00:00:00Z");
  EXPECT_EQ(a.manifests[0].platform, "linux/amd64");
  EXPECT_EQ(a.Blobs().size(), 4u);  // manifest, config, 2 layers
  ASSERT_TRUE(store_->SetReference(Ref("alpine"), a.digest).ok());
  store_.reset();
  store_ = RocksDbImageStore::Create(tmp_->path() + "/images").value();
  ImageRecord back = store_->Get(a.digest).value();
  EXPECT_EQ(back.ToJson().size() > 0, true);
  EXPECT_EQ(back.Id(), a.Id());
  EXPECT_GT(back.added_unix, 0);
  EXPECT_GT(back.last_tag_unix, 0);
  EXPECT_EQ(store_->ResolveReference(Ref("docker.io/library/alpine:latest")).value(), a.digest);
  // Put merges sources instead of replacing them.
  ImageRecord upd = a;
  upd.sources = {"localhost:5000/x"};
  ASSERT_TRUE(store_->Put(upd).ok());
  upd.sources = {"localhost:5000/y"};
  ASSERT_TRUE(store_->Put(upd).ok());
  EXPECT_EQ(store_->Get(a.digest).value().sources.size(), 2u);
}

TEST_F(StoreTest, TagsMoveDigestsDoNot) {
  ImageRecord a = MakeImage("a"), b = MakeImage("b");
  EXPECT_EQ(store_->SetReference(Ref("app:1"), a.digest).value(), "");
  EXPECT_EQ(store_->SetReference(Ref("app:1"), b.digest).value(), a.digest);  // moved
  EXPECT_TRUE(store_->ReferencesTo(a.digest).value().empty());                // a is dangling
  EXPECT_EQ(store_->ReferencesTo(b.digest).value().size(), 1u);
  // A digest reference can only name its own image.
  oci::Reference by_digest = Ref("app").WithDigest(a.digest);
  EXPECT_TRUE(store_->SetReference(by_digest, a.digest).ok());
  EXPECT_EQ(store_->SetReference(by_digest, b.digest).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->SetReference(Ref("app:2"), "sha256:" + std::string(64, '0')).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, LookupByNameIdPrefixAndDigest) {
  ImageRecord a = MakeImage("a");
  ASSERT_TRUE(TagImage(*store_, a.digest, "alpine").ok());
  EXPECT_EQ(LookupImage(*store_, "alpine").value().digest, a.digest);
  EXPECT_EQ(LookupImage(*store_, "alpine:latest").value().digest, a.digest);
  EXPECT_EQ(LookupImage(*store_, "docker.io/library/alpine").value().digest, a.digest);
  EXPECT_EQ(LookupImage(*store_, a.Id()).value().digest, a.digest);                // sha256:…
  EXPECT_EQ(LookupImage(*store_, a.Id().substr(7)).value().digest, a.digest);      // 64 hex
  EXPECT_EQ(LookupImage(*store_, a.Id().substr(7, 12)).value().digest, a.digest);  // short
  EXPECT_EQ(LookupImage(*store_, a.digest).value().digest, a.digest);  // manifest digest
  EXPECT_EQ(LookupImage(*store_, "alpine@" + a.digest).value().digest, a.digest);
  EXPECT_EQ(LookupImage(*store_, "other@" + a.digest).value().digest, a.digest);
  absl::StatusOr<ImageRecord> missing = LookupImage(*store_, "busybox");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "No such image: busybox:latest");
  EXPECT_EQ(LookupImage(*store_, "Bad Name").status().code(), absl::StatusCode::kInvalidArgument);
  // An image selected from an index answers to NAME@<index digest>.
  ImageRecord withidx = a;
  std::string idx = "sha256:" + std::string(64, 'e');
  withidx.index_digests = {idx};
  ASSERT_TRUE(store_->Put(withidx).ok());
  ASSERT_TRUE(store_->SetReference(Ref("alpine").WithDigest(idx), a.digest).ok());
  EXPECT_EQ(LookupImage(*store_, "alpine@" + idx).value().digest, a.digest);
}

TEST_F(StoreTest, RmiOfOneTagOnlyUntags) {
  ImageRecord a = MakeImage("a");
  ASSERT_TRUE(TagImage(*store_, a.digest, "app:1").ok());
  ASSERT_TRUE(TagImage(*store_, a.digest, "app:2").ok());
  RemoveResult r = RemoveImage(*store_, "app:1", false).value();
  EXPECT_EQ(r.untagged, std::vector<std::string>{"app:1"});
  EXPECT_TRUE(r.deleted.empty());
  EXPECT_TRUE(store_->Get(a.digest).ok());
  // The last tag deletes the image, with the repository's digest references.
  ASSERT_TRUE(store_->SetReference(Ref("app").WithDigest(a.digest), a.digest).ok());
  r = RemoveImage(*store_, "app:2", false).value();
  EXPECT_EQ(r.untagged, (std::vector<std::string>{"app:2", "app@" + a.digest}));
  EXPECT_EQ(r.deleted, std::vector<std::string>{a.Id()});
  EXPECT_EQ(store_->Get(a.digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.unreferenced_blobs.size(), 4u);
  EXPECT_EQ(RemoveImage(*store_, "app:2", false).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, RmiByIdNeedsForceAcrossRepositories) {
  ImageRecord a = MakeImage("a"), b = MakeImage("b");
  ASSERT_TRUE(TagImage(*store_, a.digest, "one:1").ok());
  ASSERT_TRUE(TagImage(*store_, a.digest, "two:1").ok());
  ASSERT_TRUE(TagImage(*store_, b.digest, "keep").ok());
  absl::StatusOr<RemoveResult> r = RemoveImage(*store_, a.Id().substr(7, 12), false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(r.status().message()).find("must be forced"), std::string::npos);
  r = RemoveImage(*store_, a.Id(), true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->untagged.size(), 2u);
  EXPECT_EQ(r->deleted, std::vector<std::string>{a.Id()});
  // The shared base layer is still held by b: only a's own blobs are unreferenced.
  EXPECT_EQ(r->unreferenced_blobs.size(), 3u);
  EXPECT_EQ(std::count(r->unreferenced_blobs.begin(), r->unreferenced_blobs.end(),
                       common::Digest::ParseOci(shared_.digest(), shared_.size()).value()),
            0);
  // A single tag: removal by ID untags it and deletes.
  r = RemoveImage(*store_, b.Id(), false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->untagged, std::vector<std::string>{"keep:latest"});
  EXPECT_EQ(r->unreferenced_blobs.size(), 4u);
  // A dangling image goes by ID without force.
  ImageRecord c = MakeImage("c");
  EXPECT_TRUE(RemoveImage(*store_, c.Id(), false).ok());
}

TEST_F(StoreTest, AmbiguousPrefixAndTagErrors) {
  // Two images whose IDs share the first hex digit exist with high probability among 40;
  // find a common prefix and check it is refused.
  std::vector<ImageRecord> all;
  for (int i = 0; i < 40; ++i) all.push_back(MakeImage(std::to_string(i)));
  std::string prefix;
  for (size_t i = 0; i < all.size() && prefix.empty(); ++i) {
    for (size_t j = i + 1; j < all.size(); ++j) {
      if (all[i].Id()[7] == all[j].Id()[7]) {
        prefix = all[i].Id().substr(7, 1);
        break;
      }
    }
  }
  ASSERT_FALSE(prefix.empty());
  absl::StatusOr<ImageRecord> amb = LookupImage(*store_, prefix);
  ASSERT_FALSE(amb.ok());
  EXPECT_NE(std::string(amb.status().message()).find("multiple IDs"), std::string::npos);
  absl::Status t = TagImage(*store_, all[0].digest, "x@sha256:" + std::string(64, 'a'));
  EXPECT_EQ(t.message(), "refusing to create a tag with a digest reference");
  t = TagImage(*store_, all[0].digest, "Bad:tag");
  EXPECT_NE(std::string(t.message()).find("is not a valid repository/tag"), std::string::npos);
}

TEST_F(StoreTest, DescribeIndexAndRejectBrokenImages) {
  farm::v1::Layer own = PutLayer(cas_, MakeTar({{"f", "x"}}), oci::Compression::kGzip).value();
  AssembleRequest r;
  r.steps.push_back({"COPY f / # buildkit", own});
  r.source_date_epoch = 0;
  AssembledImage amd = Assemble(cas_, r).value();
  r.config.architecture = "arm64";
  AssembledImage arm = Assemble(cas_, r).value();
  oci::Descriptor idx = AssembleIndex(cas_, {amd, arm}, ManifestFormat::kOci).value();
  ImageRecord rec = DescribeImage(cas_, idx).value();
  EXPECT_TRUE(rec.is_index());
  EXPECT_EQ(rec.Id(), idx.digest);
  ASSERT_EQ(rec.manifests.size(), 2u);
  EXPECT_EQ(rec.ForPlatform(oci::Platform::Parse("linux/arm64").value()).value()->digest,
            arm.manifest.digest);
  absl::StatusOr<const StoredManifest*> none =
      rec.ForPlatform(oci::Platform::Parse("linux/s390x").value());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(rec.Blobs().size(), 6u);  // index, 2 manifests, 2 configs, 1 shared layer

  // A missing layer is named.
  cas_.Remove(common::Digest::ParseOci(own.digest(), own.size()).value());
  absl::StatusOr<ImageRecord> broken = DescribeImage(cas_, amd.manifest);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(std::string(broken.status().message()).find(own.digest()), std::string::npos);
}

}  // namespace
}  // namespace farm::scheduler::image
