#include "cache/server/ops.h"

#include <algorithm>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/status_macros.h"

namespace farm::cache::server {

namespace metrics = common::metrics;

namespace {

// One Stats() shared by every family of a scrape (and by concurrent scrapers).
class StatsSnapshot {
 public:
  StatsSnapshot(std::shared_ptr<CacheAdmin> admin, CacheMetricsOptions options)
      : admin_(std::move(admin)), options_(std::move(options)) {}

  // The stats, at most max_age old; nullopt-like (ok() false) when the store cannot say.
  absl::StatusOr<CacheStats> Get() {
    absl::MutexLock l(&mu_);
    const absl::Time now = options_.now();
    if (!taken_ || now - taken_at_ >= options_.max_age) {
      last_ = admin_->Stats();
      taken_ = true;
      taken_at_ = now;
    }
    return last_;
  }
  absl::Time Now() const { return options_.now(); }
  std::function<ServerCounters()> server_counters() const { return options_.server_counters; }

 private:
  const std::shared_ptr<CacheAdmin> admin_;
  const CacheMetricsOptions options_;
  absl::Mutex mu_;
  bool taken_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time taken_at_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<CacheStats> last_ ABSL_GUARDED_BY(mu_) = absl::UnavailableError("no stats yet");
};

}  // namespace

absl::Status RegisterCacheMetrics(metrics::Registry* r, std::shared_ptr<CacheAdmin> admin,
                                  CacheMetricsOptions options) {
  if (!options.now) options.now = [] { return absl::Now(); };
  auto snap = std::make_shared<StatsSnapshot>(std::move(admin), std::move(options));
  // A family whose value is one field of the stats (0 when they cannot be read).
  auto field = [snap](int64_t CacheStats::*f) {
    return [snap, f] {
      absl::StatusOr<CacheStats> s = snap->Get();
      return s.ok() ? static_cast<double>((*s).*f) : 0.0;
    };
  };
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_cache_stored_bytes", "Bytes of the blobs held in the CAS (their sizes summed)."},
      field(&CacheStats::blob_bytes)));
  RETURN_IF_ERROR(r->AddGaugeCallback({"farm_cache_blobs", "Blobs held in the CAS."},
                                      field(&CacheStats::blob_count)));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_cache_disk_bytes", "Bytes the cache's files occupy on disk (as last measured)."},
      field(&CacheStats::disk_bytes)));
  RETURN_IF_ERROR(r->AddGaugeCallback({"farm_cache_max_size_bytes",
                                       "The disk budget; least recently used blobs are evicted "
                                       "to stay under it."},
                                      field(&CacheStats::max_size)));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_cache_pinned_bytes", "Bytes of blobs pinned by leases or open reads (not evictable)."},
      field(&CacheStats::pinned_bytes)));
  RETURN_IF_ERROR(
      r->AddGaugeCallback({"farm_cache_reserved_bytes", "Budget held by uploads in progress."},
                          field(&CacheStats::reserved_bytes)));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_cache_action_cache_entries", "Action-cache entries held, all scopes."},
      field(&CacheStats::ac_entries)));
  RETURN_IF_ERROR(r->AddCounterCallback(
      {"farm_cache_evicted_bytes_total", "Bytes of blobs evicted since the cache was created."},
      field(&CacheStats::evicted_bytes)));
  RETURN_IF_ERROR(r->AddCounterCallback(
      {"farm_cache_evicted_blobs_total", "Blobs evicted since the cache was created."},
      field(&CacheStats::evicted_blobs)));
  if (std::function<ServerCounters()> counters = snap->server_counters()) {
    RETURN_IF_ERROR(r->AddCounterCallback(
        {"farm_cache_read_bytes_total", "CAS bytes served (ByteStream and batch reads)."},
        [counters] { return static_cast<double>(counters().bytes_read); }));
    RETURN_IF_ERROR(r->AddCounterCallback(
        {"farm_cache_written_bytes_total", "CAS bytes received and committed."},
        [counters] { return static_cast<double>(counters().bytes_written); }));
  }
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_cache_oldest_blob_age_seconds",
       "Time since the least recently used blob still held was last used: how long the cache "
       "keeps an unused blob (its retention under LRU eviction). 0 when empty."},
      [snap] {
        absl::StatusOr<CacheStats> s = snap->Get();
        if (!s.ok() || s->oldest_blob_access_unix_ms <= 0) return 0.0;
        return std::max(0.0,
                        absl::ToDoubleSeconds(snap->Now() -
                                              absl::FromUnixMillis(s->oldest_blob_access_unix_ms)));
      }));
  return absl::OkStatus();
}

void AddStoreReadiness(common::http::ReadinessChecks* ready, std::shared_ptr<BlobStore> cas) {
  // A digest nobody stores: the lookup reads the database and finds nothing.
  const common::Digest probe = common::DigestOf("farm-cache readiness probe");
  ready->Add("store", [cas = std::move(cas), probe]() -> absl::Status {
    absl::StatusOr<std::vector<common::Digest>> missing = cas->FindMissing({probe});
    return missing.ok() ? absl::OkStatus() : missing.status();
  });
}

}  // namespace farm::cache::server
