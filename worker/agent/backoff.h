// Backoff: the delays between reconnection attempts of farm-worker (exponential, capped,
// jittered), so a fleet of workers whose scheduler went away neither hammers it nor comes
// back in lockstep.
//
//   worker::agent::Backoff backoff({absl::Milliseconds(250), absl::Seconds(30), 2.0, 0.2});
//   while (!Connect().ok()) absl::SleepFor(backoff.Next());   // 250ms, 500ms, 1s, ... 30s (±20%)
//   backoff.Reset();                                          // after a connection that held
#ifndef FARM_WORKER_AGENT_BACKOFF_H_
#define FARM_WORKER_AGENT_BACKOFF_H_

#include <functional>

#include "absl/random/random.h"
#include "absl/time/time.h"

namespace worker {
namespace agent {

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
  // Starts over at `initial` (after a connection that worked).
  void Reset() { attempts_ = 0; }
  // Delays handed out since the last Reset.
  int attempts() const { return attempts_; }

 private:
  Options options_;
  std::function<double()> uniform_;
  absl::BitGen gen_;
  int attempts_ = 0;
};

}  // namespace agent
}  // namespace worker

#endif  // FARM_WORKER_AGENT_BACKOFF_H_
