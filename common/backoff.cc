#include "common/backoff.h"

#include <cmath>

namespace farm::common {

Backoff::Backoff(Options options, std::function<double()> uniform)
    : options_(options), uniform_(std::move(uniform)) {
  if (options_.initial <= absl::ZeroDuration()) options_.initial = absl::Milliseconds(1);
  if (options_.max < options_.initial) options_.max = options_.initial;
  if (options_.multiplier < 1.0) options_.multiplier = 1.0;
  options_.jitter = std::clamp(options_.jitter, 0.0, 1.0);
}

absl::Duration Backoff::Next() { return Delay(attempts_++); }

absl::Duration Backoff::Delay(int attempt) const {
  // initial * multiplier^attempt, computed in doubles so a long outage cannot overflow.
  double factor = std::pow(options_.multiplier, std::clamp(attempt, 0, 64));
  double base_s = std::min(absl::ToDoubleSeconds(options_.initial) * factor,
                           absl::ToDoubleSeconds(options_.max));
  double u = 0.0;
  if (uniform_) {
    u = uniform_();
  } else {
    thread_local absl::BitGen gen;
    u = absl::Uniform(gen, 0.0, 1.0);
  }
  double scale = 1.0 - options_.jitter + 2.0 * options_.jitter * u;
  return std::min(absl::Seconds(base_s * scale), options_.max);
}

}  // namespace farm::common
