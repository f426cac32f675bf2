// FileActionCache: a durable ActionCache with one file per (scope, key), for the `farm` CLI
// until the RocksDB action cache is wired into cli/stores.cc. Entries are REAPI ActionResults
// kept byte for byte; the completeness rule of cache/action_cache.h holds: Update refuses a
// result naming a blob the CAS lacks, Get treats an entry whose blobs are gone as a miss.
//
// Layout under `root`: <scope with '/' as '%2F'>/<key hash>-<key size>, written atomically
// (temp file + fsync + rename).
//
//   ASSIGN_OR_RETURN(auto ac, cache::FileActionCache::Create(home + "/ac", cas));
//   RETURN_IF_ERROR(ac->Update("main", key, serialized_result));
#ifndef FARM_CACHE_FILE_ACTION_CACHE_H_
#define FARM_CACHE_FILE_ACTION_CACHE_H_

#include <memory>
#include <string>

#include "cache/action_cache.h"
#include "cache/blob_store.h"

namespace cache {

class FileActionCache : public ActionCache {
 public:
  static absl::StatusOr<std::unique_ptr<FileActionCache>> Create(const std::string& root,
                                                                 BlobStore::Ptr cas);
  absl::StatusOr<std::string> Get(absl::Span<const std::string> scopes,
                                  const common::Digest& key) override;
  absl::Status Update(const std::string& scope, const common::Digest& key,
                      absl::string_view action_result) override;

 private:
  FileActionCache(std::string root, BlobStore::Ptr cas)
      : root_(std::move(root)), cas_(std::move(cas)) {}
  absl::StatusOr<std::string> PathOf(const std::string& scope, const common::Digest& key) const;

  std::string root_;
  BlobStore::Ptr cas_;
};

}  // namespace cache

#endif  // FARM_CACHE_FILE_ACTION_CACHE_H_
