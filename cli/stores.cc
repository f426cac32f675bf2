#include "cli/stores.h"

#include <unistd.h>

#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace farm::cli {

absl::StatusOr<LocalStores> OpenLocalStores(const std::string& home_in,
                                            const std::function<void()>& on_locked) {
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
  if (on_locked) on_locked();
  // The two databases open independently: open them at the same time (RocksDB's open is
  // mostly waiting on the file system).
  absl::StatusOr<std::unique_ptr<scheduler::image::RocksDbImageStore>> images;
  std::thread images_thread([&] {
    images = scheduler::image::RocksDbImageStore::Create(common::JoinPath(s.home, "images"));
  });
  cache::RocksDbStoreOptions options;
  options.dir = common::JoinPath(s.home, "cache");
  // The local cache does not fsync each commit (farm-cache does): it still survives kill -9
  // (RocksDB's WAL is in the page cache) and large blobs' files are synced when ingested, so
  // after a power loss it recovers to a consistent prefix: recent entries may be gone, no
  // partial blob is ever visible. A commit fsync waits behind every dirty page of every other
  // process on the file system, which made cold builds on a busy machine 2.5x slower.
  options.sync = false;
  absl::StatusOr<std::unique_ptr<cache::RocksDbBlobStore>> blobs =
      cache::RocksDbBlobStore::Create(options);
  images_thread.join();
  if (!blobs.ok()) return blobs.status();
  if (!images.ok()) return images.status();
  std::shared_ptr<cache::RocksDbBlobStore> shared_blobs = *std::move(blobs);
  ASSIGN_OR_RETURN(std::unique_ptr<cache::RocksDbActionCache> ac,
                   cache::RocksDbActionCache::Create(shared_blobs));
  s.rocks = shared_blobs;
  s.blobs = std::move(shared_blobs);
  s.action_cache = std::move(ac);
  s.images = *std::move(images);
  // Created by the commands that need it; a leftover of a crashed process with the same pid
  // is removed first.
  s.tmp_dir = common::JoinPath(s.home, absl::StrCat("tmp/", getpid()));
  RETURN_IF_ERROR(common::RemoveAll(s.tmp_dir));
  return s;
}

std::string ContextStatCachePath(const std::string& home, const std::string& dir) {
  std::string abs = dir;
  if (abs.empty() || abs[0] != '/') {
    char buf[4096];
    if (getcwd(buf, sizeof(buf)) != nullptr) abs = common::JoinPath(buf, abs);
  }
  abs = common::CleanPath(abs);
  std::string contexts = common::JoinPath(home, "contexts");
  if (!common::MakeDirs(contexts, 0700).ok()) return "";
  return common::JoinPath(contexts, common::Sha256Hex(abs).substr(0, 32));
}

}  // namespace farm::cli
