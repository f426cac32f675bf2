#include "scheduler/server/ops.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace farm::scheduler::server {

namespace metrics = common::metrics;

namespace {

// Counters of DispatchStats, exported as farm_scheduler_<name>.
struct StatCounter {
  const char* name;
  const char* help;
  int64_t dispatch::DispatchStats::*field;
};

}  // namespace

absl::StatusOr<std::unique_ptr<SchedulerMetrics>> SchedulerMetrics::Create(metrics::Registry* r,
                                                                           Options options) {
  if (!options.now) options.now = [] { return absl::Now(); };
  std::unique_ptr<SchedulerMetrics> m(new SchedulerMetrics(r, std::move(options)));
  ASSIGN_OR_RETURN(m->builds_,
                   r->AddCounter({"farm_scheduler_builds_total",
                                  "Builds that ended, by outcome (succeeded, failed, canceled).",
                                  {"outcome"}}));
  // 1 s to about 9 h.
  ASSIGN_OR_RETURN(m->build_seconds_,
                   r->AddHistogram({"farm_scheduler_build_duration_seconds",
                                    "Wall time of ended builds from start (or submission, if "
                                    "never started) to end, by outcome.",
                                    {"outcome"}},
                                   metrics::ExponentialBuckets(1, 2, 16)));
  // 1 ms to about 1 h.
  ASSIGN_OR_RETURN(
      m->dispatch_seconds_,
      r->AddHistogram({"farm_scheduler_dispatch_latency_seconds",
                       "Time a step waited in the queue before a worker got its lease, by "
                       "platform.",
                       {"platform"},
                       kMaxPlatformSeries},
                      metrics::ExponentialBuckets(0.001, 4, 12)));
  return m;
}

std::string SchedulerMetrics::OutcomeLabel(farm::v1::BuildInfo::State state) {
  switch (state) {
    case farm::v1::BuildInfo::SUCCEEDED:
      return "succeeded";
    case farm::v1::BuildInfo::CANCELED:
      return "canceled";
    default:
      return "failed";
  }
}

std::function<void(const std::string&, absl::Duration)> SchedulerMetrics::DispatchObserver() {
  metrics::Family<metrics::Histogram>* h = dispatch_seconds_;
  return [h](const std::string& platform, absl::Duration wait) {
    h->WithLabels({platform}).ObserveDuration(wait);
  };
}

std::function<void(const farm::v1::BuildInfo&)> SchedulerMetrics::BuildObserver() {
  return [this](const farm::v1::BuildInfo& info) {
    const std::string outcome = OutcomeLabel(info.state());
    builds_->WithLabels({outcome}).Increment();
    int64_t from =
        info.started_unix_micros() > 0 ? info.started_unix_micros() : info.submitted_unix_micros();
    if (from > 0 && info.finished_unix_micros() >= from) {
      build_seconds_->WithLabels({outcome}).Observe(
          static_cast<double>(info.finished_unix_micros() - from) / 1e6);
    }
  };
}

absl::Status SchedulerMetrics::ObserveDispatcher(const dispatch::Dispatcher* d) {
  metrics::Registry* r = registry_;
  std::function<absl::Time()> now = opts_.now;
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_scheduler_queued_tasks",
       "Steps waiting for a worker (queued, held for locality, or restored and unclaimed), by "
       "platform and tenant.",
       {"platform", "tenant"},
       kMaxQueueSeries},
      [d] {
        std::vector<metrics::Sample> out;
        for (const dispatch::QueueSummary& q : d->Queues()) {
          out.push_back({{q.platform, q.tenant}, static_cast<double>(q.queued)});
        }
        return out;
      }));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_scheduler_queue_oldest_task_age_seconds",
       "How long the longest-waiting step has waited, by platform and tenant.",
       {"platform", "tenant"},
       kMaxQueueSeries},
      [d, now] {
        std::vector<metrics::Sample> out;
        const absl::Time t = now();
        for (const dispatch::QueueSummary& q : d->Queues()) {
          out.push_back({{q.platform, q.tenant},
                         std::max(0.0, absl::ToDoubleSeconds(t - q.oldest_queued_at))});
        }
        return out;
      },
      metrics::Merge::kMax));
  RETURN_IF_ERROR(
      r->AddGaugeCallback({"farm_scheduler_slots", "Step slots of the connected workers."},
                          [d] { return static_cast<double>(d->Stats().slots_total); }));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_scheduler_slots_busy", "Step slots of the connected workers holding a lease."},
      [d] { return static_cast<double>(d->Stats().slots_busy); }));
  RETURN_IF_ERROR(r->AddGaugeCallback({"farm_scheduler_running_tasks", "Steps leased to a worker."},
                                      [d] { return static_cast<double>(d->Stats().running); }));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_scheduler_workers",
       "Known workers by platform and state: idle and busy (connected, without or with a "
       "lease), disconnected (still holding leases, or seen within the last hour).",
       {"platform", "state"},
       kMaxPlatformSeries * 3},
      [d] {
        std::map<std::pair<std::string, std::string>, double> n;
        for (const farm::v1::WorkerInfo& w : d->Workers()) {
          const char* state = !w.connected() ? "disconnected" : w.busy() > 0 ? "busy" : "idle";
          n[{w.platform(), state}] += 1;
        }
        std::vector<metrics::Sample> out;
        for (const auto& [k, v] : n) out.push_back({{k.first, k.second}, v});
        return out;
      }));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_scheduler_emulating_workers",
       "Connected workers that run a platform under QEMU user emulation (farm-worker "
       "--emulate), by that platform. They get its steps only while no worker runs it "
       "natively.",
       {"platform"},
       kMaxPlatformSeries},
      [d] {
        std::map<std::string, double> n;
        for (const farm::v1::WorkerInfo& w : d->Workers()) {
          if (!w.connected()) continue;
          for (const std::string& p : w.emulated_platforms()) n[p] += 1;
        }
        std::vector<metrics::Sample> out;
        for (const auto& [k, v] : n) out.push_back({{k}, v});
        return out;
      }));
  static const StatCounter kCounters[] = {
      {"farm_scheduler_tasks_submitted_total", "Steps queued as new tasks.",
       &dispatch::DispatchStats::submitted},
      {"farm_scheduler_tasks_deduplicated_total",
       "Steps that joined a task already queued or running for the same cache key.",
       &dispatch::DispatchStats::deduplicated},
      {"farm_scheduler_tasks_dispatched_total", "Leases granted to workers.",
       &dispatch::DispatchStats::dispatched},
      {"farm_scheduler_tasks_completed_total", "Results accepted from workers.",
       &dispatch::DispatchStats::completed},
      {"farm_scheduler_requeues_total", "Tasks queued again after their worker lost the lease.",
       &dispatch::DispatchStats::requeued},
      {"farm_scheduler_tasks_aborted_total", "Tasks failed after losing max_attempts leases.",
       &dispatch::DispatchStats::aborted},
      {"farm_scheduler_tasks_rejected_total", "Steps refused because the queue was full.",
       &dispatch::DispatchStats::rejected},
  };
  for (const StatCounter& c : kCounters) {
    auto field = c.field;
    RETURN_IF_ERROR(r->AddCounterCallback(
        {c.name, c.help}, [d, field] { return static_cast<double>(d->Stats().*field); }));
  }
  // Every lost lease either requeues its task or, at the last attempt, aborts it.
  RETURN_IF_ERROR(r->AddCounterCallback(
      {"farm_scheduler_lease_losses_total",
       "Leases lost (the worker went silent, disconnected or dropped the task)."},
      [d] {
        dispatch::DispatchStats s = d->Stats();
        return static_cast<double>(s.requeued + s.aborted);
      }));
  return absl::OkStatus();
}

void AddCacheReadiness(common::http::ReadinessChecks* ready, const CacheWatch* watch) {
  ready->Add("cache", [watch] {
    return watch->reachable() ? absl::OkStatus()
                              : absl::UnavailableError("farm-cache is not reachable (yet)");
  });
}

}  // namespace farm::scheduler::server
