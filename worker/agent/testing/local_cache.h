// LocalCache: a real farm-cache (RocksDB in a directory, served on a loopback port) for
// farm-worker's tests, holding a busybox base layer.
//
//   ASSERT_OK_AND_ASSIGN(auto cache, LocalCache::Start(tmp + "/cache"));
//   options.cache = cache->address();
//   request.add_parents()->CopyFrom(cache->base());
#ifndef FARM_WORKER_AGENT_TESTING_LOCAL_CACHE_H_
#define FARM_WORKER_AGENT_TESTING_LOCAL_CACHE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/server/cache_server.h"
#include "farm/v1/step.pb.h"

namespace farm::worker::agent::testing {

class LocalCache {
 public:
  // Creates the store under `dir` (and a busybox rootfs beside it), stores the base layer,
  // and serves on 127.0.0.1:0.
  static absl::StatusOr<std::unique_ptr<LocalCache>> Start(const std::string& dir);

  const std::string& address() const { return server_->address(); }
  const std::shared_ptr<cache::RocksDbBlobStore>& cas() const { return cas_; }
  const farm::v1::Layer& base() const { return base_; }

 private:
  LocalCache() = default;
  std::shared_ptr<cache::RocksDbBlobStore> cas_;
  std::unique_ptr<cache::server::CacheServer> server_;
  farm::v1::Layer base_;
};

}  // namespace farm::worker::agent::testing

#endif  // FARM_WORKER_AGENT_TESTING_LOCAL_CACHE_H_
