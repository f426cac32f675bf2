// Backoff and retry: the one place that decides how long to wait between attempts (exponential,
// capped, jittered), so that a fleet of clients whose server went away neither hammers it nor
// comes back in lockstep. Used by the cache's gRPC clients, farm-worker's reconnection loop,
// the registry client and `farm submit`'s reattachment.
//
//   common::Backoff backoff({absl::Milliseconds(250), absl::Seconds(30), 2.0, 0.2});
//   while (!Connect().ok()) absl::SleepFor(backoff.Next());   // 250ms, 500ms, 1s, ... 30s (±20%)
//   backoff.Reset();                                          // after a connection that held
//
//   common::RetryOptions retry;  // 5 attempts, 100 ms doubling to 5 s, ±10%
//   absl::Status s = common::Retry(retry, [&] { return CallOnce(); });  // UNAVAILABLE only
#ifndef FARM_COMMON_BACKOFF_H_
#define FARM_COMMON_BACKOFF_H_

#include <algorithm>
#include <functional>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace farm::common {

class Backoff {
 public:
  struct Options {
    absl::Duration initial = absl::Milliseconds(250);  // the first delay
    absl::Duration max = absl::Seconds(30);            // no delay is longer than this
    double multiplier = 2.0;                           // growth per attempt (>= 1)
    double jitter = 0.2;  // each delay is scaled by a uniform factor in [1-jitter, 1+jitter]
  };

  // `uniform` returns values in [0, 1) (tests pass a fixed sequence); null: a real RNG.
  explicit Backoff(Options options, std::function<double()> uniform = nullptr);

  // The delay before the next attempt: initial * multiplier^n, capped at `max` before and
  // after jitter. Not thread-safe.
  absl::Duration Next();
  // The delay before attempt `attempt` + 1 (0 gives `initial`), for callers that count
  // attempts themselves. Thread-safe when no `uniform` function was given.
  absl::Duration Delay(int attempt) const;
  // Starts over at `initial` (after an attempt that worked).
  void Reset() { attempts_ = 0; }
  // Delays handed out since the last Reset.
  int attempts() const { return attempts_; }

 private:
  Options options_;
  std::function<double()> uniform_;
  int attempts_ = 0;
};

// Retrying calls that failed with UNAVAILABLE (and only that code: every other one is final).
struct RetryOptions {
  int max_attempts = 5;  // including the first
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter = 0.1;  // ±10%

  Backoff::Options backoff() const { return {initial_backoff, max_backoff, multiplier, jitter}; }
};

inline const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// Calls `f` (returning absl::Status or absl::StatusOr<T>) until it returns anything but
// UNAVAILABLE or the attempts are used up; returns the last result.
template <typename F>
auto Retry(const RetryOptions& options, F&& f) -> decltype(f()) {
  Backoff backoff(options.backoff());
  for (int attempt = 1;; ++attempt) {
    auto result = f();
    if (!absl::IsUnavailable(StatusOf(result)) || attempt >= options.max_attempts) return result;
    absl::SleepFor(backoff.Next());
  }
}

}  // namespace farm::common

#endif  // FARM_COMMON_BACKOFF_H_
