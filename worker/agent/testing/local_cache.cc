#include "worker/agent/testing/local_cache.h"

#include "cache/rocksdb_action_cache.h"
#include "common/status_macros.h"
#include "worker/testing/busybox.h"
#include "worker/testing/layers.h"

namespace farm::worker::agent::testing {

absl::StatusOr<std::unique_ptr<LocalCache>> LocalCache::Start(const std::string& dir) {
  std::unique_ptr<LocalCache> c(new LocalCache());
  cache::RocksDbStoreOptions so;
  so.dir = dir + "/db";
  so.max_size = 256 << 20;
  so.sync = false;
  ASSIGN_OR_RETURN(std::unique_ptr<cache::RocksDbBlobStore> store,
                   cache::RocksDbBlobStore::Create(so));
  c->cas_ = std::move(store);
  ASSIGN_OR_RETURN(auto ac, cache::RocksDbActionCache::Create(c->cas_));
  cache::server::CacheServerOptions o;
  o.cas = c->cas_;
  o.action_cache = std::move(ac);
  o.admin = c->cas_;
  ASSIGN_OR_RETURN(c->server_, cache::server::CacheServer::Start(std::move(o)));
  std::string root = dir + "/rootfs";
  RETURN_IF_ERROR(farm::worker::testing::MakeBusyboxRootfs(root));
  ASSIGN_OR_RETURN(c->base_, farm::worker::testing::MakeLayer(c->cas_.get(), root));
  return c;
}

}  // namespace farm::worker::agent::testing
