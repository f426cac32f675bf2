#include "worker/agent/backoff.h"

#include <algorithm>
#include <cmath>

namespace worker {
namespace agent {

Backoff::Backoff(Options options, std::function<double()> uniform)
    : options_(options), uniform_(std::move(uniform)) {
  if (options_.initial <= absl::ZeroDuration()) options_.initial = absl::Milliseconds(1);
  if (options_.max < options_.initial) options_.max = options_.initial;
  if (options_.multiplier < 1.0) options_.multiplier = 1.0;
  options_.jitter = std::clamp(options_.jitter, 0.0, 1.0);
}

absl::Duration Backoff::Next() {
  // initial * multiplier^attempts, computed in doubles so a long outage cannot overflow.
  double factor = std::pow(options_.multiplier, std::min(attempts_, 64));
  double base_s = std::min(absl::ToDoubleSeconds(options_.initial) * factor,
                           absl::ToDoubleSeconds(options_.max));
  ++attempts_;
  double u = uniform_ ? uniform_() : absl::Uniform(gen_, 0.0, 1.0);
  double scale = 1.0 - options_.jitter + 2.0 * options_.jitter * u;
  return std::min(absl::Seconds(base_s * scale), options_.max);
}

}  // namespace agent
}  // namespace worker
