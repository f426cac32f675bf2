// In-memory BlobStore and ActionCache for unit tests of components that use the interfaces
// (images, worker, scheduler). Test-only: everything is held in memory and nothing is durable;
// production code uses RocksDbBlobStore / the farm-cache client.
//
//   auto store = std::make_shared<cache::testing::MemoryBlobStore>();
//   ASSERT_OK(store->Put("hello"));
#ifndef FARM_CACHE_TESTING_MEMORY_STORES_H_
#define FARM_CACHE_TESTING_MEMORY_STORES_H_

#include <map>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"

namespace farm::cache::testing {

class MemoryBlobStore : public BlobStore {
 public:
  absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests) override;
  absl::Status Read(const Digest& digest, int64_t offset, int64_t limit,
                    const ReadSink& sink) override;
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest, int64_t offset,
                                                       int64_t limit) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& digest) override;
  absl::StatusOr<Lease> AcquireLease(absl::Span<const Digest> digests, absl::Duration ttl) override;
  absl::Status ReleaseLease(const std::string& lease_id) override;

  // Test hooks.
  void Remove(const Digest& digest);
  size_t size() const;
  int writes() const;  // committed writes of new blobs

 private:
  friend class MemoryBlobWriter;
  void Insert(const Digest& digest, std::string data);

  mutable absl::Mutex mu_;
  std::map<Digest, std::string> blobs_ ABSL_GUARDED_BY(mu_);
  int writes_ ABSL_GUARDED_BY(mu_) = 0;
  int next_lease_ ABSL_GUARDED_BY(mu_) = 0;
};

class MemoryActionCache : public ActionCache {
 public:
  absl::StatusOr<std::string> Get(absl::Span<const std::string> scopes,
                                  const common::Digest& key) override;
  absl::Status Update(const std::string& scope, const common::Digest& key,
                      absl::string_view action_result) override;

 private:
  absl::Mutex mu_;
  std::map<std::pair<std::string, common::Digest>, std::string> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::cache::testing

#endif  // FARM_CACHE_TESTING_MEMORY_STORES_H_
