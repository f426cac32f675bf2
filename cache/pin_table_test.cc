#include "cache/pin_table.h"

#include <algorithm>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

TEST(PinTableTest, AReaderPinsUntilTheLastOneCloses) {
  PinTable pins;
  EXPECT_FALSE(pins.IsPinned("k", 0));
  pins.AddReader("k");
  pins.AddReader("k");
  pins.RemoveReader("k");
  EXPECT_TRUE(pins.IsPinned("k", 0));
  pins.RemoveReader("k");
  EXPECT_FALSE(pins.IsPinned("k", 0));
  pins.RemoveReader("k");  // one close too many, or a key never opened: harmless
  pins.RemoveReader("never");
  EXPECT_FALSE(pins.IsPinned("k", 0));
  pins.AddReader("k");
  EXPECT_TRUE(pins.IsPinned("k", 0));
}

TEST(PinTableTest, ALeasePinsItsKeysUntilItsExpiryExclusive) {
  PinTable pins;
  pins.AddLease("l", 1000, {"a", "b"});
  EXPECT_TRUE(pins.IsPinned("a", 999));
  EXPECT_TRUE(pins.IsPinned("b", 999));
  EXPECT_FALSE(pins.IsPinned("c", 999));
  EXPECT_FALSE(pins.IsPinned("a", 1000));  // expired at its expiry
  EXPECT_FALSE(pins.IsPinned("a", 5000));
}

TEST(PinTableTest, ReleasingALeaseUnpinsOnlyWhatNoOtherPinHolds) {
  PinTable pins;
  pins.AddLease("l1", 1000, {"a", "b"});
  pins.AddLease("l2", 2000, {"b"});
  pins.AddReader("a");
  EXPECT_TRUE(pins.ReleaseLease("l1", 10));
  EXPECT_TRUE(pins.IsPinned("a", 10));  // the reader
  EXPECT_TRUE(pins.IsPinned("b", 10));  // l2
  pins.RemoveReader("a");
  EXPECT_FALSE(pins.IsPinned("a", 10));
  EXPECT_FALSE(pins.ReleaseLease("l1", 10));  // already released
  EXPECT_TRUE(pins.ReleaseLease("l2", 10));
  EXPECT_FALSE(pins.IsPinned("b", 10));
  EXPECT_FALSE(pins.ReleaseLease("unknown", 10));
}

TEST(PinTableTest, AnExpiredLeaseCannotBeReleasedAndIsForgottenByExpireLeases) {
  PinTable pins;
  pins.AddLease("old", 100, {"a"});
  pins.AddLease("new", 300, {"b"});
  EXPECT_FALSE(pins.ReleaseLease("old", 100));
  EXPECT_EQ(pins.Summarize(100).leases, 2);  // still held until expired explicitly
  EXPECT_THAT(pins.ExpireLeases(200), ElementsAre("old"));
  EXPECT_EQ(pins.Summarize(200).leases, 1);
  EXPECT_THAT(pins.ExpireLeases(200), IsEmpty());
  EXPECT_TRUE(pins.IsPinned("b", 200));
  EXPECT_TRUE(pins.ReleaseLease("new", 200));
}

TEST(PinTableTest, SummaryListsEachPinnedKeyOnce) {
  PinTable pins;
  pins.AddReader("a");
  pins.AddLease("l1", 1000, {"a", "b"});
  pins.AddLease("l2", 1000, {"b"});
  pins.AddLease("gone", 50, {"c"});  // expired: counted as a lease, pins nothing
  PinTable::Summary s = pins.Summarize(100);
  EXPECT_EQ(s.leases, 3);
  EXPECT_THAT(s.pinned_keys, UnorderedElementsAre("a", "b"));
  EXPECT_THAT(pins.Summarize(2000).pinned_keys, ElementsAre("a"));
}

TEST(PinTableTest, ConcurrentReadersBalanceOut) {
  PinTable pins;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&pins] {
      for (int i = 0; i < 1000; ++i) {
        pins.AddReader("k");
        pins.RemoveReader("k");
      }
    });
  }
  pins.AddReader("k");  // held throughout by this thread
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(pins.IsPinned("k", 0));
  pins.RemoveReader("k");
  EXPECT_FALSE(pins.IsPinned("k", 0));
}

}  // namespace
}  // namespace farm::cache
