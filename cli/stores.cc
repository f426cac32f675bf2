#include "cli/stores.h"

#include <unistd.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace cli {

absl::StatusOr<LocalStores> OpenLocalStores(const std::string& home_in) {
  LocalStores s;
  if (home_in.empty()) {
    ASSIGN_OR_RETURN(s.home, common::FarmHome());
  } else {
    s.home = home_in;
    RETURN_IF_ERROR(common::MakeDirs(s.home, 0700));
  }
  ASSIGN_OR_RETURN(s.lock, common::HomeLock::Acquire(s.home, absl::InfiniteDuration(),
                                                     [](const std::string& message) {
                                                       std::cerr << message << std::endl;
                                                     }));
  cache::RocksDbStoreOptions options;
  options.dir = common::JoinPath(s.home, "cache");
  ASSIGN_OR_RETURN(std::shared_ptr<cache::RocksDbBlobStore> blobs,
                   cache::RocksDbBlobStore::Create(options));
  ASSIGN_OR_RETURN(std::unique_ptr<cache::RocksDbActionCache> ac,
                   cache::RocksDbActionCache::Create(blobs));
  s.rocks = blobs;
  s.blobs = std::move(blobs);
  s.action_cache = std::move(ac);
  ASSIGN_OR_RETURN(std::unique_ptr<image::RocksDbImageStore> images,
                   image::RocksDbImageStore::Create(common::JoinPath(s.home, "images")));
  s.images = std::move(images);
  // Created by the commands that need it; a leftover of a crashed process with the same pid
  // is removed first.
  s.tmp_dir = common::JoinPath(s.home, absl::StrCat("tmp/", getpid()));
  RETURN_IF_ERROR(common::RemoveAll(s.tmp_dir));
  return s;
}

}  // namespace cli
