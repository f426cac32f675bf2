// FileBlobStore: a durable BlobStore with one file per blob, for the `farm` CLI until the
// RocksDB store (cache/rocksdb_blob_store) is wired into cli/stores.cc. Simple on purpose:
// no eviction, no chunking; correct and crash-safe.
//
// Layout under `root`:
//   blobs/sha256/<first two hex>/<64 hex>   the blob, mode 0444, visible only once verified
//   tmp/<random>                            writes in progress
// A write streams into tmp/ while hashing; Commit checks size and SHA-256, fsyncs, renames
// into place and fsyncs the directory. A crash leaves at worst a stale tmp file (removed by
// Create when older than an hour), never a visible partial or wrong blob.
//
//   ASSIGN_OR_RETURN(auto cas, cache::FileBlobStore::Create(home + "/blobs"));
//   ASSIGN_OR_RETURN(common::Digest d, cas->Put("hello"));
#ifndef FARM_CACHE_FILE_BLOB_STORE_H_
#define FARM_CACHE_FILE_BLOB_STORE_H_

#include <atomic>
#include <memory>
#include <string>

#include "cache/blob_store.h"

namespace cache {

class FileBlobStore : public BlobStore {
 public:
  // Creates `root` (and its subdirectories) if missing.
  static absl::StatusOr<std::unique_ptr<FileBlobStore>> Create(const std::string& root);

  absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests) override;
  absl::Status Read(const Digest& digest, int64_t offset, int64_t limit,
                    const ReadSink& sink) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& digest) override;
  // Nothing is ever evicted from this store: leases only report what is missing.
  absl::StatusOr<Lease> AcquireLease(absl::Span<const Digest> digests, absl::Duration ttl) override;
  absl::Status ReleaseLease(const std::string& lease_id) override;

  // Removes a blob (for `farm` maintenance and tests). OK if absent.
  absl::Status Remove(const Digest& digest);
  // Where a blob lives (whether or not it exists).
  std::string PathOf(const Digest& digest) const;
  const std::string& root() const { return root_; }

 private:
  explicit FileBlobStore(std::string root) : root_(std::move(root)) {}
  friend class FileBlobWriter;

  std::string root_;
  std::atomic<int64_t> next_lease_{0};
};

}  // namespace cache

#endif  // FARM_CACHE_FILE_BLOB_STORE_H_
