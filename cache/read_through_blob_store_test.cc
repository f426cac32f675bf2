#include "cache/read_through_blob_store.h"

#include <string>

#include "cache/testing/memory_stores.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

// Answers every read with other bytes than the blob's (a corrupt or lying remote).
class LyingStore : public testing::MemoryBlobStore {
 public:
  absl::Status Read(const Digest& digest, int64_t offset, int64_t limit,
                    const ReadSink& sink) override {
    return sink(std::string(static_cast<size_t>(digest.size_bytes), 'x'));
  }
};

Digest Put(BlobStore& s, const std::string& data) {
  Digest d = common::DigestOf(data);
  EXPECT_TRUE(s.WriteBlob(d, data).ok());
  return d;
}

std::string ReadAll(BlobStore& s, const Digest& d, int64_t offset = 0, int64_t limit = 0) {
  std::string out;
  absl::Status st = s.Read(d, offset, limit, [&out](absl::string_view c) {
    out.append(c.data(), c.size());
    return absl::OkStatus();
  });
  return st.ok() ? out : "error: " + std::string(st.message());
}

TEST(ReadThroughBlobStoreTest, KeepsSmallBlobsAndServesThemLocally) {
  auto remote = std::make_shared<testing::MemoryBlobStore>();
  auto local = std::make_shared<testing::MemoryBlobStore>();
  Digest small = Put(*remote, "hello world");
  Digest big = Put(*remote, std::string(100, 'b'));
  ReadThroughBlobStore store(remote, local, 64);
  EXPECT_EQ(ReadAll(store, small), "hello world");
  EXPECT_EQ(store.copied(), 1);
  EXPECT_EQ(store.local_hits(), 0);
  remote->Remove(small);  // from now on only the local copy has it
  EXPECT_EQ(ReadAll(store, small), "hello world");
  EXPECT_EQ(ReadAll(store, small, 6, 3), "wor");
  EXPECT_EQ(store.local_hits(), 2);
  // Bigger than the bound: always the remote's, never kept.
  EXPECT_EQ(ReadAll(store, big).size(), 100u);
  EXPECT_EQ(local->size(), 1u);
  // Batches: the local copy first, the rest from the remote (and kept).
  Digest other = Put(*remote, "other");
  std::vector<Digest> both = {small, other};
  auto batch = store.BatchRead(both).value();
  ASSERT_TRUE(batch[0].ok());
  EXPECT_EQ(*batch[0], "hello world");
  ASSERT_TRUE(batch[1].ok());
  EXPECT_EQ(*batch[1], "other");
  EXPECT_EQ(local->size(), 2u);
  // Writes and presence are the remote's.
  EXPECT_EQ(store.FindMissing(both).value().size(), 1u);  // small is only local
}

TEST(ReadThroughBlobStoreTest, ACorruptRemoteReadIsNotKept) {
  auto remote = std::make_shared<LyingStore>();
  auto local = std::make_shared<testing::MemoryBlobStore>();
  Digest d = Put(*remote, "the real bytes");
  ReadThroughBlobStore store(remote, local, 1 << 20);
  ReadAll(store, d);
  EXPECT_EQ(store.copied(), 0);  // the local store refused bytes that are not the digest's
  EXPECT_EQ(local->size(), 0u);
}

}  // namespace
}  // namespace farm::cache
