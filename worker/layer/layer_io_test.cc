// Layers to and from the CAS: digests computed in one pass, verified unpacking.
#include "worker/layer/layer_io.h"

#include <sys/stat.h>

#include <string>

#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::layer {
namespace {

class StringSink : public common::ByteSink {
 public:
  absl::Status Write(absl::string_view d) override {
    out.append(d.data(), d.size());
    return absl::OkStatus();
  }
  std::string out;
};

class LayerIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("layer-io-test");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    src_ = tmp_->path() + "/src";
    ASSERT_OK(testing::WriteFile(src_ + "/etc/motd", "hello\n"));
    ASSERT_OK(testing::WriteFile(src_ + "/big", std::string(3 << 20, 'b')));
    ASSERT_OK(testing::Whiteout(src_ + "/bin/vi"));
  }
  std::shared_ptr<cache::testing::MemoryBlobStore> cas_ =
      std::make_shared<cache::testing::MemoryBlobStore>();
  std::unique_ptr<common::TempDir> tmp_;
  std::string src_;
};

TEST_F(LayerIoTest, WriteThenUnpackEachCompression) {
  for (oci::Compression c :
       {oci::Compression::kGzip, oci::Compression::kZstd, oci::Compression::kNone}) {
    WriteOptions opts;
    opts.compression.compression = c;
    opts.source_date_epoch = 0;
    opts.spool_dir = tmp_->path();
    auto written = WriteLayerFromDir(src_, opts, cas_.get());
    ASSERT_OK(written);
    EXPECT_FALSE(written->empty);
    EXPECT_EQ(written->media_type, oci::LayerMediaType(c, /*docker=*/false));

    // The blob in the CAS decompresses to a tar whose digest is the diff_id.
    auto blob = cas_->ReadBlob(written->blob, 64 << 20);
    ASSERT_OK(blob);
    StringSink tar;
    auto d = oci::Decompressor::Create(&tar);
    ASSERT_OK(d->Write(*blob));
    ASSERT_OK(d->Finish());
    EXPECT_EQ(common::DigestOf(tar.out), written->diff_id);

    std::string dest = tmp_->path() + "/dest-" + oci::CompressionName(c);
    ASSERT_OK(common::MakeDirs(dest));
    auto unpacked = UnpackLayerBlob(cas_.get(), written->blob, written->diff_id, dest);
    ASSERT_OK(unpacked);
    EXPECT_EQ(unpacked->format, c);
    EXPECT_EQ(*common::ReadFile(dest + "/etc/motd"), "hello\n");
    EXPECT_TRUE(testing::IsWhiteout(dest + "/bin/vi"));
  }
}

TEST_F(LayerIoTest, SameTreeSameDigestsEveryTime) {
  WriteOptions opts;
  opts.source_date_epoch = 0;
  auto a = WriteLayerFromDir(src_, opts, cas_.get());
  auto b = WriteLayerFromDir(src_, opts, cas_.get());
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ(a->blob, b->blob);
  EXPECT_EQ(a->diff_id, b->diff_id);
}

TEST_F(LayerIoTest, HashedNowStoredLaterFromTheSameTreeGivesTheSameBlob) {
  WriteOptions opts;
  opts.compression.compression = oci::Compression::kNone;
  opts.source_date_epoch = 0;
  opts.spool_dir = tmp_->path();
  auto stored = WriteLayerFromDir(src_, opts, cas_.get());  // the usual way, for reference
  ASSERT_OK(stored);
  auto other_cas = std::make_shared<cache::testing::MemoryBlobStore>();
  opts.store = false;
  opts.spool = false;
  opts.normalize_tree = true;
  auto hashed = WriteLayerFromDir(src_, opts, other_cas.get());
  ASSERT_OK(hashed);
  EXPECT_EQ(hashed->spool_fd, -1);
  EXPECT_EQ(hashed->diff_id, stored->diff_id);
  EXPECT_EQ(hashed->blob, stored->blob);
  EXPECT_FALSE(*other_cas->Has(hashed->blob));  // nothing stored, nothing spooled
  ASSERT_OK(StoreLayerFromDir(src_, hashed->blob, opts, other_cas.get()));
  EXPECT_EQ(*other_cas->ReadBlob(hashed->blob, 64 << 20), *cas_->ReadBlob(stored->blob, 64 << 20));
  ASSERT_OK(StoreLayerFromDir(src_, hashed->blob, opts, other_cas.get()));  // present: nothing

  // A tree that changed since it was hashed is not stored under the old digest.
  auto third_cas = std::make_shared<cache::testing::MemoryBlobStore>();
  ASSERT_OK(testing::WriteFile(src_ + "/etc/motd", "changed\n"));
  absl::Status s = StoreLayerFromDir(src_, hashed->blob, opts, third_cas.get());
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(*third_cas->Has(hashed->blob));
  // Compressed layers are spooled, never archived twice.
  opts.compression.compression = oci::Compression::kGzip;
  EXPECT_EQ(WriteLayerFromDir(src_, opts, third_cas.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LayerIoTest, EmptyTreeUploadsNothing) {
  std::string empty = tmp_->path() + "/empty";
  ASSERT_OK(common::MakeDirs(empty));
  auto w = WriteLayerFromDir(empty, {}, cas_.get());
  ASSERT_OK(w);
  EXPECT_TRUE(w->empty);
  EXPECT_EQ(cas_->size(), 0u);
}

TEST_F(LayerIoTest, UnpackVerifiesDigests) {
  auto w = WriteLayerFromDir(src_, {}, cas_.get());
  ASSERT_OK(w);
  std::string dest = tmp_->path() + "/d1";
  ASSERT_OK(common::MakeDirs(dest));
  common::Digest wrong = common::DigestOf("not the tar");
  absl::Status s = UnpackLayerBlob(cas_.get(), w->blob, wrong, dest).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find(wrong.OciString()), std::string::npos) << s;

  s = UnpackLayerBlob(cas_.get(), common::DigestOf("absent"), w->diff_id, dest).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

// A decompression bomb in miniature: a gzip blob of a few KiB that expands to 16 MiB, against
// a 1 MiB bound. Refused up front when the descriptor's diff_id gives the size, and while
// streaming when it does not; either way nothing near the full size reaches the disk.
TEST_F(LayerIoTest, UnpackStopsAtTheUncompressedSizeLimit) {
  std::string bomb = tmp_->path() + "/bomb";
  ASSERT_OK(testing::WriteFile(bomb + "/zeros", std::string(16 << 20, '\0')));
  WriteOptions wo;
  wo.compression.compression = oci::Compression::kGzip;
  auto w = WriteLayerFromDir(bomb, wo, cas_.get());
  ASSERT_OK(w);
  ASSERT_LT(w->blob.size_bytes, 64 << 10);  // small on the wire
  ASSERT_GT(w->diff_id.size_bytes, 16 << 20);
  UnpackLimits limits;
  limits.max_uncompressed_bytes = 1 << 20;

  std::string d1 = tmp_->path() + "/d1";
  ASSERT_OK(common::MakeDirs(d1));
  absl::Status s = UnpackLayerBlob(cas_.get(), w->blob, w->diff_id, d1, limits).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(std::string(s.message()).find(w->blob.OciString()), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("1 MiB"), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("--extract-max-size"), std::string::npos) << s;
  EXPECT_FALSE(common::PathExists(d1 + "/zeros"));

  // A descriptor that does not say (or lies): the stream itself is cut at the bound.
  common::Digest unsized = w->diff_id;
  unsized.size_bytes = 0;
  std::string d2 = tmp_->path() + "/d2";
  ASSERT_OK(common::MakeDirs(d2));
  s = UnpackLayerBlob(cas_.get(), w->blob, unsized, d2, limits).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(std::string(s.message()).find(w->blob.OciString()), std::string::npos) << s;
  EXPECT_NE(std::string(s.message()).find("extract-max-size"), std::string::npos) << s;
  struct stat st;
  if (stat((d2 + "/zeros").c_str(), &st) == 0) {
    EXPECT_LE(st.st_size, 1 << 20);
  }

  // Under a bound it fits, it unpacks.
  limits.max_uncompressed_bytes = 64 << 20;
  std::string d3 = tmp_->path() + "/d3";
  ASSERT_OK(common::MakeDirs(d3));
  ASSERT_OK(UnpackLayerBlob(cas_.get(), w->blob, w->diff_id, d3, limits).status());
  ASSERT_EQ(stat((d3 + "/zeros").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 16 << 20);
}

}  // namespace
}  // namespace farm::worker::layer
