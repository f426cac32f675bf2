// PinTable: which blobs must not be evicted right now, and why. A blob is pinned while a
// reader has it open (counted: two readers, two RemoveReader calls) or while an unexpired
// lease names it. Memory only: the store persists leases itself and hands them back with
// AddLease when it opens. Keys are opaque strings (the store uses its blob keys); times are
// Unix milliseconds from the store's clock, passed in so that expiry is a plain comparison.
//
//   PinTable pins;
//   pins.AddLease("l1", now_ms + 60'000, {key_a, key_b});
//   pins.IsPinned(key_a, now_ms);              // true until the lease expires or is released
//   pins.ReleaseLease("l1", now_ms);           // false if unknown or already expired
//   for (const std::string& id : pins.ExpireLeases(now_ms)) { ... delete its record ... }
//
// Thread-safe. Its lock is the innermost of the store's (taken last, held for no I/O).
#ifndef FARM_CACHE_PIN_TABLE_H_
#define FARM_CACHE_PIN_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace farm::cache {

class PinTable {
 public:
  // A reader opened / closed `key`.
  void AddReader(const std::string& key);
  void RemoveReader(const std::string& key);

  // Pins `keys` under lease `id` until `expiry_ms` (exclusive: expired at expiry_ms).
  void AddLease(const std::string& id, int64_t expiry_ms, std::vector<std::string> keys);
  // Unpins what lease `id` pinned. False, changing nothing, if the lease is unknown or expired
  // at `now_ms`.
  bool ReleaseLease(const std::string& id, int64_t now_ms);
  // Forgets every lease expired at `now_ms` and returns their ids (for the caller to delete
  // their records).
  std::vector<std::string> ExpireLeases(int64_t now_ms);

  // True while a reader has `key` open or an unexpired lease names it.
  bool IsPinned(const std::string& key, int64_t now_ms) const;

  struct Summary {
    int64_t leases = 0;                    // leases held (expired ones not yet forgotten too)
    std::vector<std::string> pinned_keys;  // each pinned key once, in no particular order
  };
  Summary Summarize(int64_t now_ms) const;

 private:
  struct Lease {
    int64_t expiry_ms = 0;
    std::vector<std::string> keys;
  };
  bool IsPinnedLocked(const std::string& key, int64_t now_ms) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnpinLeaseLocked(const std::string& id, const Lease& lease)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> readers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Lease> leases_ ABSL_GUARDED_BY(mu_);
  // key -> (lease id -> expiry ms)
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, int64_t>> lease_pins_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::cache

#endif  // FARM_CACHE_PIN_TABLE_H_
