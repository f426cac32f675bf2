// farm-worker's step metrics from StepResults as the executor fills them (the Agent-backed
// gauges are checked end to end in tests/ops).
#include "worker/agent/ops.h"

#include <string>

#include "common/metrics/promtool_check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(WorkerMetricsTest, CountsStepsAndObservesTheirPhases) {
  common::metrics::Registry registry;
  auto m = WorkerMetrics::Create(&registry);
  ASSERT_TRUE(m.ok()) << m.status();
  auto observe = (*m)->StepObserver();

  farm::v1::StepRequest run;
  run.mutable_run()->add_args("true");
  farm::v1::StepResult r;
  r.set_parents_micros(2'000'000);
  r.set_run_micros(3'000'000);
  r.set_layer_micros(1'500'000);
  r.set_upload_micros(500'000);
  r.mutable_layer()->set_digest("sha256:aa");
  observe(run, r);
  farm::v1::StepResult failed;
  failed.set_exit_code(1);
  failed.set_run_micros(1'000'000);
  observe(run, failed);
  farm::v1::StepRequest copy;
  copy.mutable_copy();
  observe(copy, absl::CancelledError("canceled"));
  observe(copy, absl::UnavailableError("cache down"));

  const std::string text = registry.TextExposition();
  EXPECT_THAT(text, HasSubstr("farm_worker_steps_total{op=\"run\",outcome=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_steps_total{op=\"run\",outcome=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_steps_total{op=\"copy\",outcome=\"canceled\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_steps_total{op=\"copy\",outcome=\"error\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_step_phase_seconds_sum{phase=\"parents\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_step_phase_seconds_count{phase=\"run\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_step_phase_seconds_sum{phase=\"run\"} 4\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_step_phase_seconds_sum{phase=\"make_layer\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_step_phase_seconds_sum{phase=\"upload\"} 0.5\n"));
  EXPECT_THAT(text, HasSubstr("farm_worker_step_phase_seconds_count{phase=\"upload\"} 1\n"));
  common::metrics::PromtoolResult lint = common::metrics::PromtoolCheckMetrics(text);
  EXPECT_EQ(lint.exit_code, 0) << lint.output << "\n" << text;
}

}  // namespace
}  // namespace farm::worker::agent
