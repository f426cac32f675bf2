// Internal to cache/rocksdb_*.cc: the engine behind RocksDbBlobStore and RocksDbActionCache
// (one RocksDB instance, its budget, LRU and pins). See rocksdb_blob_store.h for the contract
// and rocksdb_format.h for the layout.
//
// Locking (outermost first; never acquire an earlier one while holding a later one):
//   budget_mu_  admission and eviction (one evictor at a time)
//   stripes_[]  per-key: presence check + write of one entry; several are taken only in
//               ascending index order (StripeLocks)
//   pin_mu_     readers' and leases' pins
#ifndef FARM_CACHE_ROCKSDB_STORE_IMPL_H_
#define FARM_CACHE_ROCKSDB_STORE_IMPL_H_

#include <rocksdb/db.h>
#include <rocksdb/options.h>

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/rocksdb_format.h"

namespace farm::cache {

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

class RocksDbBlobStore::Impl {
 public:
  static constexpr int kStripes = 256;
  static constexpr int64_t kMinMaxSize = 32 << 20;
  // Budget charged per entry for its metadata (meta + lru + SST index).
  static constexpr int64_t kEntryOverhead = 128;

  static absl::StatusOr<std::unique_ptr<Impl>> Open(const RocksDbStoreOptions& options);
  ~Impl();

  // CAS (see RocksDbBlobStore).
  absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests);
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest, int64_t offset,
                                                       int64_t limit);
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& digest);
  absl::StatusOr<std::vector<absl::Status>> BatchWrite(absl::Span<const BlobData> blobs);
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BatchRead(
      absl::Span<const Digest> digests);
  absl::StatusOr<BlobStore::Lease> AcquireLease(absl::Span<const Digest> digests,
                                                absl::Duration ttl);
  absl::Status ReleaseLease(const std::string& lease_id);
  absl::StatusOr<CacheStats> Stats();
  absl::StatusOr<GcResult> Gc(const GcOptions& options);
  absl::StatusOr<std::vector<Digest>> Verify();
  absl::StatusOr<int64_t> Remove(absl::Span<const Digest> digests);

  // Action cache entries (RocksDbActionCache). AcGet returns the stored ActionResult bytes
  // (NOT_FOUND if none) and refreshes the entry's recency.
  absl::StatusOr<std::string> AcGet(absl::string_view scope, const Digest& key);
  absl::Status AcPut(absl::string_view scope, const Digest& key, absl::string_view result);
  // Removes the entry if its bytes are still `result` (a dead entry found by Get).
  absl::Status AcDeleteIf(absl::string_view scope, const Digest& key, absl::string_view result);

  int64_t max_size() const { return max_size_.load(); }
  int64_t limit() const { return limit_.load(); }
  const std::string& dir() const { return options_.dir; }

  // Used by readers and writers.
  class Reservation;
  void Unpin(const std::string& key);
  absl::Status CommitSmall(absl::Span<const BlobData> verified);
  absl::Status CommitLarge(const Digest& digest, const std::string& sst_path, int64_t file_size);
  absl::Status WriteLarge(const BlobData& blob);
  rocksdb::DB* db() { return db_; }
  rocksdb::ColumnFamilyHandle* chunks_cf() { return chunks_; }
  const rocksdb::Options& chunk_options() const { return chunk_options_; }
  const std::string& tmp_dir() const { return tmp_dir_; }
  int64_t chunk_size() const { return options_.chunk_size; }
  std::string NewTempPath();
  // Starts write-back of bytes [from, to) of an open file in the background (no waiting), so
  // that the fsync at Commit finds little left to write. `fd` must stay open until the
  // returned generation is done: see WaitWriteback.
  void StartWriteback(std::shared_ptr<int> fd, int64_t from, int64_t to);

 private:
  struct Victim {
    format::LruType type;
    std::string id;
    std::string lru_key;
    int64_t charge = 0;
  };
  struct LeaseState {
    int64_t expiry_ms = 0;
    std::vector<std::string> keys;
  };
  class StripeLocks;

  Impl(const RocksDbStoreOptions& options, int64_t max_size);
  absl::Status OpenDb();
  absl::Status Recover();
  void ApplyTuning(int64_t max_size);

  int64_t NowMs() const;
  static int StripeOfBlob(absl::string_view key) { return static_cast<uint8_t>(key[0]); }
  static int StripeOfAc(absl::string_view ac_key);
  rocksdb::WriteOptions SyncWrite() const;

  // Budget.
  absl::StatusOr<std::unique_ptr<Reservation>> Reserve(int64_t bytes);
  absl::Status MakeRoomLocked(int64_t need) ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  int64_t Used() const;
  void MeasureLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  absl::Status CompactLsmLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  void PickVictimsLocked(int64_t want, std::vector<Victim>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);
  absl::Status EvictLocked(const std::vector<Victim>& victims)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_);

  // Pins.
  bool IsPinnedLocked(const std::string& key, int64_t now_ms) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pin_mu_);
  void ExpireLeasesLocked(int64_t now_ms, std::vector<std::string>* expired_ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(pin_mu_);
  void DropExpiredLeases();

  // Recency.
  void TouchBlobs(const std::vector<std::string>& keys);
  absl::Status DeleteChunkRanges(const std::vector<std::string>& blob_keys);

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

  mutable absl::Mutex pin_mu_ ABSL_ACQUIRED_AFTER(budget_mu_);
  absl::flat_hash_map<std::string, int> readers_ ABSL_GUARDED_BY(pin_mu_);
  absl::flat_hash_map<std::string, LeaseState> leases_ ABSL_GUARDED_BY(pin_mu_);
  // blob key -> (lease id -> expiry ms)
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, int64_t>> lease_pins_
      ABSL_GUARDED_BY(pin_mu_);
};

// A share of the budget held by a write in progress; released when destroyed.
class RocksDbBlobStore::Impl::Reservation {
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

#endif  // FARM_CACHE_ROCKSDB_STORE_IMPL_H_
