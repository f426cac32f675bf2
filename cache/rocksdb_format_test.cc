// The on-disk encodings: round trips, and the orderings the store relies on (LRU oldest first,
// a blob's chunks contiguous and in index order).
#include "cache/rocksdb_format.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache::format {
namespace {

using ::testing::ElementsAre;
using ::testing::StartsWith;

common::Digest D(char fill, int64_t size) { return common::Digest{std::string(64, fill), size}; }

TEST(RocksDbFormatTest, BlobKeysAreFortyBytesAndRoundTrip) {
  common::Digest d{"00ff10a0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c", 123456789};
  std::string k = BlobKey(d);
  ASSERT_EQ(k.size(), kKeySize);
  EXPECT_EQ(static_cast<uint8_t>(k[0]), 0x00);
  EXPECT_EQ(static_cast<uint8_t>(k[1]), 0xff);
  EXPECT_EQ(DigestFromKey(k), d);
  // Same hash, different sizes: different keys.
  EXPECT_NE(BlobKey(D('a', 1)), BlobKey(D('a', 2)));
}

TEST(RocksDbFormatTest, ABlobsChunksAreContiguousAndInIndexOrder) {
  std::string k = BlobKey(D('a', 10 << 20));
  std::string next_blob = BlobKey(D('b', 1));
  std::string lo = ChunkKey(k, 0), hi = ChunkKey(k, 0xffffffffu);
  for (uint32_t i : {0u, 1u, 255u, 256u, 65536u}) {
    std::string c = ChunkKey(k, i);
    EXPECT_THAT(c, StartsWith(k));
    EXPECT_LE(lo, c);
    EXPECT_LE(c, hi);
  }
  EXPECT_LT(ChunkKey(k, 255), ChunkKey(k, 256));  // big-endian: byte order is index order
  EXPECT_LT(hi, next_blob);                       // another blob's chunks are outside the range
}

TEST(RocksDbFormatTest, LruKeysSortOldestFirstWhateverTheirType) {
  std::string old_action = LruKey(255, LruType::kAction, "zzz");
  std::string newer_blob = LruKey(256, LruType::kBlob, "aaa");
  EXPECT_LT(old_action, newer_blob);
  EXPECT_LT(LruKey(1, LruType::kBlob, "x"), LruKey(1LL << 40, LruType::kBlob, "x"));

  LruEntry e;
  ASSERT_TRUE(DecodeLruKey(old_action, &e));
  EXPECT_EQ(e.atime_ms, 255);
  EXPECT_EQ(e.type, LruType::kAction);
  EXPECT_EQ(e.id, "zzz");
  EXPECT_FALSE(DecodeLruKey("short", &e));
  std::string bad_type = LruKey(1, LruType::kBlob, "x");
  bad_type[8] = 'q';
  EXPECT_FALSE(DecodeLruKey(bad_type, &e));
}

TEST(RocksDbFormatTest, BlobMetaRoundTripsAndRejectsOtherBytes) {
  BlobMeta m;
  m.kind = BlobKind::kLarge;
  m.size = 5'000'000'000LL;
  m.charge = 5'000'065'536LL;
  m.atime_ms = 1'700'000'000'123LL;
  m.chunk_size = 1 << 20;
  std::string v = EncodeMeta(m);
  BlobMeta back;
  ASSERT_TRUE(DecodeMeta(v, &back));
  EXPECT_EQ(back.kind, m.kind);
  EXPECT_EQ(back.size, m.size);
  EXPECT_EQ(back.charge, m.charge);
  EXPECT_EQ(back.atime_ms, m.atime_ms);
  EXPECT_EQ(back.chunk_size, m.chunk_size);

  EXPECT_FALSE(DecodeMeta(v.substr(1), &back));  // wrong size
  std::string other_version = v;
  other_version[0] = 9;
  EXPECT_FALSE(DecodeMeta(other_version, &back));
  std::string other_kind = v;
  other_kind[1] = 7;
  EXPECT_FALSE(DecodeMeta(other_kind, &back));
}

TEST(RocksDbFormatTest, ActionCacheKeysKeepAnyScopeApart) {
  common::Digest action = D('c', 140);
  for (std::string scope : {"", "main", "pr/123", "büild ✓", "a\x01z"}) {
    std::string k = AcKey(scope, action);
    std::string got_scope;
    common::Digest got;
    ASSERT_TRUE(DecodeAcKey(k, &got_scope, &got)) << scope;
    EXPECT_EQ(got_scope, scope);
    EXPECT_EQ(got, action);
  }
  // The NUL separator: "a" + key never equals "a\0..." of another scope's prefix.
  EXPECT_NE(AcKey("ab", action), AcKey("a", action));
  std::string s;
  common::Digest d;
  EXPECT_FALSE(DecodeAcKey("too short", &s, &d));
}

TEST(RocksDbFormatTest, ActionCacheValuesKeepTheResultByteForByte) {
  std::string result("\0\x01proto\xff\0", 9);
  std::string v = EncodeAcValue(42, result);
  int64_t atime = 0;
  absl::string_view got;
  ASSERT_TRUE(DecodeAcValue(v, &atime, &got));
  EXPECT_EQ(atime, 42);
  EXPECT_EQ(std::string(got), result);
  v[0] = 2;  // another version
  EXPECT_FALSE(DecodeAcValue(v, &atime, &got));
  EXPECT_FALSE(DecodeAcValue("x", &atime, &got));
}

TEST(RocksDbFormatTest, CountersRoundTripIncludingNegatives) {
  std::vector<int64_t> c = {1, -2, 1LL << 40, 0};
  EXPECT_EQ(DecodeCounters(EncodeCounters(c)), c);
  EXPECT_EQ(EncodeCounters(c).size(), 32u);
  EXPECT_EQ(ZeroCounters(), std::vector<int64_t>(kNumCounters, 0));
  EXPECT_EQ(EncodeInt64(-7).size(), 8u);
  EXPECT_EQ(DecodeInt64(EncodeInt64(-7)), -7);
  EXPECT_EQ(DecodeInt64("bad"), 0);
}

TEST(RocksDbFormatTest, LeasesRoundTripAndRejectTruncatedRecords) {
  LeaseRecord l;
  l.expiry_ms = 1'700'000'000'000LL;
  l.keys = {BlobKey(D('a', 1)), BlobKey(D('b', 2))};
  std::string v = EncodeLease(l);
  LeaseRecord back;
  ASSERT_TRUE(DecodeLease(v, &back));
  EXPECT_EQ(back.expiry_ms, l.expiry_ms);
  EXPECT_EQ(back.keys, l.keys);
  EXPECT_FALSE(DecodeLease(v.substr(0, v.size() - 1), &back));
  EXPECT_FALSE(DecodeLease("", &back));
}

TEST(RocksDbFormatTest, DefaultColumnFamilyKeysCarryTheirPrefixes) {
  std::string k = BlobKey(D('a', 1));
  EXPECT_EQ(PendingKey(k), std::string(kPendingPrefix) + k);
  EXPECT_EQ(LeaseKey("0123"), "lease/0123");
  EXPECT_EQ(ScopeCountersKey("pr/1"), "c/scope/pr/1");
  EXPECT_THAT((std::vector<std::string>{std::string(kFormatKey), std::string(kGlobalCountersKey)}),
              ElementsAre("format", "c/global"));
}

}  // namespace
}  // namespace farm::cache::format
