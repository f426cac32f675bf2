// RocksDbBlobStore: the local, durable CAS (and, through RocksDbActionCache, the action
// cache) of Farm: what `farm build` opens in-process at $FARM_HOME/cache and what farm-cache
// serves. One RocksDB instance holds everything (layout in cache/rocksdb_format.h).
//
//   cache::RocksDbStoreOptions options;
//   options.dir = "/var/lib/farm-cache";
//   options.max_size = 100LL << 30;   // hard ceiling on disk use
//   ASSIGN_OR_RETURN(std::shared_ptr<cache::RocksDbBlobStore> cas,
//                    cache::RocksDbBlobStore::Create(options));
//   ASSIGN_OR_RETURN(std::shared_ptr<cache::RocksDbActionCache> ac,
//                    cache::RocksDbActionCache::Create(cas));
//
// Storage. A blob of at most `inline_max` bytes is one value written through the WAL (a batch
// of small blobs is one synced write). A larger blob is streamed, in `chunk_size` entries,
// into its own SST file under DIR/tmp while its SHA-256 is computed; on Commit the file is
// synced and ingested into the "chunks" column family (no WAL, no memtable, no compaction:
// written once), and the metadata that makes it visible is written last. No blob is ever held
// whole in memory (small ones are at most `inline_max`), and a read can start at any offset
// (it seeks to the chunk holding it).
//
// Visibility and crash safety. A blob is visible only once its metadata is written, which
// happens after its bytes were verified (size and SHA-256) and made durable. Commits are
// synced (WAL fsync, or SST fsync + MANIFEST fsync for large blobs) unless `sync` is false,
// so an acknowledged write survives kill -9 and power loss; an unacknowledged one leaves no
// metadata, and any chunk file it left behind is recorded by a "pending" marker and deleted at
// the next open. Opening after a crash replays only the WAL (bounded) and the pending markers:
// no scan of the data.
//
// The size budget (`max_size`), a hard ceiling on the bytes the directory occupies on disk:
//   used = measured LSM bytes  (st_blocks of every file in DIR/db: SSTs, WAL, MANIFEST, LOG;
//                               re-measured at least every second while writing, and at once
//                               whenever a write would not fit)
//        + 2 x bytes written through the WAL since that measurement (WAL now, SST after flush)
//        + chunk-file bytes of large blobs (exact, rounded up to 4 KiB)
//        + reservations of writes in progress (their declared size, taken at BeginWrite)
//   A write is admitted only if used + its size <= max_size - headroom. If it is not, the
//   least recently used entries (blobs and action-cache entries alike) that are not pinned are
//   evicted, down to a low-water mark (so eviction and compaction come in bursts). A large
//   blob's file is deleted at once (DeleteFilesInRanges, it is the only file of its range). A
//   small entry's bytes are only reclaimed by compaction, so when small entries were evicted
//   and the write still does not fit, the LSM column families are compacted (deleted ranges
//   dropped) and re-measured before evicting more. If nothing unpinned is left, BeginWrite
//   returns RESOURCE_EXHAUSTED. `headroom` (see headroom()) covers what can land on disk
//   between measurements: a compaction's outputs before its inputs are deleted
//   (max_compaction_bytes), memtable flushes, the WAL's preallocation and the info LOG; the
//   LSM is tuned from max_size so that these stay inside it. max_size must be at least 32 MiB.
//
// Layers. While a blob is written, its first bytes say whether it is gzip or zstd; if so it is
// decompressed and hashed as it streams (on a thread of its own for large blobs), and its
// compression and diff_id are committed in the blob's metadata, so GetLayerInfo never reads a
// blob and eviction drops the answer with the blob.
//
// Recency and pins. Reads, FindMissing hits, leases and action-cache hits refresh an entry's
// recency (recorded at most once per `touch_granularity`). A blob is pinned, and never
// evicted, while a lease on it is unexpired (leases survive restarts) or a reader has it open.
//
// Everything is thread-safe. Another process cannot open the same directory at the same time
// (FAILED_PRECONDITION naming the directory).
//
// Implementation: rocksdb_blob_store.cc (presence, leases), rocksdb_blob_reads.cc,
// rocksdb_blob_writes.cc; the database, budget, eviction and pins that the blob store and the
// action cache share are RocksDbStore's (rocksdb_store.h, internal).
#ifndef FARM_CACHE_ROCKSDB_BLOB_STORE_H_
#define FARM_CACHE_ROCKSDB_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache/admin.h"
#include "cache/blob_store.h"
#include "cache/rocksdb_store_options.h"

namespace farm::cache {

class RocksDbStore;  // internal (cache/rocksdb_store.h): the database both stores share

class RocksDbBlobStore final : public BlobStore, public CacheAdmin {
 public:
  static absl::StatusOr<std::unique_ptr<RocksDbBlobStore>> Create(
      const RocksDbStoreOptions& options);
  ~RocksDbBlobStore() override;

  // BlobStore. Digests with a malformed hash or a negative size are INVALID_ARGUMENT.
  absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests) override;
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest, int64_t offset,
                                                       int64_t limit) override;
  // Reserves the blob's size against the budget (evicting if needed; RESOURCE_EXHAUSTED if
  // everything left is pinned or the blob is larger than the budget).
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& digest) override;
  // Verifies every blob and commits all small ones in one synced write.
  absl::StatusOr<std::vector<absl::Status>> BatchWrite(absl::Span<const BlobData> blobs) override;
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BatchRead(
      absl::Span<const Digest> digests) override;
  // What each blob is as a layer, as computed while it was written (no read); a blob stored
  // before this was kept (an older directory) is read and hashed once, and the answer kept.
  absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> GetLayerInfo(
      absl::Span<const Digest> digests) override;
  // Pins the present digests until now + ttl (at most max_lease_ttl), refreshing their
  // recency. Durable: leases survive a restart. ttl must be positive.
  absl::StatusOr<Lease> AcquireLease(absl::Span<const Digest> digests, absl::Duration ttl) override;
  // NOT_FOUND if the lease is unknown or already expired.
  absl::Status ReleaseLease(const std::string& lease_id) override;

  // CacheAdmin.
  absl::StatusOr<CacheStats> Stats() override;
  absl::StatusOr<GcResult> Gc(const GcOptions& options) override;

  // Removes the given blobs now, whatever their recency (e.g. a bad artifact); pinned ones are
  // kept. Returns how many were removed.
  absl::StatusOr<int64_t> Remove(absl::Span<const Digest> digests);

  // Reads back and hashes every stored blob (an fsck; slow: it reads everything). Returns the
  // digests that are unreadable or do not match their bytes.
  absl::StatusOr<std::vector<Digest>> Verify();

  int64_t max_size() const;
  // max_size minus the headroom: what admission keeps `used` under.
  int64_t limit() const;
  const std::string& dir() const;

 private:
  // The action cache lives in the same database (its rows, this store's budget and LRU):
  // RocksDbActionCache::Create takes the database from the blob store it is given.
  friend class RocksDbActionCache;

  explicit RocksDbBlobStore(std::shared_ptr<RocksDbStore> store);
  std::shared_ptr<RocksDbStore> store_;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_ROCKSDB_BLOB_STORE_H_
