// Checks Registry::TextExposition() with Prometheus' own parser and linter: Debian's
// `promtool check metrics` (package prometheus). The test fails, never skips, without it.
#include <unistd.h>

#include <cmath>
#include <limits>
#include <string>

#include "common/metrics/metrics.h"
#include "common/metrics/promtool_check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::metrics {
namespace {

class PromtoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(access(kPromtoolPath, X_OK), 0)
        << kPromtoolPath << " is missing: install Debian's prometheus package (tools/setup.sh)";
  }
};

// promtool really checks: a counter without _total and a metric without HELP are reported, and
// garbage does not parse. Without this, a promtool that accepted anything would pass the test
// below.
TEST_F(PromtoolTest, ReportsBadExpositions) {
  PromtoolResult lint = PromtoolCheckMetrics("# HELP farm_x X.\n# TYPE farm_x counter\nfarm_x 1\n");
  EXPECT_NE(lint.exit_code, 0);
  EXPECT_THAT(lint.output, ::testing::HasSubstr("_total"));
  PromtoolResult help = PromtoolCheckMetrics("# TYPE farm_y gauge\nfarm_y 1\n");
  EXPECT_NE(help.exit_code, 0);
  EXPECT_THAT(help.output, ::testing::HasSubstr("no help text"));
  PromtoolResult parse = PromtoolCheckMetrics("farm_z{a=\"unterminated} 1\n");
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
  PromtoolResult result = PromtoolCheckMetrics(text);
  EXPECT_EQ(result.exit_code, 0) << result.output << "\n--- exposition:\n" << text;
  EXPECT_EQ(result.output, "") << "\n--- exposition:\n" << text;
}

}  // namespace
}  // namespace farm::common::metrics
