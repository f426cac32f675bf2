// Clock: the dispatcher's source of time, injectable so that tests drive lease timeouts and
// locality waits by advancing a SimulatedClock instead of sleeping.
//
// Production code uses Clock::Real(). A component that waits for "a condition or a deadline in
// clock time" calls AwaitWithDeadline, which a SimulatedClock ends when the test advances time
// past the deadline:
//
//   scheduler::dispatch::SimulatedClock clock(absl::FromUnixSeconds(1000));
//   // thread A, holding mu:
//   clock.AwaitWithDeadline(&mu, absl::Condition(&kicked), clock.Now() + absl::Seconds(30));
//   // thread B (the test):
//   clock.Advance(absl::Seconds(31));   // thread A returns (kicked still false)
#ifndef FARM_SCHEDULER_DISPATCH_CLOCK_H_
#define FARM_SCHEDULER_DISPATCH_CLOCK_H_

#include <memory>
#include <set>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace farm::scheduler::dispatch {

class Clock {
 public:
  virtual ~Clock() = default;

  // The current time. Thread-safe.
  virtual absl::Time Now() = 0;

  // With `mu` held: blocks until `cond` holds or Now() >= `deadline` (absl::InfiniteFuture():
  // no deadline), and returns whether `cond` holds. `mu` is released while waiting and held
  // again on return, as with absl::Mutex::AwaitWithDeadline. Thread-safe.
  virtual bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                 absl::Time deadline) = 0;

  // The process-wide real clock (absl::Now()); never destroyed.
  static Clock* Real();
};

// A clock that only moves when told to. AwaitWithDeadline ends when Advance/SetTime passes the
// deadline. For tests; thread-safe. A mutex passed to AwaitWithDeadline must outlive any
// Advance that runs while the wait is registered.
class SimulatedClock final : public Clock {
 public:
  explicit SimulatedClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000));
  ~SimulatedClock() override;

  absl::Time Now() override;
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) override;

  // Moves time forward by `d` (>= 0) and wakes the waits whose deadline has passed.
  void Advance(absl::Duration d);
  // Number of AwaitWithDeadline calls currently blocked with a finite deadline (lets a test
  // wait until a component is parked on its timer before advancing time).
  int waiters();

 private:
  struct Waiter;
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  std::set<std::shared_ptr<Waiter>> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_CLOCK_H_
