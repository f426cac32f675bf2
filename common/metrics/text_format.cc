#include "common/metrics/text_format.h"

#include <charconv>
#include <cmath>

namespace farm::common::metrics {

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // std::to_chars without a precision gives the shortest representation that round-trips,
  // which a scraper parses back to exactly `value` (printf's %g would lose digits of large
  // byte counters; %.17g prints 0.1 as 0.10000000000000001).
  char buf[64];
  std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, r.ptr);
}

namespace {

std::string Escape(absl::string_view in, bool quotes) {
  std::string out;
  out.reserve(in.size());
  for (char c : in) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += quotes ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace

std::string EscapeLabelValue(absl::string_view value) { return Escape(value, /*quotes=*/true); }

std::string EscapeHelp(absl::string_view help) { return Escape(help, /*quotes=*/false); }

}  // namespace farm::common::metrics
