// RocksDbStoreOptions: how a RocksDB cache directory is opened (RocksDbBlobStore::Create; see
// cache/rocksdb_blob_store.h for what each setting means for the store as a whole).
#ifndef FARM_CACHE_ROCKSDB_STORE_OPTIONS_H_
#define FARM_CACHE_ROCKSDB_STORE_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/time/time.h"

namespace farm::cache {

struct RocksDbStoreOptions {
  // The cache directory; created (with its parents) if missing.
  std::string dir;
  // The disk budget in bytes. 0: the budget this directory was last opened with, or, for a
  // new directory, 10% of the file system's size (at least 1 GiB). A new non-zero value is
  // persisted and enforced at once (opening with a smaller budget evicts).
  int64_t max_size = 0;
  // Blobs up to this size are stored as one value; larger ones as a chunked file.
  int64_t inline_max = 1 << 20;
  // Chunk size of large blobs (the unit of a read from storage).
  int64_t chunk_size = 1 << 20;
  // Recency is recorded at most once per this interval per entry (a write per touch).
  absl::Duration touch_granularity = absl::Minutes(1);
  // Longer lease TTLs are shortened to this.
  absl::Duration max_lease_ttl = absl::Hours(24);
  // fsync every commit (survives power loss). false: survives process crashes only.
  bool sync = true;
  // The clock for recency and lease expiry (tests inject one). Default: absl::Now.
  std::function<absl::Time()> clock;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_ROCKSDB_STORE_OPTIONS_H_
