// RocksDbStore: the one RocksDB instance of a cache directory, shared by RocksDbBlobStore (the
// CAS rows: "meta", "small", "chunks") and RocksDbActionCache (the "ac" rows), with what both
// kinds of entry share beside their rows: the disk budget and its LRU eviction (one order for
// blobs and action results), the pins that keep blobs from eviction, the counters, and the
// per-key locks. Internal to cache/: programs use RocksDbBlobStore and RocksDbActionCache
// (cache/rocksdb_blob_store.h describes the behaviour, cache/rocksdb_format.h the layout).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> store, RocksDbStore::Open(options));
//   ASSIGN_OR_RETURN(auto reservation, store->Reserve(2 * (size + RocksDbStore::kEntryOverhead)));
//   absl::MutexLock stripe(store->BlobStripe(key));
//   ... read the rows, write a batch with store->SyncWrite() ...
//   store->NoteLsmWrite(charge);
//   store->MirrorCounters(delta);
//
// Files: rocksdb_store.cc (opening, recovery, tuning, recency, leases' records),
// rocksdb_budget.cc (admission, eviction, compaction, Remove, Stats, Gc).
//
// Locking (outermost first; never acquire an earlier one while holding a later one):
//   budget_mu_  admission and eviction (one evictor at a time)
//   stripes_[]  per key: presence check + write of one entry; several are taken only in
//               ascending index order (StripeLocks)
//   pins()      readers' and leases' pins (PinTable's own lock)
// Everything public is thread-safe.
#ifndef FARM_CACHE_ROCKSDB_STORE_H_
#define FARM_CACHE_ROCKSDB_STORE_H_

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cache/admin.h"
#include "cache/pin_table.h"
#include "cache/rocksdb_format.h"
#include "cache/rocksdb_store_options.h"
#include "common/digest.h"

namespace farm::cache {

// Debian's Abseil has its own string_view (not std::string_view): convert explicitly.
inline rocksdb::Slice ToSlice(absl::string_view v) { return rocksdb::Slice(v.data(), v.size()); }
inline absl::string_view ToView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

// INVALID_ARGUMENT unless `d` has 64 lowercase hex characters and a size >= 0.
absl::Status ValidateDigest(const common::Digest& d);

// LSM sizes derived from max_size so that the headroom stays a small share of the budget.
struct StoreTuning {
  int64_t small_write_buffer = 0;
  int64_t other_write_buffer = 0;
  int64_t max_wal = 0;
  int64_t target_file_size = 0;
  int64_t level_base = 0;
  int64_t max_compaction_bytes = 0;
  int64_t headroom = 0;   // max_size - limit
  int64_t low_water = 0;  // eviction frees this much below the limit
};
StoreTuning TuneFor(int64_t max_size);

class RocksDbStore {
 public:
  static constexpr int kStripes = 256;
  static constexpr int64_t kMinMaxSize = 32 << 20;
  // Budget charged per entry for its metadata (meta + lru + SST index).
  static constexpr int64_t kEntryOverhead = 128;

  // Validates `options`, creates DIR/{db,chunks,tmp}, opens (or creates) the database under
  // RocksDB's lock (FAILED_PRECONDITION naming the directory if another process has it, or if
  // it has another format), persists max_size, empties tmp/, deletes the chunk files a crash
  // left without metadata, reloads the leases and enforces the budget.
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(const RocksDbStoreOptions& options);
  ~RocksDbStore();
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  const RocksDbStoreOptions& options() const { return options_; }
  const std::string& dir() const { return options_.dir; }
  int64_t max_size() const { return max_size_.load(); }
  // max_size minus the headroom: what admission keeps `used` under.
  int64_t limit() const { return limit_.load(); }

  // The database and its column families (cache/rocksdb_format.h). Owned by the store.
  rocksdb::DB* db() const { return db_; }
  rocksdb::ColumnFamilyHandle* default_cf() const { return default_; }
  rocksdb::ColumnFamilyHandle* meta_cf() const { return meta_; }
  rocksdb::ColumnFamilyHandle* small_cf() const { return small_; }
  rocksdb::ColumnFamilyHandle* chunks_cf() const { return chunks_; }
  rocksdb::ColumnFamilyHandle* lru_cf() const { return lru_; }
  rocksdb::ColumnFamilyHandle* ac_cf() const { return ac_; }
  // Options for an SstFileWriter whose file is ingested into chunks_cf().
  const rocksdb::Options& chunk_options() const { return chunk_options_; }

  // For writes that must survive a crash once acknowledged (fsync unless options.sync is off).
  rocksdb::WriteOptions SyncWrite() const;
  // The store's clock, in Unix milliseconds.
  int64_t NowMs() const;
  // True if an entry last used at `atime_ms` is due for a recency update at `now_ms`.
  bool TouchDue(int64_t atime_ms, int64_t now_ms) const;

  // Per-key locks: the stripe of a blob key or of an action-cache key.
  static int StripeOfBlob(absl::string_view blob_key) { return static_cast<uint8_t>(blob_key[0]); }
  static int StripeOfAc(absl::string_view ac_key);
  absl::Mutex* stripe(int index) { return &stripes_[index]; }
  class StripeLocks;  // several stripes at once

  // The budget. Reserve admits a write of `bytes` (evicting unpinned entries, least recently
  // used first, if it does not fit; RESOURCE_EXHAUSTED if it cannot fit); the reservation is
  // held until the write is committed and its charge is accounted below.
  class Reservation;
  absl::StatusOr<std::unique_ptr<Reservation>> Reserve(int64_t bytes);
  // Accounting after a successful write:
  //   NoteLsmWrite    rows of `bytes` went through the WAL (charged twice: WAL now, SST later)
  //   NoteLsmDropped  rows of `bytes` were deleted (reclaimed only by compaction)
  //   NoteLargeAdded  a chunk file of `bytes` was ingested
  //   MirrorCounters  a delta merged into "c/global" (format::Counter indexes)
  void NoteLsmWrite(int64_t bytes) { lsm_since_measure_ += 2 * bytes; }
  void NoteLsmDropped(int64_t bytes) { lsm_evicted_since_compact_ += bytes; }
  void NoteLargeAdded(int64_t bytes) { large_bytes_ += bytes; }
  void MirrorCounters(const std::vector<int64_t>& delta);

  // Pins: what eviction must skip.
  PinTable& pins() { return pins_; }
  // Forgets expired leases and deletes their records (best effort).
  void DropExpiredLeases();

  // Refreshes the recency of these blob keys (an unsynced, advisory write; missing keys and
  // failures are ignored). Takes their stripes.
  void TouchBlobs(const std::vector<std::string>& keys);

  // Large blobs: a fresh path under DIR/tmp for an SST being written; background write-back
  // of bytes [from, to) of an open file (so the fsync at commit finds little left to write;
  // `fd` stays open while a job holds it); deleting the chunk files of these blob keys.
  std::string NewTempPath();
  void StartWriteback(std::shared_ptr<int> fd, int64_t from, int64_t to);
  absl::Status DeleteChunkRanges(const std::vector<std::string>& blob_keys);

  // Administration (RocksDbBlobStore's Remove and CacheAdmin).
  absl::StatusOr<int64_t> Remove(absl::Span<const common::Digest> digests);
  absl::StatusOr<CacheStats> Stats();
  absl::StatusOr<GcResult> Gc(const GcOptions& options);

 private:
  struct Victim {
    format::LruType type;
    std::string id;
    std::string lru_key;
    int64_t charge = 0;
  };

  RocksDbStore(const RocksDbStoreOptions& options, int64_t max_size);
  absl::Status OpenDb();
  absl::Status Recover();
  void ApplyTuning(int64_t max_size);

  // The budget (rocksdb_budget.cc).
  absl::Status MakeRoomLocked(int64_t need) ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  int64_t Used() const;
  void MeasureLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  absl::Status CompactLsmLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  void PickVictimsLocked(int64_t want, std::vector<Victim>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  absl::Status EvictLocked(const std::vector<Victim>& victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);

  RocksDbStoreOptions options_;
  std::string db_dir_, chunks_dir_, tmp_dir_;
  std::atomic<int64_t> max_size_{0};
  std::atomic<int64_t> limit_{0};
  std::atomic<int64_t> low_water_{0};

  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* default_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* small_ = nullptr;
  rocksdb::ColumnFamilyHandle* chunks_ = nullptr;
  rocksdb::ColumnFamilyHandle* lru_ = nullptr;
  rocksdb::ColumnFamilyHandle* ac_ = nullptr;
  rocksdb::Options chunk_options_;  // for SstFileWriter

  absl::Mutex stripes_[kStripes];

  absl::Mutex budget_mu_;
  std::string lru_cursor_ ABSL_GUARDED_BY(budget_mu_);
  absl::Time last_measure_ ABSL_GUARDED_BY(budget_mu_) = absl::InfinitePast();

  // Budget accounting (bytes).
  std::atomic<int64_t> lsm_measured_{0};       // DIR/db on disk + unflushed memtables
  std::atomic<int64_t> lsm_since_measure_{0};  // 2 x bytes written through the WAL since
  std::atomic<int64_t> lsm_evicted_since_compact_{0};
  std::atomic<int64_t> large_bytes_{0};  // chunk files of live large blobs
  std::atomic<int64_t> reserved_{0};

  // Counters mirrored from "c/global".
  std::atomic<int64_t> blob_count_{0};
  std::atomic<int64_t> blob_bytes_{0};
  std::atomic<int64_t> ac_count_{0};
  std::atomic<int64_t> evicted_blobs_{0};
  std::atomic<int64_t> evicted_bytes_{0};
  std::atomic<int64_t> evicted_ac_{0};

  std::atomic<uint64_t> temp_seq_{0};

  // The write-back thread (StartWriteback).
  struct WritebackJob {
    std::shared_ptr<int> fd;
    int64_t from = 0, to = 0;
  };
  void WritebackLoop();
  absl::Mutex writeback_mu_;
  std::deque<WritebackJob> writeback_jobs_ ABSL_GUARDED_BY(writeback_mu_);
  bool writeback_stop_ ABSL_GUARDED_BY(writeback_mu_) = false;
  std::thread writeback_thread_;

  PinTable pins_;
};

// Locks a set of stripes in ascending order (deadlock-free), unlocks on destruction.
class RocksDbStore::StripeLocks {
 public:
  StripeLocks(RocksDbStore* store, std::vector<int> stripes);
  ~StripeLocks();
  StripeLocks(const StripeLocks&) = delete;
  StripeLocks& operator=(const StripeLocks&) = delete;

 private:
  RocksDbStore* store_;
  std::vector<int> stripes_;
};

// A share of the budget held by a write in progress; released when destroyed.
class RocksDbStore::Reservation {
 public:
  Reservation(std::atomic<int64_t>* reserved, int64_t bytes) : reserved_(reserved), bytes_(bytes) {}
  ~Reservation() { reserved_->fetch_sub(bytes_); }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;

 private:
  std::atomic<int64_t>* reserved_;
  int64_t bytes_;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_ROCKSDB_STORE_H_
