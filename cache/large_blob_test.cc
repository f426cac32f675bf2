// A blob of several hundred MiB is written and read back through RocksDbBlobStore while the
// process's peak RSS grows by only a small fraction of it: no blob is ever held whole.
#include <string>

#include "cache/rocksdb_blob_store.h"
#include "cache/testing/test_util.h"
#include "common/fs.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

using ::farm::cache::testing::ProcStatusBytes;
using ::farm::cache::testing::RandomBytesAt;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kBlobSize = 384 * kMiB + 4321;
constexpr int64_t kPiece = 4 * kMiB;
constexpr uint64_t kSeed = 99;

TEST(LargeBlobTest, WriteAndReadWithoutHoldingTheBlob) {
  auto tmp = common::TempDir::Create("large-blob");
  ASSERT_TRUE(tmp.ok());
  RocksDbStoreOptions o;
  o.dir = common::JoinPath(tmp->path(), "cache");
  o.max_size = 2LL << 30;
  auto store = RocksDbBlobStore::Create(o);
  ASSERT_TRUE(store.ok()) << store.status();

  // The digest, computed by streaming the generator.
  std::string piece;
  common::Sha256 hasher;
  for (int64_t off = 0; off < kBlobSize; off += kPiece) {
    RandomBytesAt(kSeed, off, std::min(kPiece, kBlobSize - off), &piece);
    hasher.Update(piece);
  }
  common::Digest digest = hasher.Finish();
  // Warm up (allocator arenas, RocksDB caches) before taking the baseline.
  ASSERT_TRUE((*store)->Put(std::string(3 * kMiB, 'w')).ok());
  const int64_t hwm_before = ProcStatusBytes("VmHWM");
  ASSERT_GT(hwm_before, 0);

  auto writer = (*store)->BeginWrite(digest);
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (int64_t off = 0; off < kBlobSize; off += kPiece) {
    RandomBytesAt(kSeed, off, std::min(kPiece, kBlobSize - off), &piece);
    ASSERT_TRUE((*writer)->Append(piece).ok());
  }
  ASSERT_TRUE((*writer)->Commit().ok());
  writer->reset();

  // Read it all back, and a range from an arbitrary offset.
  common::Sha256 check;
  ASSERT_TRUE((*store)
                  ->Read(digest, 0, 0,
                         [&check](absl::string_view c) {
                           check.Update(c);
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(check.Finish(), digest);
  const int64_t offset = 200 * kMiB + 12345;  // not on a chunk or word boundary
  std::string want, got;
  RandomBytesAt(kSeed, offset - offset % 8, 8 + 100000, &want);
  want = want.substr(offset % 8, 100000);
  ASSERT_TRUE((*store)
                  ->Read(digest, offset, 100000,
                         [&got](absl::string_view c) {
                           got.append(c.data(), c.size());
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(got, want);

  const int64_t growth = ProcStatusBytes("VmHWM") - hwm_before;
  RecordProperty("peak_rss_growth_bytes", std::to_string(growth));
  EXPECT_LT(growth, 48 * kMiB) << "peak RSS grew by " << growth << " bytes for a " << kBlobSize
                               << "-byte blob";
}

}  // namespace
}  // namespace farm::cache
