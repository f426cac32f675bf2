#include "scheduler/dispatch/clock.h"

#include <utility>
#include <vector>

namespace farm::scheduler::dispatch {
namespace {

class RealClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                         absl::Time deadline) override {
    if (deadline == absl::InfiniteFuture()) {
      mu->Await(cond);
      return true;
    }
    return mu->AwaitWithDeadline(cond, deadline);
  }
};

}  // namespace

Clock* Clock::Real() {
  static Clock* const clock = new RealClock();
  return clock;
}

// One blocked AwaitWithDeadline. `fired` is guarded by the waiter's own mutex `mu` (the one the
// caller holds), so that setting it re-evaluates the caller's condition.
struct SimulatedClock::Waiter {
  absl::Mutex* mu = nullptr;
  absl::Time deadline;
  bool fired = false;
};

SimulatedClock::SimulatedClock(absl::Time start) : now_(start) {}
SimulatedClock::~SimulatedClock() = default;

absl::Time SimulatedClock::Now() {
  absl::MutexLock l(&mu_);
  return now_;
}

bool SimulatedClock::AwaitWithDeadline(absl::Mutex* mu, const absl::Condition& cond,
                                       absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) {
    mu->Await(cond);
    return true;
  }
  auto w = std::make_shared<Waiter>();
  w->mu = mu;
  w->deadline = deadline;
  {
    // Lock order: the caller's mutex, then mu_ (Advance never holds mu_ while taking a
    // waiter's mutex).
    absl::MutexLock l(&mu_);
    if (now_ >= deadline) return cond.Eval();
    waiters_.insert(w);
  }
  struct Args {
    const absl::Condition* cond;
    Waiter* w;
  } args{&cond, w.get()};
  mu->Await(absl::Condition(
      +[](Args* a) { return a->w->fired || a->cond->Eval(); }, &args));
  {
    absl::MutexLock l(&mu_);
    waiters_.erase(w);
  }
  return cond.Eval();
}

void SimulatedClock::Advance(absl::Duration d) {
  std::vector<std::shared_ptr<Waiter>> due;
  {
    absl::MutexLock l(&mu_);
    if (d > absl::ZeroDuration()) now_ += d;
    for (const std::shared_ptr<Waiter>& w : waiters_) {
      if (w->deadline <= now_) due.push_back(w);
    }
  }
  for (const std::shared_ptr<Waiter>& w : due) {
    absl::MutexLock l(w->mu);
    w->fired = true;
  }
}

int SimulatedClock::waiters() {
  absl::MutexLock l(&mu_);
  return static_cast<int>(waiters_.size());
}

}  // namespace farm::scheduler::dispatch
