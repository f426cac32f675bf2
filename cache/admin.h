// CacheAdmin: the budget and usage of a cache (local RocksDB store or a farm-cache server),
// for `farm cache stats|gc` and monitoring.
//
//   ASSIGN_OR_RETURN(cache::CacheStats s, admin->Stats());
//   std::cout << s.blob_count << " blobs, " << s.blob_bytes << " of " << s.max_size << "\n";
//   ASSIGN_OR_RETURN(cache::GcResult r, admin->Gc({/*max_size=*/10LL << 30}));
#ifndef FARM_CACHE_ADMIN_H_
#define FARM_CACHE_ADMIN_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace farm::cache {

// Action-cache entries of one scope.
struct ScopeStats {
  std::string scope;
  int64_t entries = 0;
  int64_t bytes = 0;  // serialized ActionResults
};

// What a farm-cache server counted since it started (zero for an in-process store).
struct ServerCounters {
  int64_t ac_hits = 0;
  int64_t ac_misses = 0;  // includes entries rejected as incomplete
  int64_t ac_updates = 0;
  int64_t find_missing_digests = 0;  // digests asked about
  int64_t find_missing_missing = 0;  // of which were missing
  int64_t bytes_read = 0;            // CAS bytes served (ByteStream + batch)
  int64_t bytes_written = 0;         // CAS bytes received and committed
};

struct CacheStats {
  std::string location;    // directory or server address
  int64_t max_size = 0;    // the disk budget in bytes
  int64_t disk_bytes = 0;  // bytes the cache's files occupy on disk (as measured)
  int64_t blob_count = 0;
  int64_t blob_bytes = 0;    // sum of blob sizes
  int64_t pinned_blobs = 0;  // blobs held by unexpired leases or open reads
  int64_t pinned_bytes = 0;
  int64_t leases = 0;          // unexpired leases
  int64_t reserved_bytes = 0;  // budget held by writes in progress
  int64_t evicted_blobs = 0;   // since the cache was created
  int64_t evicted_bytes = 0;
  // Last use (read or write) of the least recently used blob still held, in ms since the
  // epoch; 0 when there is none. Eviction is LRU, so now minus this is how long an unused
  // blob is kept: the cache's retention.
  int64_t oldest_blob_access_unix_ms = 0;
  int64_t ac_entries = 0;
  std::vector<ScopeStats> scopes;  // sorted by scope name
  ServerCounters server;
};

struct GcOptions {
  // New disk budget in bytes (persisted); 0 keeps the current one.
  int64_t max_size = 0;
};

struct GcResult {
  int64_t evicted_blobs = 0;
  int64_t evicted_bytes = 0;
  int64_t evicted_ac_entries = 0;
  CacheStats after;
};

class CacheAdmin {
 public:
  virtual ~CacheAdmin() = default;
  // A snapshot of usage. Thread-safe.
  virtual absl::StatusOr<CacheStats> Stats() = 0;
  // Enforces the budget now: evicts least-recently-used unpinned entries until disk use fits
  // the budget with its headroom, and compacts away deleted data. Thread-safe.
  virtual absl::StatusOr<GcResult> Gc(const GcOptions& options) = 0;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_ADMIN_H_
