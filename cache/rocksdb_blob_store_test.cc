#include "cache/rocksdb_blob_store.h"

#include <sys/stat.h>

#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cache/testing/test_util.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

using ::farm::cache::testing::DiskUsage;
using ::farm::cache::testing::RandomBytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kMiB = 1 << 20;

class ManualClock {
 public:
  absl::Time Now() {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ = absl::FromUnixSeconds(1700000000);
};

class RocksDbBlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("rocksdb-store");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    options_.dir = common::JoinPath(tmp_->path(), "cache");
    options_.max_size = 256 * kMiB;
    options_.touch_granularity = absl::ZeroDuration();
    options_.clock = [this] { return clock_.Now(); };
  }

  std::unique_ptr<RocksDbBlobStore> Open() {
    auto store = RocksDbBlobStore::Create(options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  static std::string ReadAll(BlobStore& store, const Digest& d, int64_t offset = 0,
                             int64_t limit = 0) {
    std::string out;
    absl::Status s = store.Read(d, offset, limit, [&out](absl::string_view c) {
      out.append(c.data(), c.size());
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  }

  std::unique_ptr<common::TempDir> tmp_;
  RocksDbStoreOptions options_;
  ManualClock clock_;
};

TEST_F(RocksDbBlobStoreTest, SmallAndLargeRoundTripAndSurviveReopen) {
  std::string small = RandomBytes(1000, 1);
  std::string large = RandomBytes(3 * kMiB + 12345, 2);  // 4 chunks, the last partial
  Digest ds, dl;
  {
    auto store = Open();
    ASSERT_TRUE(store);
    auto put = store->Put(small);
    ASSERT_TRUE(put.ok()) << put.status();
    ds = *put;
    put = store->Put(large);
    ASSERT_TRUE(put.ok()) << put.status();
    dl = *put;
    EXPECT_EQ(ReadAll(*store, ds), small);
    EXPECT_EQ(ReadAll(*store, dl), large);
    auto stats = store->Stats();
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->blob_count, 2);
    EXPECT_EQ(stats->blob_bytes, static_cast<int64_t>(small.size() + large.size()));
  }
  auto store = Open();
  ASSERT_TRUE(store);
  auto missing = store->FindMissing({ds, dl});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, IsEmpty());
  EXPECT_EQ(ReadAll(*store, ds), small);
  EXPECT_EQ(ReadAll(*store, dl), large);
  auto stats = store->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->blob_count, 2);  // counters persisted
  auto bad = store->Verify();
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(*bad, IsEmpty());
}

TEST_F(RocksDbBlobStoreTest, StatsNameTheLastUseOfTheOldestBlobHeld) {
  auto store = Open();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->Stats()->oldest_blob_access_unix_ms, 0);  // nothing held
  const absl::Time first = clock_.Now();
  ASSERT_TRUE(store->Put("the first blob").ok());
  clock_.Advance(absl::Hours(1));
  ASSERT_TRUE(store->Put("a later blob").ok());
  auto stats = store->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->oldest_blob_access_unix_ms, absl::ToUnixMillis(first));
}

TEST_F(RocksDbBlobStoreTest, OffsetsAndLimitsAcrossChunkBoundaries) {
  options_.chunk_size = 64 << 10;
  auto store = Open();
  std::string large = RandomBytes(5 * (64 << 10) + 100, 3);
  std::string small = RandomBytes(5000, 4);
  auto dl = store->Put(large);
  auto ds = store->Put(small);
  ASSERT_TRUE(dl.ok() && ds.ok());
  struct Case {
    int64_t offset, limit;
  };
  const int64_t c = 64 << 10;
  for (const auto& [data, digest] : {std::make_pair(large, *dl), std::make_pair(small, *ds)}) {
    const int64_t n = static_cast<int64_t>(data.size());
    for (Case k : std::vector<Case>{{0, 0},
                                    {1, 0},
                                    {c - 1, 2},
                                    {c, c},
                                    {c + 7, 3 * c},
                                    {n - 1, 0},
                                    {n, 0},
                                    {17, 1},
                                    {2 * c - 5, 10},
                                    {0, n + 100},
                                    {std::min<int64_t>(n, 4999), 0}}) {
      if (k.offset > n) continue;
      std::string want = data.substr(k.offset, k.limit == 0 ? std::string::npos : k.limit);
      EXPECT_EQ(ReadAll(*store, digest, k.offset, k.limit), want)
          << "size " << n << " offset " << k.offset << " limit " << k.limit;
    }
    auto r = store->OpenRead(digest, n + 1, 0);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kOutOfRange);
    r = store->OpenRead(digest, -1, 0);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    r = store->OpenRead(digest, 0, -1);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(RocksDbBlobStoreTest, VerificationRejectsWrongBytesAndLeavesNothingVisible) {
  auto store = Open();
  for (int64_t size : {int64_t{100}, 2 * kMiB + 1}) {
    std::string data = RandomBytes(size, 5);
    Digest d = common::DigestOf(data);
    // Wrong content, right size.
    std::string wrong = data;
    wrong[size / 2] ^= 1;
    auto w = store->BeginWrite(d);
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Append(wrong).ok());
    absl::Status s = (*w)->Commit();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("digest mismatch"));
    // Too many bytes.
    w = store->BeginWrite(d);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(data).ok());
    EXPECT_EQ((*w)->Append("x").code(), absl::StatusCode::kInvalidArgument);
    // Too few bytes.
    w = store->BeginWrite(d);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(0, size - 1)).ok());
    s = (*w)->Commit();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr("expected"));
    // Abandoned without Commit.
    w = store->BeginWrite(d);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(data).ok());
    w->reset();
    auto missing = store->FindMissing({d});
    ASSERT_TRUE(missing.ok());
    EXPECT_THAT(*missing, ElementsAre(d));
    EXPECT_EQ(store->OpenRead(d, 0, 0).status().code(), absl::StatusCode::kNotFound);
  }
  auto stats = store->Stats();
  EXPECT_EQ(stats->blob_count, 0);
  EXPECT_EQ(stats->reserved_bytes, 0);
  // Nothing left in tmp/.
  EXPECT_EQ(DiskUsage(common::JoinPath(options_.dir, "tmp")), 0);
}

TEST_F(RocksDbBlobStoreTest, InvalidDigestsAreInvalidArgument) {
  auto store = Open();
  Digest bad{"xyz", 3};
  EXPECT_EQ(store->FindMissing({bad}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->BeginWrite(bad).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store->OpenRead(bad, 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  Digest negative{common::DigestOf("a").hash, -1};
  EXPECT_EQ(store->FindMissing({negative}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RocksDbBlobStoreTest, EmptyBlobIsAlwaysPresent) {
  auto store = Open();
  const Digest& empty = Digest::Empty();
  auto missing = store->FindMissing({empty});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, IsEmpty());
  EXPECT_EQ(ReadAll(*store, empty), "");
  EXPECT_TRUE(store->WriteBlob(empty, "").ok());
  EXPECT_EQ(store->OpenRead(empty, 1, 0).status().code(), absl::StatusCode::kOutOfRange);
}

TEST_F(RocksDbBlobStoreTest, FindMissingKeepsOrderAndCollapsesDuplicates) {
  auto store = Open();
  auto a = store->Put("a");
  ASSERT_TRUE(a.ok());
  Digest b = common::DigestOf("b"), c = common::DigestOf("c");
  auto missing = store->FindMissing({c, *a, b, c, Digest::Empty(), b});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, ElementsAre(c, b));
}

TEST_F(RocksDbBlobStoreTest, ConcurrentWritersOfTheSameBlobAllSucceed) {
  auto store = Open();
  for (int64_t size : {int64_t{5000}, 3 * kMiB}) {
    std::string data = RandomBytes(size, 7);
    Digest d = common::DigestOf(data);
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 6; ++t) {
      threads.emplace_back([&] {
        auto w = store->BeginWrite(d);
        if (!w.ok()) return;
        for (size_t off = 0; off < data.size(); off += 100000) {
          if (!(*w)->Append(absl::string_view(data).substr(off, 100000)).ok()) return;
        }
        if ((*w)->Commit().ok()) ++ok;
      });
    }
    // A reader during the writes sees either NOT_FOUND or the whole blob.
    std::thread reader([&] {
      for (int i = 0; i < 50; ++i) {
        std::string out;
        absl::Status s = store->Read(d, 0, 0, [&out](absl::string_view c) {
          out.append(c.data(), c.size());
          return absl::OkStatus();
        });
        if (s.ok()) {
          EXPECT_EQ(out, data);
        } else {
          EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
        }
      }
    });
    for (auto& t : threads) t.join();
    reader.join();
    EXPECT_EQ(ok.load(), 6);
    EXPECT_EQ(ReadAll(*store, d), data);
  }
  auto stats = store->Stats();
  EXPECT_EQ(stats->blob_count, 2);
}

TEST_F(RocksDbBlobStoreTest, BatchWriteAndReadReportPerBlob) {
  auto store = Open();
  std::string x = RandomBytes(300, 8), y = RandomBytes(400, 9);
  Digest dx = common::DigestOf(x), dy = common::DigestOf(y);
  Digest wrong = common::DigestOf("something else");
  std::vector<BlobData> batch = {{dx, x}, {dy, y}, {wrong, x}, {dx, x}};
  auto res = store->BatchWrite(batch);
  ASSERT_TRUE(res.ok());
  ASSERT_EQ(res->size(), 4u);
  EXPECT_TRUE((*res)[0].ok());
  EXPECT_TRUE((*res)[1].ok());
  EXPECT_EQ((*res)[2].code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*res)[3].ok());
  auto read = store->BatchRead({dy, wrong, dx});
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 3u);
  EXPECT_EQ(*(*read)[0], y);
  EXPECT_EQ((*read)[1].status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*(*read)[2], x);
  EXPECT_EQ(store->Stats()->blob_count, 2);
}

// Eviction removes the least recently used first; a read refreshes recency.
TEST_F(RocksDbBlobStoreTest, EvictsLeastRecentlyUsedFirst) {
  options_.max_size = 64 * kMiB;
  auto store = Open();
  const int64_t blob = 4 * kMiB;
  std::vector<Digest> ds;
  std::vector<std::string> data;
  for (int i = 0; i < 6; ++i) {
    data.push_back(RandomBytes(blob, 100 + i));
    auto d = store->Put(data.back());
    ASSERT_TRUE(d.ok()) << d.status();
    ds.push_back(*d);
    clock_.Advance(absl::Seconds(1));
  }
  // Touch blob 0 so blob 1 becomes the oldest.
  ASSERT_TRUE(store->FindMissing({ds[0]}).ok());
  clock_.Advance(absl::Seconds(1));
  // Keep writing until something is evicted.
  int i = 6;
  while (store->Stats()->evicted_blobs == 0 && i < 40) {
    data.push_back(RandomBytes(blob, 100 + i));
    auto d = store->Put(data.back());
    ASSERT_TRUE(d.ok()) << d.status();
    ds.push_back(*d);
    clock_.Advance(absl::Seconds(1));
    ++i;
  }
  ASSERT_GT(store->Stats()->evicted_blobs, 0);
  auto missing = store->FindMissing({ds[1]});
  EXPECT_THAT(*missing, ElementsAre(ds[1]));  // the oldest went first
  missing = store->FindMissing({ds[0]});
  EXPECT_THAT(*missing, IsEmpty());  // refreshed by the FindMissing above
  EXPECT_EQ(ReadAll(*store, ds[0]), data[0]);
  EXPECT_EQ(ReadAll(*store, ds.back()), data.back());
}

// The directory never exceeds max_size, whatever mix of blob sizes is written.
void ChurnUnderTheCeiling(RocksDbStoreOptions& options, ManualClock& clock, bool small_only) {
  options.max_size = 48 * kMiB;
  options.sync = false;  // the ceiling does not depend on fsync; keeps the test fast
  auto store = RocksDbBlobStore::Create(options);
  ASSERT_TRUE(store.ok()) << store.status();
  std::mt19937_64 rng(small_only ? 7 : 42);
  int64_t written = 0, peak = 0;
  int n = 0;
  while (written < (small_only ? 120 : 160) * kMiB) {
    int64_t size;
    switch (small_only ? rng() % 2 : rng() % 4) {
      case 0:
        size = 100 + rng() % 4000;
        break;
      case 1:
        size = 20000 + rng() % 200000;
        break;
      case 2:
        size = kMiB / 2 + rng() % kMiB;
        break;
      default:
        size = 2 * kMiB + rng() % (3 * kMiB);
    }
    auto d = (*store)->Put(RandomBytes(size, 1000 + n++));
    ASSERT_TRUE(d.ok()) << d.status();
    written += size;
    clock.Advance(absl::Milliseconds(10));
    int64_t du = DiskUsage(options.dir);
    peak = std::max(peak, du);
    ASSERT_LE(du, options.max_size) << "after " << written << " bytes written";
  }
  ::testing::Test::RecordProperty(small_only ? "small_peak_disk_bytes" : "mixed_peak_disk_bytes",
                                  std::to_string(peak));
  auto stats = (*store)->Stats();
  EXPECT_GT(stats->evicted_blobs, 0);
  EXPECT_LE(stats->disk_bytes, options.max_size);
  // The budget is actually used (not evicting everything).
  EXPECT_GT(stats->blob_bytes, options.max_size / 3) << "peak " << peak;
  auto bad = (*store)->Verify();
  ASSERT_TRUE(bad.ok());
  EXPECT_THAT(*bad, IsEmpty());
}

TEST_F(RocksDbBlobStoreTest, DiskUseStaysUnderTheCeilingWithMixedSizes) {
  ChurnUnderTheCeiling(options_, clock_, /*small_only=*/false);
}

// Small entries are reclaimed only by compaction: the ceiling must hold anyway.
TEST_F(RocksDbBlobStoreTest, DiskUseStaysUnderTheCeilingWithSmallBlobsOnly) {
  ChurnUnderTheCeiling(options_, clock_, /*small_only=*/true);
}

TEST_F(RocksDbBlobStoreTest, LeasedBlobsSurviveEvictionPressureUntilExpiry) {
  options_.max_size = 64 * kMiB;
  auto store = Open();
  std::string pinned_data = RandomBytes(8 * kMiB, 7);
  auto pinned = store->Put(pinned_data);
  ASSERT_TRUE(pinned.ok());
  Digest absent = common::DigestOf("never written");
  auto lease = store->AcquireLease({*pinned, absent}, absl::Minutes(10));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_THAT(lease->missing, ElementsAre(absent));
  EXPECT_EQ(store->Stats()->pinned_blobs, 1);
  clock_.Advance(absl::Seconds(1));
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(store->Put(RandomBytes(4 * kMiB, 200 + i)).ok());
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_GT(store->Stats()->evicted_blobs, 0);
  EXPECT_THAT(*store->FindMissing({*pinned}), IsEmpty());
  // The lease survives a restart.
  store.reset();
  store = Open();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store->Put(RandomBytes(4 * kMiB, 300 + i)).ok());
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_THAT(*store->FindMissing({*pinned}), IsEmpty());
  // Once expired, it is evicted like anything else.
  clock_.Advance(absl::Minutes(11));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store->Put(RandomBytes(4 * kMiB, 400 + i)).ok());
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_THAT(*store->FindMissing({*pinned}), ElementsAre(*pinned));
  EXPECT_EQ(store->ReleaseLease(lease->id).code(), absl::StatusCode::kNotFound);
}

TEST_F(RocksDbBlobStoreTest, ResourceExhaustedWhenEverythingIsPinned) {
  options_.max_size = 48 * kMiB;
  auto store = Open();
  std::vector<Digest> all;
  absl::Status last;
  for (int i = 0; i < 30; ++i) {
    auto d = store->Put(RandomBytes(4 * kMiB, 500 + i));
    if (!d.ok()) {
      last = d.status();
      break;
    }
    all.push_back(*d);
    ASSERT_TRUE(store->AcquireLease({*d}, absl::Hours(1)).ok());
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_THAT(last.message(), HasSubstr("pinned"));
  // Every pinned blob is intact.
  EXPECT_THAT(*store->FindMissing(all), IsEmpty());
  // A blob bigger than the budget is refused at once.
  Digest huge{common::DigestOf("x").hash, 1LL << 40};
  EXPECT_EQ(store->BeginWrite(huge).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(RocksDbBlobStoreTest, OpenReadersPinTheirBlob) {
  options_.max_size = 48 * kMiB;
  auto store = Open();
  std::string data = RandomBytes(6 * kMiB, 9);
  auto d = store->Put(data);
  ASSERT_TRUE(d.ok());
  auto reader = store->OpenRead(*d, 0, 0);
  ASSERT_TRUE(reader.ok());
  auto first = (*reader)->Next();
  ASSERT_TRUE(first.ok());
  std::string got(*first);
  clock_.Advance(absl::Seconds(1));
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(store->Put(RandomBytes(4 * kMiB, 600 + i)).ok());
    clock_.Advance(absl::Seconds(1));
  }
  for (;;) {
    auto c = (*reader)->Next();
    ASSERT_TRUE(c.ok()) << c.status();
    if (c->empty()) break;
    got.append(c->data(), c->size());
  }
  EXPECT_EQ(got, data);
  reader->reset();
  EXPECT_GT(store->Stats()->evicted_blobs, 0);
}

TEST_F(RocksDbBlobStoreTest, ShrinkingTheBudgetEvictsAndIsPersisted) {
  auto store = Open();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store->Put(RandomBytes(4 * kMiB, 700 + i)).ok());
    clock_.Advance(absl::Seconds(1));
  }
  EXPECT_EQ(store->Stats()->blob_count, 20);
  auto gc = store->Gc({48 * kMiB});
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_GT(gc->evicted_blobs, 0);
  EXPECT_EQ(gc->after.max_size, 48 * kMiB);
  EXPECT_LE(gc->after.disk_bytes, 48 * kMiB);
  store.reset();
  options_.max_size = 0;  // keep what was persisted
  store = Open();
  EXPECT_EQ(store->max_size(), 48 * kMiB);
  EXPECT_EQ(store->Gc({1000}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RocksDbBlobStoreTest, ClearErrorsForBadDirectoriesAndASecondOpener) {
  auto store = Open();
  // A write in progress (its temp file under tmp/) must survive a second opener's attempt.
  std::string data = RandomBytes(3 * kMiB, 11);
  auto w = store->BeginWrite(common::DigestOf(data));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(0, kMiB + 5)).ok());
  auto second = RocksDbBlobStore::Create(options_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use by another process"));
  ASSERT_TRUE((*w)->Append(absl::string_view(data).substr(kMiB + 5)).ok());
  EXPECT_TRUE((*w)->Commit().ok());

  std::string file = common::JoinPath(tmp_->path(), "a-file");
  ASSERT_TRUE(common::WriteFileAtomic(file, "x").ok());
  RocksDbStoreOptions bad = options_;
  bad.dir = common::JoinPath(file, "cache");
  auto s = RocksDbBlobStore::Create(bad);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr(bad.dir));

  bad = options_;
  bad.dir = common::JoinPath(tmp_->path(), "small");
  bad.max_size = kMiB;
  EXPECT_EQ(RocksDbBlobStore::Create(bad).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace farm::cache
