// Retrying RPCs that failed with UNAVAILABLE (and only that code: every other one is final),
// with exponential backoff and jitter. Used by the cache's gRPC clients.
//
//   cache::client::RetryOptions retry;  // 5 attempts, 100 ms doubling to 5 s
//   absl::Status s = cache::client::Retry(retry, [&] { return CallOnce(); });
#ifndef FARM_CACHE_CLIENT_RETRY_H_
#define FARM_CACHE_CLIENT_RETRY_H_

#include <type_traits>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace cache {
namespace client {

struct RetryOptions {
  int max_attempts = 5;  // including the first
  absl::Duration initial_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(5);
  double multiplier = 2.0;
  double jitter = 0.1;  // +-10%
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
  absl::Duration backoff = options.initial_backoff;
  absl::BitGen gen;
  for (int attempt = 1;; ++attempt) {
    auto result = f();
    if (!absl::IsUnavailable(StatusOf(result)) || attempt >= options.max_attempts) return result;
    double factor = absl::Uniform(gen, 1.0 - options.jitter, 1.0 + options.jitter);
    absl::SleepFor(backoff * factor);
    backoff = std::min(backoff * options.multiplier, options.max_backoff);
  }
}

}  // namespace client
}  // namespace cache

#endif  // FARM_CACHE_CLIENT_RETRY_H_
