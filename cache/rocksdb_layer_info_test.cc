// RocksDbBlobStore::GetLayerInfo: what a blob is as a layer, worked out while it is written
// (small blobs, large ones streamed in odd pieces, batches), kept across a restart, dropped
// with the blob, and computed once for blobs a format-1 directory stored without it.
#include <string>

#include "cache/rocksdb_blob_store.h"
#include "cache/rocksdb_format.h"
#include "cache/rocksdb_store.h"
#include "cache/testing/test_util.h"
#include "common/byte_sink.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oci/compression.h"

namespace farm::cache {
namespace {

using ::farm::cache::testing::RandomBytes;
using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

std::string Compress(oci::Compression c, const std::string& data) {
  std::string out;
  common::FunctionSink sink([&](absl::string_view b) {
    out.append(b.data(), b.size());
    return absl::OkStatus();
  });
  oci::CompressionOptions o;
  o.compression = c;
  o.threads = 1;
  auto comp = oci::Compressor::Create(o, &sink);
  EXPECT_TRUE(comp.ok());
  EXPECT_TRUE((*comp)->Write(data).ok());
  EXPECT_TRUE((*comp)->Finish().ok());
  return out;
}

class RocksDbLayerInfoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("layer-info");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    options_.dir = common::JoinPath(tmp_->path(), "cache");
    options_.max_size = 256 * kMiB;
  }
  std::unique_ptr<RocksDbBlobStore> Open() {
    auto store = RocksDbBlobStore::Create(options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  // Writes `data` through one writer in pieces of 1 byte, then `piece` bytes.
  static void WriteInPieces(BlobStore& store, const std::string& data, size_t piece) {
    Digest d = common::DigestOf(data);
    auto w = store.BeginWrite(d);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(0, 1)).ok());
    for (size_t at = 1; at < data.size(); at += piece) {
      ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(at, piece)).ok());
    }
    ASSERT_TRUE((*w)->Commit().ok());
  }
  absl::StatusOr<LayerInfo> InfoOf(BlobStore& store, const Digest& d) {
    auto infos = store.GetLayerInfo({d});
    EXPECT_TRUE(infos.ok()) << infos.status();
    if (!infos.ok()) return infos.status();
    EXPECT_EQ(infos->size(), 1u);
    return (*infos)[0];
  }

  std::unique_ptr<common::TempDir> tmp_;
  RocksDbStoreOptions options_;
};

TEST_F(RocksDbLayerInfoTest, ComputedWhileWritingAndKeptAcrossARestart) {
  const std::string tar = RandomBytes(3 * kMiB, 1) + std::string(2 * kMiB, 'z');
  const std::string gz = Compress(oci::Compression::kGzip, tar);
  const std::string zst = Compress(oci::Compression::kZstd, "small tar");
  const std::string plain = RandomBytes(2 * kMiB, 2);
  ASSERT_GT(static_cast<int64_t>(gz.size()), options_.inline_max);  // the streamed path
  const Digest gz_d = common::DigestOf(gz), zst_d = common::DigestOf(zst),
               plain_d = common::DigestOf(plain);
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    WriteInPieces(*store, gz, 70000);
    ASSERT_TRUE(store->Put(zst).ok());
    WriteInPieces(*store, plain, 1 << 16);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto infos = store->GetLayerInfo(
      {gz_d, zst_d, plain_d, common::DigestOf("never stored"), Digest::Empty()});
  ASSERT_TRUE(infos.ok()) << infos.status();
  ASSERT_EQ(infos->size(), 5u);
  ASSERT_TRUE((*infos)[0].ok()) << (*infos)[0].status();
  EXPECT_EQ((*infos)[0]->compression, oci::Compression::kGzip);
  EXPECT_EQ((*infos)[0]->diff_id, common::DigestOf(tar));
  ASSERT_TRUE((*infos)[1].ok()) << (*infos)[1].status();
  EXPECT_EQ((*infos)[1]->compression, oci::Compression::kZstd);
  EXPECT_EQ((*infos)[1]->diff_id, common::DigestOf("small tar"));
  ASSERT_TRUE((*infos)[2].ok());
  EXPECT_EQ((*infos)[2]->compression, oci::Compression::kNone);
  EXPECT_EQ((*infos)[2]->diff_id, plain_d);
  EXPECT_EQ((*infos)[3].status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE((*infos)[4].ok());
  EXPECT_EQ((*infos)[4]->diff_id, Digest::Empty());

  // Dropped with the blob.
  ASSERT_TRUE(store->Remove({gz_d}).ok());
  EXPECT_EQ(InfoOf(*store, gz_d).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RocksDbLayerInfoTest, BatchesAndBytesThatOnlyLookCompressed) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::string gz = Compress(oci::Compression::kGzip, "tar bytes");
  const std::string fake = std::string("\x1f\x8b\x08\x00", 4) + "not deflate at all";
  std::vector<BlobData> batch = {{common::DigestOf(gz), gz}, {common::DigestOf(fake), fake}};
  auto written = store->BatchWrite(batch);
  ASSERT_TRUE(written.ok());
  for (const absl::Status& s : *written) EXPECT_TRUE(s.ok()) << s;  // the CAS stores any bytes
  auto good = InfoOf(*store, common::DigestOf(gz));
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->diff_id, common::DigestOf("tar bytes"));
  auto bad = InfoOf(*store, common::DigestOf(fake));
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("does not decompress"));

  // A large one that breaks off half way: the write still succeeds.
  std::string big = Compress(oci::Compression::kGzip, RandomBytes(3 * kMiB, 3));
  big.resize(big.size() / 2);
  WriteInPieces(*store, big, 1 << 16);
  EXPECT_EQ(InfoOf(*store, common::DigestOf(big)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RocksDbLayerInfoTest, BlobsOfAFormat1DirectoryAreComputedOnceFromTheLocalCopy) {
  const std::string tar = RandomBytes(2 * kMiB, 4);
  const std::string gz = Compress(oci::Compression::kGzip, tar);
  const Digest d = common::DigestOf(gz);
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    WriteInPieces(*store, gz, 1 << 16);
  }
  {
    // What format 1 wrote: metadata without layer state, and the old marker.
    auto raw = RocksDbStore::Open(options_);
    ASSERT_TRUE(raw.ok()) << raw.status();
    rocksdb::DB* db = (*raw)->db();
    std::string value;
    ASSERT_TRUE(
        db->Get(rocksdb::ReadOptions(), (*raw)->meta_cf(), format::BlobKey(d), &value).ok());
    format::BlobMeta meta;
    ASSERT_TRUE(format::DecodeMeta(value, &meta));
    EXPECT_EQ(meta.layer, format::LayerState::kGzip);
    meta.layer = format::LayerState::kUnknown;
    std::string v1 = format::EncodeMeta(meta);
    EXPECT_EQ(v1.size(), 30u);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), (*raw)->meta_cf(), format::BlobKey(d), v1).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), (*raw)->default_cf(), ToSlice(format::kFormatKey),
                        ToSlice(format::kFormatV1))
                    .ok());
  }
  {
    auto store = Open();  // upgrades the marker
    ASSERT_NE(store, nullptr);
    auto info = InfoOf(*store, d);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->diff_id, common::DigestOf(tar));
  }
  auto raw = RocksDbStore::Open(options_);
  ASSERT_TRUE(raw.ok()) << raw.status();
  std::string value;
  ASSERT_TRUE((*raw)
                  ->db()
                  ->Get(rocksdb::ReadOptions(), (*raw)->meta_cf(), format::BlobKey(d), &value)
                  .ok());
  format::BlobMeta meta;
  ASSERT_TRUE(format::DecodeMeta(value, &meta));
  EXPECT_EQ(meta.layer, format::LayerState::kGzip);  // kept
  EXPECT_EQ(meta.diff_id, common::DigestOf(tar));
  ASSERT_TRUE(
      (*raw)
          ->db()
          ->Get(rocksdb::ReadOptions(), (*raw)->default_cf(), ToSlice(format::kFormatKey), &value)
          .ok());
  EXPECT_EQ(value, format::kFormat);
}

}  // namespace
}  // namespace farm::cache
