// Test helper: runs Debian's `promtool check metrics` (package prometheus, installed by
// tools/setup.sh) on an exposition. Tests using it fail, never skip, when promtool is missing.
//
//   PromtoolResult r = PromtoolCheckMetrics(registry.TextExposition());
//   EXPECT_EQ(r.exit_code, 0) << r.output;
#ifndef FARM_COMMON_METRICS_PROMTOOL_CHECK_H_
#define FARM_COMMON_METRICS_PROMTOOL_CHECK_H_

#include <string>

namespace farm::common::metrics {

inline constexpr char kPromtoolPath[] = "/usr/bin/promtool";

struct PromtoolResult {
  int exit_code = -1;  // 0: parsed and no lint problem; -1: promtool could not be run
  std::string output;  // its stdout and stderr (the problems found)
};

// Writes `text` to a file under $TEST_TMPDIR and runs `promtool check metrics` on it.
PromtoolResult PromtoolCheckMetrics(const std::string& text);

}  // namespace farm::common::metrics

#endif  // FARM_COMMON_METRICS_PROMTOOL_CHECK_H_
