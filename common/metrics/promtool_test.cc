// Checks Registry::TextExposition() with Prometheus' own parser and linter: Debian's
// `promtool check metrics` (package prometheus). The test fails, never skips, without it.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/metrics/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::metrics {
namespace {

constexpr char kPromtool[] = "/usr/bin/promtool";

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs `promtool check metrics` with `text` on its stdin.
Result CheckMetrics(const std::string& text) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp ? tmp : "/tmp", "/exposition-", getpid(), ".txt");
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
  }
  Result r;
  const std::string cmd = absl::StrCat(kPromtool, " check metrics < '", path, "' 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  unlink(path.c_str());
  return r;
}

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kPromtool, X_OK), 0)
        << kPromtool << " is missing: install Debian's prometheus package (tools/setup.sh)";
  }
};

// promtool really checks: a counter without _total and a metric without HELP are reported, and
// garbage does not parse. Without this, a promtool that accepted anything would pass the test
// below.
TEST_F(PromtoolTest, ReportsBadExpositions) {
  Result lint = CheckMetrics("# HELP farm_x X.\n# TYPE farm_x counter\nfarm_x 1\n");
  EXPECT_NE(lint.exit_code, 0);
  EXPECT_THAT(lint.output, ::testing::HasSubstr("_total"));
  Result help = CheckMetrics("# TYPE farm_y gauge\nfarm_y 1\n");
  EXPECT_NE(help.exit_code, 0);
  EXPECT_THAT(help.output, ::testing::HasSubstr("no help text"));
  Result parse = CheckMetrics("farm_z{a=\"unterminated} 1\n");
  EXPECT_NE(parse.exit_code, 0);
}

TEST_F(PromtoolTest, AcceptsEverythingTheRegistryWrites) {
  Registry r;
  auto rpcs = r.AddCounter({"farm_test_rpcs_total",
                            "RPCs by \"method\" and code.\nA second line, a backslash \\ and é.",
                            {"method", "code"}});
  auto bytes = r.AddCounter({"farm_test_stored_bytes_total", "Bytes stored."});
  auto temp = r.AddGauge({"farm_test_value", "Odd values.", {"kind"}});
  auto latency = r.AddHistogram({"farm_test_latency_seconds", "Latency.", {"method"}},
                                DefaultLatencyBuckets());
  auto sizes = r.AddHistogram({"farm_test_layer_size_bytes", "Layer sizes."},
                              ExponentialBuckets(1024, 4, 10));
  MetricDesc capped{"farm_test_builds_total", "Builds by tenant.", {"tenant"}};
  capped.max_series = 2;
  auto builds = r.AddCounter(capped);
  ASSERT_TRUE(rpcs.ok() && bytes.ok() && temp.ok() && latency.ok() && sizes.ok() && builds.ok());
  ASSERT_TRUE(
      r.AddGaugeCallback({"farm_test_queue_tasks", "Queued steps.", {"platform", "tenant"}}, [] {
         return std::vector<Sample>{
             {{"linux/amd64", "a"}, 3}, {{"linux/arm64", "b"}, 0}, {{"bad", "\xff"}, 1}};
       }).ok());
  ASSERT_TRUE(
      r.AddGaugeCallback({"farm_test_oldest_task_age_seconds", "Age."}, [] { return 12.5; }).ok());

  (*rpcs)->WithLabels({"/farm.v1.Scheduler/Submit", "OK"}).IncrementBy(1e6);
  (*rpcs)->WithLabels({"/farm.v1.Scheduler/Submit", "UNAVAILABLE"}).Increment();
  (*rpcs)->WithLabels({"quote\" backslash\\ newline\n tab\t", "OK"}).Increment();
  (*rpcs)->WithLabels({"", "OK"}).Increment();
  (*bytes)->WithLabels().IncrementBy(123456789012345.0);
  (*temp)->WithLabels({"nan"}).Set(std::nan(""));
  (*temp)->WithLabels({"inf"}).Set(std::numeric_limits<double>::infinity());
  (*temp)->WithLabels({"-inf"}).Set(-std::numeric_limits<double>::infinity());
  (*temp)->WithLabels({"tiny"}).Set(1e-300);
  (*temp)->WithLabels({"negative"}).Set(-0.1);
  (*temp)->WithLabels({"日本"}).Set(1);
  for (double v : {0.001, 0.2, 3.0, 60.0}) (*latency)->WithLabels({"/a.B/C"}).Observe(v);
  (*sizes)->WithLabels().Observe(5e6);
  for (const char* t : {"a", "b", "c", "d"}) (*builds)->WithLabels({t}).Increment();

  const std::string text = r.TextExposition();
  // The interesting cases are all there.
  EXPECT_THAT(text, ::testing::HasSubstr("__overflow__"));
  EXPECT_THAT(text, ::testing::HasSubstr("le=\"+Inf\""));
  EXPECT_THAT(text, ::testing::HasSubstr(" NaN\n"));
  Result result = CheckMetrics(text);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- exposition:\n" << text;
  EXPECT_EQ(result.output, "") << "\n--- exposition:\n" << text;
}

}  // namespace
}  // namespace farm::common::metrics
