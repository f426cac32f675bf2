// The stores under $FARM_HOME that `farm` commands open, chosen in this one place:
//
//   $FARM_HOME/lock     common::HomeLock, held for as long as the stores are open
//   $FARM_HOME/cache    the CAS and the action cache: cache::RocksDbBlobStore and
//                       cache::RocksDbActionCache (one RocksDB instance, the size budget and
//                       eviction of farm-cache; `farm cache stats|gc` shows and enforces it)
//   $FARM_HOME/images   the image store (RocksDB): names, tags, image records
//   $FARM_HOME/tmp      scratch space on the same file system (archive extraction)
//
//   ASSIGN_OR_RETURN(cli::LocalStores s, cli::OpenLocalStores());
//   s.images->...; s.blobs->...;
#ifndef FARM_CLI_STORES_H_
#define FARM_CLI_STORES_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"
#include "cache/rocksdb_blob_store.h"
#include "common/farm_home.h"
#include "scheduler/image/store.h"

namespace farm::cli {

struct LocalStores {
  std::string home;
  std::unique_ptr<common::HomeLock> lock;  // released last (declared first)
  cache::BlobStore::Ptr blobs;
  std::shared_ptr<cache::RocksDbBlobStore> rocks;  // the same store: budget, stats, gc
  cache::ActionCache::Ptr action_cache;
  scheduler::image::ImageStore::Ptr images;
  // Scratch directory for this process ($FARM_HOME/tmp/<pid>), not created: a command that
  // uses it creates it and removes it when done.
  std::string tmp_dir;
};

// Opens the stores of `home` ("" = common::FarmHome()), waiting for the home lock if another
// farm process holds it (saying so once on stderr).
// `on_locked`, when given, runs once the home lock is held and before the databases open
// (farm build starts hashing its contexts there).
absl::StatusOr<LocalStores> OpenLocalStores(const std::string& home = "",
                                            const std::function<void()>& on_locked = nullptr);

// The stat cache file of the build context `dir` under `home` ($FARM_HOME/contexts/<hash of the
// absolute path>): shared by farm build, submit and bake. Creates the contexts directory; ""
// (no stat cache: every file is hashed) when it cannot.
std::string ContextStatCachePath(const std::string& home, const std::string& dir);

}  // namespace farm::cli

#endif  // FARM_CLI_STORES_H_
