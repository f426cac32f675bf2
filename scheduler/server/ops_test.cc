// farm-scheduler's metrics and readiness: a real Dispatcher driven through its transport seam
// with a fake worker and a simulated clock; the scrape is read as text, linted by promtool, and
// served over HTTP with /readyz following the cache watch.
#include "scheduler/server/ops.h"

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/http/test_client.h"
#include "common/metrics/promtool_check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/dispatch/clock.h"
#include "scheduler/dispatch/testing/fake_worker.h"

namespace farm::scheduler::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace dt = ::farm::scheduler::dispatch::testing;

TEST(SchedulerMetricsTest, QueueSlotsWorkersLeasesBuildsAndDispatchLatency) {
  dispatch::SimulatedClock clock;
  common::metrics::Registry registry;
  SchedulerMetrics::Options mo;
  mo.now = [&clock] { return clock.Now(); };
  auto m = SchedulerMetrics::Create(&registry, mo);
  ASSERT_TRUE(m.ok()) << m.status();

  dispatch::Options dopt;
  dopt.clock = &clock;
  dopt.locality_wait = absl::ZeroDuration();
  dopt.on_dispatch = (*m)->DispatchObserver();
  auto d = dispatch::Dispatcher::Create(dopt);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_TRUE((*m)->ObserveDispatcher(d->get()).ok());

  // Two steps of team-a wait 7 s; then a worker with one slot takes the first.
  auto a1 = dt::Start(d->get(), dt::Spec("a1", "team-a"));
  auto a2 = dt::Start(d->get(), dt::Spec("a2", "team-a"));
  clock.Advance(absl::Seconds(7));
  std::string text = registry.TextExposition();
  EXPECT_THAT(
      text,
      HasSubstr("farm_scheduler_queued_tasks{platform=\"linux/amd64\",tenant=\"team-a\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_queue_oldest_task_age_seconds{platform=\"linux/"
                              "amd64\",tenant=\"team-a\"} 7\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_slots 0\n"));

  dt::FakeWorkerOptions wo;
  wo.id = "w1";
  wo.slots = 1;
  wo.platform = "linux/amd64";
  wo.emulated_platforms = {"linux/arm64"};
  dt::FakeWorker w((*d)->sessions(), wo);
  ASSERT_TRUE(w.Connect().ok());
  farm::v1::Task t = w.NextTask();
  text = registry.TextExposition();
  EXPECT_THAT(
      text,
      HasSubstr("farm_scheduler_queued_tasks{platform=\"linux/amd64\",tenant=\"team-a\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_slots 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_slots_busy 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_running_tasks 1\n"));
  EXPECT_THAT(text,
              HasSubstr("farm_scheduler_workers{platform=\"linux/amd64\",state=\"busy\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_emulating_workers{platform=\"linux/arm64\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_tasks_dispatched_total 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_dispatch_latency_seconds_count{platform=\"linux/"
                              "amd64\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_dispatch_latency_seconds_sum{platform=\"linux/"
                              "amd64\"} 7\n"));

  // The worker vanishes: its lease is lost after lease_timeout and the task is requeued.
  w.Disconnect();
  clock.Advance(dopt.lease_timeout + absl::Seconds(1));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline &&
         !absl::StrContains(registry.TextExposition(), "farm_scheduler_requeues_total 1\n")) {
    absl::SleepFor(absl::Milliseconds(5));  // the dispatcher's timer thread; bounded wait
  }
  text = registry.TextExposition();
  EXPECT_THAT(text, HasSubstr("farm_scheduler_requeues_total 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_lease_losses_total 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("farm_scheduler_workers{platform=\"linux/amd64\",state=\"disconnected\"} 1\n"));

  // Builds.
  farm::v1::BuildInfo b;
  b.set_state(farm::v1::BuildInfo::SUCCEEDED);
  b.set_submitted_unix_micros(1'000'000);
  b.set_started_unix_micros(2'000'000);
  b.set_finished_unix_micros(5'000'000);
  (*m)->BuildObserver()(b);
  b.set_state(farm::v1::BuildInfo::FAILED);
  (*m)->BuildObserver()(b);
  b.set_state(farm::v1::BuildInfo::CANCELED);
  b.set_started_unix_micros(0);  // canceled while queued: from submission
  (*m)->BuildObserver()(b);
  text = registry.TextExposition();
  EXPECT_THAT(text, HasSubstr("farm_scheduler_builds_total{outcome=\"succeeded\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_builds_total{outcome=\"failed\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("farm_scheduler_builds_total{outcome=\"canceled\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("farm_scheduler_build_duration_seconds_sum{outcome=\"succeeded\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("farm_scheduler_build_duration_seconds_sum{outcome=\"canceled\"} 4\n"));

  common::metrics::PromtoolResult lint = common::metrics::PromtoolCheckMetrics(text);
  EXPECT_EQ(lint.exit_code, 0) << lint.output << "\n" << text;
  (*d)->Shutdown();
}

TEST(SchedulerMetricsTest, TenantsBeyondTheCapShareTheOverflowSeries) {
  dispatch::SimulatedClock clock;
  common::metrics::Registry registry;
  SchedulerMetrics::Options mo;
  mo.now = [&clock] { return clock.Now(); };
  auto m = SchedulerMetrics::Create(&registry, mo);
  ASSERT_TRUE(m.ok());
  dispatch::Options dopt;
  dopt.clock = &clock;
  auto d = dispatch::Dispatcher::Create(dopt);
  ASSERT_TRUE(d.ok());
  ASSERT_TRUE((*m)->ObserveDispatcher(d->get()).ok());
  std::vector<std::shared_ptr<dt::Outcome>> outcomes;
  for (int i = 0; i < kMaxQueueSeries + 10; ++i) {
    outcomes.push_back(dt::Start(d->get(), dt::Spec(absl::StrCat("k", i), absl::StrCat("t", i))));
  }
  std::string text = registry.TextExposition();
  EXPECT_THAT(text, HasSubstr("farm_scheduler_queued_tasks{platform=\"__overflow__\",tenant=\""
                              "__overflow__\"} 10\n"));
  (*d)->Shutdown();
}

TEST(SchedulerOpsTest, ReadyzFollowsTheCacheWatch) {
  absl::Mutex mu;
  bool up = false;
  CacheWatch::Options wo;
  wo.connect_timeout = absl::Milliseconds(20);
  wo.poll = absl::Milliseconds(5);
  wo.recheck_up = wo.recheck_down = absl::Milliseconds(5);
  CacheWatch watch(
      "cache:9092",
      [&](absl::Time) {
        absl::MutexLock l(&mu);
        return up;
      },
      [](const std::string&) {}, wo);
  common::http::ReadinessChecks ready;
  AddCacheReadiness(&ready, &watch);
  common::metrics::Registry registry;
  auto http = common::http::HttpServer::Create("127.0.0.1:0");
  ASSERT_TRUE(http.ok()) << http.status();
  ASSERT_TRUE(common::http::ServeObservability(**http, &registry, &ready).ok());
  const std::string base = absl::StrCat("http://127.0.0.1:", (*http)->port());
  auto readyz = common::http::Fetch(base + "/readyz");
  ASSERT_TRUE(readyz.ok());
  EXPECT_EQ(readyz->status, 503);
  EXPECT_THAT(readyz->body, HasSubstr("cache"));
  EXPECT_EQ(common::http::Fetch(base + "/healthz")->status, 200);
  {
    absl::MutexLock l(&mu);
    up = true;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!watch.reachable() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(common::http::Fetch(base + "/readyz")->status, 200);
  EXPECT_EQ(common::http::Fetch(base + "/metrics")->status, 200);
  (*http)->Shutdown();
}

}  // namespace
}  // namespace farm::scheduler::server
