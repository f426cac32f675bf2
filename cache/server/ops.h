// farm-cache's operational side (issue 16): the metrics read from the store at scrape time
// (CacheAdmin::Stats(), taken at most once per `max_age` however many families and scrapers
// ask) and the readiness check (the database answers a point lookup).
//
//   metrics::Registry registry;
//   RETURN_IF_ERROR(RegisterCacheMetrics(&registry, admin));
//   http::ReadinessChecks ready;
//   AddStoreReadiness(&ready, cas);
//   options.metrics = &registry;   // the per-scope action-cache counter (cache_server.h)
//
// The metric list is in README.md ("Operations").
#ifndef FARM_CACHE_SERVER_OPS_H_
#define FARM_CACHE_SERVER_OPS_H_

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cache/admin.h"
#include "cache/blob_store.h"
#include "common/http/observability.h"
#include "common/metrics/metrics.h"

namespace farm::cache::server {

struct CacheMetricsOptions {
  // A Stats() snapshot is reused for this long (it measures the directory's disk use).
  absl::Duration max_age = absl::Seconds(2);
  // The time blob ages are measured against. Default: absl::Now.
  std::function<absl::Time()> now;
  // The server's own counters (CacheServer::counters(): bytes served and received); their
  // families are left out when unset.
  std::function<ServerCounters()> server_counters;
};

// Registers farm_cache_* families computed from `admin`'s Stats(): bytes and blobs stored,
// disk use and budget, bytes evicted, retention (age of the least recently used blob), pins,
// action-cache entries; and bytes served and received from options.server_counters. `admin`
// (and whatever server_counters reads) must outlive the scrapes.
absl::Status RegisterCacheMetrics(common::metrics::Registry* registry,
                                  std::shared_ptr<CacheAdmin> admin,
                                  CacheMetricsOptions options = {});

// Readiness "store": a point lookup in `cas` succeeds (the database is open and readable).
void AddStoreReadiness(common::http::ReadinessChecks* ready, std::shared_ptr<BlobStore> cas);

}  // namespace farm::cache::server

#endif  // FARM_CACHE_SERVER_OPS_H_
