// farm-scheduler's operational side (issue 16): its Prometheus metrics, its readiness, and the
// HTTP endpoints on --metrics-listen. The metrics are mostly read at scrape time from what the
// dispatcher and the build manager already keep (Dispatcher::Stats(), Queues(), Workers()), so
// nothing on the dispatch path takes a new lock; only finished builds and granted leases are
// pushed (an atomic add each).
//
//   metrics::Registry registry;
//   ASSIGN_OR_RETURN(auto m, SchedulerMetrics::Create(&registry));
//   dispatch_options.on_dispatch = m->DispatchObserver();      // before Dispatcher::Create
//   manager_options.on_finished = m->BuildObserver();          // before BuildManager::Create
//   RETURN_IF_ERROR(m->ObserveDispatcher(dispatcher.get()));   // scrape-time families
//   http::ReadinessChecks ready;
//   AddCacheReadiness(&ready, &cache_watch);
//   ASSIGN_OR_RETURN(std::unique_ptr<http::HttpServer> http,
//                    common::ops::StartMetricsServer(flags.ops, &registry, &ready, log));
//   // farm-scheduler's main keeps `http`: more pages (the status page) are more
//   // http->Handle(...) calls on the same server.
//
// The metric names, types and labels are listed in README.md ("Operations").
#ifndef FARM_SCHEDULER_SERVER_OPS_H_
#define FARM_SCHEDULER_SERVER_OPS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/http/observability.h"
#include "common/metrics/metrics.h"
#include "farm/v1/scheduler.pb.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/server/cache_watch.h"

namespace farm::scheduler::server {

// Label sets are bounded: tenants and platforms beyond these many series go to the registry's
// overflow series ("__overflow__").
inline constexpr int kMaxPlatformSeries = 32;
inline constexpr int kMaxQueueSeries = 256;  // platform x tenant

class SchedulerMetrics {
 public:
  struct Options {
    // The time queue ages are measured against (the dispatcher's clock). Default: absl::Now.
    std::function<absl::Time()> now;
  };

  // Registers the pushed families (builds, dispatch latency). ALREADY_EXISTS if `registry`
  // already has them. `registry` must outlive the returned object.
  static absl::StatusOr<std::unique_ptr<SchedulerMetrics>> Create(common::metrics::Registry* r,
                                                                  Options options);
  static absl::StatusOr<std::unique_ptr<SchedulerMetrics>> Create(common::metrics::Registry* r) {
    return Create(r, Options());
  }

  // For dispatch::Options::on_dispatch: observes the lease's queue wait. Lock-free.
  std::function<void(const std::string&, absl::Duration)> DispatchObserver();
  // For BuildManager::Options::on_finished: counts the build by outcome, observes its duration.
  std::function<void(const farm::v1::BuildInfo&)> BuildObserver();

  // Registers the families read from `d` at every scrape: queue depth and oldest age per
  // platform and tenant, slots, running tasks, workers by platform and state, and the
  // dispatcher's totals (leases lost, requeues, ...). `d` must outlive the registry's scrapes
  // (stop the HTTP server first).
  absl::Status ObserveDispatcher(const dispatch::Dispatcher* d);

  // The label value of a build's outcome: "succeeded", "failed" or "canceled".
  static std::string OutcomeLabel(farm::v1::BuildInfo::State state);

 private:
  SchedulerMetrics(common::metrics::Registry* r, Options options) : registry_(r), opts_(options) {}

  common::metrics::Registry* const registry_;
  const Options opts_;
  common::metrics::Family<common::metrics::Counter>* builds_ = nullptr;
  common::metrics::Family<common::metrics::Histogram>* build_seconds_ = nullptr;
  common::metrics::Family<common::metrics::Histogram>* dispatch_seconds_ = nullptr;
};

// Readiness "cache": farm-cache reachable (CacheWatch's last check). `watch` must outlive the
// checks.
void AddCacheReadiness(common::http::ReadinessChecks* ready, const CacheWatch* watch);

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_OPS_H_
