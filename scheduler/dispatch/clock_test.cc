#include "scheduler/dispatch/clock.h"

#include <gtest/gtest.h>

#include <thread>

namespace farm::scheduler::dispatch {
namespace {

TEST(SimulatedClockTest, AwaitEndsWhenTimePassesTheDeadline) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool cond = false;
  bool result = true;
  absl::Time deadline = clock.Now() + absl::Seconds(10);
  std::thread waiter([&] {
    absl::MutexLock l(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&cond), deadline);
  });
  // Wait (really) until the waiter is parked on the clock, then move time.
  {
    absl::MutexLock l(&mu);
    auto parked = [&] { return clock.waiters() == 1; };
    mu.AwaitWithTimeout(absl::Condition(&parked), absl::Seconds(20));
  }
  clock.Advance(absl::Seconds(9));
  EXPECT_EQ(clock.waiters(), 1);
  clock.Advance(absl::Seconds(1));
  waiter.join();
  EXPECT_FALSE(result);
  EXPECT_EQ(clock.waiters(), 0);
}

TEST(SimulatedClockTest, AwaitEndsWhenTheConditionHolds) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool cond = false;
  bool result = false;
  std::thread waiter([&] {
    absl::MutexLock l(&mu);
    result = clock.AwaitWithDeadline(&mu, absl::Condition(&cond), clock.Now() + absl::Hours(1));
  });
  {
    absl::MutexLock l(&mu);
    cond = true;
  }
  waiter.join();
  EXPECT_TRUE(result);
}

TEST(SimulatedClockTest, PastDeadlineReturnsAtOnce) {
  SimulatedClock clock;
  absl::Mutex mu;
  bool cond = false;
  absl::MutexLock l(&mu);
  EXPECT_FALSE(clock.AwaitWithDeadline(&mu, absl::Condition(&cond), clock.Now()));
}

TEST(RealClockTest, Deadline) {
  absl::Mutex mu;
  bool cond = false;
  absl::MutexLock l(&mu);
  EXPECT_FALSE(Clock::Real()->AwaitWithDeadline(&mu, absl::Condition(&cond),
                                                Clock::Real()->Now() + absl::Milliseconds(1)));
}

}  // namespace
}  // namespace farm::scheduler::dispatch
