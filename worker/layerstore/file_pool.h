// FilePool: the regular files that COPY wrote from the build context into layer trees, kept by
// what they are, so that the next version of the same COPY links the unchanged files instead of
// creating and writing them again.
//
// A one-file edit reruns `COPY src/ /app/src/`: without the pool every one of its files is a new
// inode (on ext4 the inode allocator's scan of recently deleted inodes dominates) and its bytes
// are read from the CAS and written again. With the pool the layer's tree hard-links the inodes
// of the previous version (no data copied, no inode allocated) and only the edited file is new.
//
// The key is (path in the image, content digest, mode, owner, mtime): only a file with exactly
// the metadata the COPY would give it is linked, so nothing is ever changed on a pooled inode,
// and two different paths never share an inode (inside a RUN step no two visible names are
// hard links of each other unless the build made them so; a pooled file shows a link count
// above 1). Layer trees are never written in place (RUN writes through overlayfs copy-up, a COPY
// removes a name before writing it), which is what makes sharing inodes between layers safe.
// The archive of a layer does not change: within one tree each pooled inode has one name, so
// it is archived as a regular file, exactly as if it had been written.
//
// The pool is `<dir>/<2 hex>/<62 hex>` (the SHA-256 of the key), one more name of each inode. A
// pooled file no layer holds any more (link count 1) is removed by Sweep(), which the layer
// store runs after it evicted layers. Everything here is best effort: a file that cannot be
// linked is written as before.
//
//   worker::layerstore::FilePool pool(store_dir + "/files");
//   if (!pool.LinkInto(key, target)) { write target; pool.Add(key, target); }
#ifndef FARM_WORKER_LAYERSTORE_FILE_POOL_H_
#define FARM_WORKER_LAYERSTORE_FILE_POOL_H_

#include <cstdint>
#include <string>

#include "common/digest.h"

namespace farm::worker::layerstore {

class FilePool {
 public:
  struct Key {
    std::string path;       // clean relative path in the image ("app/src/main.c")
    common::Digest digest;  // content (size_bytes is the file's size)
    uint32_t mode = 0;      // permission bits (07777)
    uint32_t uid = 0;
    uint32_t gid = 0;
    int64_t mtime = 0;
  };

  // `dir` must be on the same file system as the layer trees (hard links).
  explicit FilePool(std::string dir) : dir_(std::move(dir)) {}

  // Links the pooled file of `key` at `target` (which must not exist) if the pool has one whose
  // size and metadata still match the key. False otherwise (the caller writes the file).
  bool LinkInto(const Key& key, const std::string& target) const;

  // Adds `file`, just written by the caller with exactly `key`'s content and metadata, to the
  // pool (nothing if the key is pooled already or the link fails).
  void Add(const Key& key, const std::string& file) const;

  struct SweepStats {
    int64_t removed = 0;
    int64_t removed_bytes = 0;
    int64_t kept = 0;
  };
  // Removes the pooled files that only the pool holds (no layer tree links them).
  SweepStats Sweep() const;

  const std::string& dir() const { return dir_; }
  // Where `key` is pooled (for tests).
  std::string PathOf(const Key& key) const;

 private:
  const std::string dir_;
};

}  // namespace farm::worker::layerstore

#endif  // FARM_WORKER_LAYERSTORE_FILE_POOL_H_
