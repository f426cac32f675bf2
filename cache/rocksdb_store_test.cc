// RocksDbStore on its own: opening (options, layout, the budget file, the lock, the format),
// recovery of counters and leases, the budget's reservations, tuning, and the per-key locks.
// What the blob store and the action cache build on it is tested in their own tests.
#include "cache/rocksdb_store.h"

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kGiB = 1LL << 30;

class RocksDbStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("rocksdb-store-core");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    options_.dir = common::JoinPath(tmp_->path(), "cache");
    options_.max_size = 64 * kMiB;
    options_.clock = [this] { return absl::FromUnixMillis(now_ms_.load()); };
  }

  std::unique_ptr<RocksDbStore> Open() {
    auto store = RocksDbStore::Open(options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  std::unique_ptr<common::TempDir> tmp_;
  RocksDbStoreOptions options_;
  std::atomic<int64_t> now_ms_{1'700'000'000'000};
};

TEST_F(RocksDbStoreTest, OpenCreatesTheLayoutAndKeepsTheBudget) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->max_size(), 64 * kMiB);
    EXPECT_EQ(store->limit(), 64 * kMiB - TuneFor(64 * kMiB).headroom);
    for (const char* sub : {"db", "chunks", "tmp"}) {
      EXPECT_TRUE(common::PathExists(common::JoinPath(options_.dir, sub))) << sub;
    }
    auto text = common::ReadFile(common::JoinPath(options_.dir, "max_size"));
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, absl::StrCat(64 * kMiB, "\n"));
  }
  // 0: the budget it was last opened with.
  options_.max_size = 0;
  auto again = Open();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->max_size(), 64 * kMiB);
}

TEST_F(RocksDbStoreTest, BadOptionsAreInvalidArgument) {
  RocksDbStoreOptions o = options_;
  o.dir = "";
  EXPECT_EQ(RocksDbStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = options_;
  o.chunk_size = 1024;
  EXPECT_EQ(RocksDbStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = options_;
  o.inline_max = 65 * kMiB;
  EXPECT_EQ(RocksDbStore::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = options_;
  o.max_size = RocksDbStore::kMinMaxSize - 1;
  auto small = RocksDbStore::Open(o);
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(small.status().message()), HasSubstr("32MiB"));
}

TEST_F(RocksDbStoreTest, OneProcessAtATimeAndOnlyItsOwnFormat) {
  {
    auto first = Open();
    ASSERT_NE(first, nullptr);
    auto second = RocksDbStore::Open(options_);
    EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(second.status().message()), HasSubstr(options_.dir));
    ASSERT_TRUE(first->db()
                    ->Put(rocksdb::WriteOptions(), first->default_cf(), ToSlice(format::kFormatKey),
                          "farm-cache/0")
                    .ok());
  }
  auto reopened = RocksDbStore::Open(options_);
  EXPECT_EQ(reopened.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(reopened.status().message()), HasSubstr("farm-cache/0"));
}

TEST_F(RocksDbStoreTest, CountersAreReadBackAtOpen) {
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    std::vector<int64_t> delta = format::ZeroCounters();
    delta[format::kBlobCount] = 3;
    delta[format::kBlobBytes] = 300;
    delta[format::kAcCount] = 2;
    ASSERT_TRUE(store->db()
                    ->Merge(store->SyncWrite(), store->default_cf(),
                            ToSlice(format::kGlobalCountersKey), format::EncodeCounters(delta))
                    .ok());
    store->MirrorCounters(delta);
    auto stats = store->Stats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->blob_count, 3);
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto stats = store->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->blob_count, 3);
  EXPECT_EQ(stats->blob_bytes, 300);
  EXPECT_EQ(stats->ac_entries, 2);
  EXPECT_EQ(stats->location, options_.dir);
}

TEST_F(RocksDbStoreTest, LeasesAreReloadedAtOpenAndExpiredOnesDropped) {
  std::string key = format::BlobKey(common::Digest{std::string(64, 'a'), 10});
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    format::LeaseRecord live{now_ms_ + 60'000, {key}};
    format::LeaseRecord dead{now_ms_ - 1, {key}};
    ASSERT_TRUE(store->db()
                    ->Put(store->SyncWrite(), store->default_cf(), format::LeaseKey("live"),
                          format::EncodeLease(live))
                    .ok());
    ASSERT_TRUE(store->db()
                    ->Put(store->SyncWrite(), store->default_cf(), format::LeaseKey("dead"),
                          format::EncodeLease(dead))
                    .ok());
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->pins().IsPinned(key, now_ms_));
  std::string value;
  EXPECT_TRUE(
      store->db()
          ->Get(rocksdb::ReadOptions(), store->default_cf(), format::LeaseKey("dead"), &value)
          .IsNotFound());
  // Expiry: the pin ends, and DropExpiredLeases deletes the record.
  now_ms_ += 60'000;
  EXPECT_FALSE(store->pins().IsPinned(key, store->NowMs()));
  store->DropExpiredLeases();
  EXPECT_TRUE(
      store->db()
          ->Get(rocksdb::ReadOptions(), store->default_cf(), format::LeaseKey("live"), &value)
          .IsNotFound());
  EXPECT_EQ(store->pins().Summarize(store->NowMs()).leases, 0);
}

TEST_F(RocksDbStoreTest, ReservationsHoldBudgetUntilReleased) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  {
    auto r = store->Reserve(4 * kMiB);
    ASSERT_TRUE(r.ok()) << r.status();
    auto stats = store->Stats();
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->reserved_bytes, 4 * kMiB);
  }
  auto stats = store->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->reserved_bytes, 0);
  // Larger than the whole budget for data: refused without evicting anything.
  auto too_big = store->Reserve(store->limit() + 1);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("does not fit"));
}

TEST_F(RocksDbStoreTest, ReservationsThatFitNoLongerAreRefusedWhenNothingIsEvictable) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  int64_t half = store->limit() / 2 + 1;
  auto first = store->Reserve(half);
  ASSERT_TRUE(first.ok()) << first.status();
  // The store is empty: there is nothing to evict to make room for a second half.
  auto second = store->Reserve(half);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  first->reset();
  EXPECT_TRUE(store->Reserve(half).ok());
}

TEST_F(RocksDbStoreTest, TouchIsDueOncePerGranularity) {
  options_.touch_granularity = absl::Minutes(1);
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(store->TouchDue(1000, 1000 + 59'999));
  EXPECT_TRUE(store->TouchDue(1000, 1000 + 60'000));
  EXPECT_EQ(store->NowMs(), now_ms_.load());
}

TEST_F(RocksDbStoreTest, StripeLocksTakeEachStripeOnceAndReleaseThem) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  auto try_lock = [&](int stripe) {
    bool got = false;
    std::thread t([&] {
      got = store->stripe(stripe)->TryLock();
      if (got) store->stripe(stripe)->Unlock();
    });
    t.join();
    return got;
  };
  {
    RocksDbStore::StripeLocks locks(store.get(), {7, 3, 7, 200});  // duplicates, any order
    EXPECT_FALSE(try_lock(3));
    EXPECT_FALSE(try_lock(7));
    EXPECT_FALSE(try_lock(200));
    EXPECT_TRUE(try_lock(4));
  }
  EXPECT_TRUE(try_lock(3));
  EXPECT_TRUE(try_lock(7));
  for (absl::string_view k : {"", "main\0key", "a/b/c"}) {
    int s = RocksDbStore::StripeOfAc(k);
    EXPECT_GE(s, 0);
    EXPECT_LT(s, RocksDbStore::kStripes);
  }
}

TEST(StoreTuningTest, HeadroomStaysASmallShareOfLargerBudgets) {
  int64_t last_headroom = 0;
  for (int64_t max_size :
       {RocksDbStore::kMinMaxSize, 256 * kMiB, kGiB, 10 * kGiB, 100 * kGiB, 1024 * kGiB}) {
    StoreTuning t = TuneFor(max_size);
    EXPECT_GT(max_size - t.headroom, 0) << max_size;  // room for data at the minimum size
    EXPECT_GE(t.headroom, last_headroom) << max_size;
    if (max_size >= kGiB) {
      EXPECT_LE(t.headroom, max_size / 10) << max_size;
    }
    EXPECT_GT(t.low_water, 0);
    last_headroom = t.headroom;
  }
}

}  // namespace
}  // namespace farm::cache
