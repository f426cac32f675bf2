// RocksDbActionCache: the action cache stored in the same RocksDB instance as a
// RocksDbBlobStore ("ac" column family), sharing its budget and LRU (RocksDbStore, internal:
// cache/rocksdb_store.h).
//
//   ASSIGN_OR_RETURN(std::shared_ptr<cache::RocksDbBlobStore> cas, RocksDbBlobStore::Create(o));
//   ASSIGN_OR_RETURN(std::shared_ptr<cache::RocksDbActionCache> ac,
//                    cache::RocksDbActionCache::Create(cas));
//   RETURN_IF_ERROR(ac->Update("pr/123", action_digest, result.SerializeAsString()));
//   absl::StatusOr<std::string> hit = ac->Get({"pr/123", "main"}, action_digest);
//
// Completeness. Update and Get parse the ActionResult and check that every blob it names is
// in the CAS: output_files' digests, stdout_digest and stderr_digest, each output directory's
// Tree blob (and root_directory_digest when set) and every file inside each Tree. Update
// refuses an incomplete result (FAILED_PRECONDITION naming the first missing blob). Get treats
// an entry whose blobs were evicted since as a miss: it tries the next scope, and removes the
// dead entry. A hit refreshes the recency of the entry and of every blob it names.
//
// Values are kept byte for byte: Get returns exactly the bytes given to Update.
// Scopes are any string without NUL bytes (REAPI instance names map 1:1 to scopes).
// Thread-safe.
#ifndef FARM_CACHE_ROCKSDB_ACTION_CACHE_H_
#define FARM_CACHE_ROCKSDB_ACTION_CACHE_H_

#include <memory>
#include <string>

#include "cache/action_cache.h"
#include "cache/rocksdb_blob_store.h"

namespace farm::cache {

class RocksDbActionCache final : public ActionCache {
 public:
  struct Options {
    // Tree blobs larger than this are not read for the completeness check (the entry is then
    // treated as incomplete).
    int64_t max_tree_size = 256 << 20;
  };
  // `store` is the CAS this cache checks results against; its database holds the entries too.
  // The action cache keeps both alive.
  static absl::StatusOr<std::unique_ptr<RocksDbActionCache>> Create(
      std::shared_ptr<RocksDbBlobStore> store, const Options& options);
  static absl::StatusOr<std::unique_ptr<RocksDbActionCache>> Create(
      std::shared_ptr<RocksDbBlobStore> store) {
    return Create(std::move(store), Options());
  }

  absl::StatusOr<std::string> Get(absl::Span<const std::string> scopes,
                                  const common::Digest& key) override;
  absl::Status Update(const std::string& scope, const common::Digest& key,
                      absl::string_view action_result) override;

 private:
  RocksDbActionCache(std::shared_ptr<RocksDbBlobStore> cas, std::shared_ptr<RocksDbStore> rocks,
                     const Options& options)
      : cas_(std::move(cas)), rocks_(std::move(rocks)), options_(options) {}

  // The rows ("ac" column family, cache/rocksdb_format.h). ReadEntry returns the stored
  // ActionResult bytes (NOT_FOUND if none) and refreshes the entry's recency; WriteEntry
  // replaces it; DeleteEntryIf removes it if its bytes are still `result` (a dead entry found
  // by Get).
  absl::StatusOr<std::string> ReadEntry(absl::string_view scope, const common::Digest& key);
  absl::Status WriteEntry(absl::string_view scope, const common::Digest& key,
                          absl::string_view result);
  absl::Status DeleteEntryIf(absl::string_view scope, const common::Digest& key,
                             absl::string_view result);

  std::shared_ptr<RocksDbBlobStore> cas_;
  std::shared_ptr<RocksDbStore> rocks_;  // the database, shared with cas_
  Options options_;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_ROCKSDB_ACTION_CACHE_H_
