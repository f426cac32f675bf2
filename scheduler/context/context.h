// The build context: a directory on the client, filtered by .dockerignore, hashed by content.
//
// A Snapshot is what every later stage works from:
//   - tree(): the files as a worker::copy::SourceTree whose regular files carry their SHA-256, so
//   the
//     planner keys COPY steps on content (never on mtimes or the host path);
//   - root(): the same tree as a REAPI v2 Directory Merkle tree (Directory protos and file
//     blobs), which `farm submit` uploads (only the missing blobs) and a remote worker reads.
// Modes are kept as they are on disk (all permission bits, setuid/setgid/sticky included: what
// `docker build` copies), unless normalize_permissions makes them 0755 for executables and
// directories and 0644 otherwise (for checkouts that differ only by umask).
//
//   ASSIGN_OR_RETURN(auto ignore, scheduler::context::LoadIgnorePatterns(dir, dockerfile_path));
//   ASSIGN_OR_RETURN(auto snap, scheduler::context::Snapshot::FromDirectory(dir, ignore, {}));
//   ASSIGN_OR_RETURN(scheduler::context::Snapshot::UploadStats up, snap->Upload(*cas));
#ifndef FARM_SCHEDULER_CONTEXT_CONTEXT_H_
#define FARM_SCHEDULER_CONTEXT_CONTEXT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/call_once.h"
#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "common/digest.h"
#include "farm/v1/step.pb.h"
#include "worker/copy/source_tree.h"

namespace farm::scheduler::context {

namespace internal {
struct Walk;
}  // namespace internal

struct SnapshotOptions {
  bool normalize_permissions = false;
  int threads = 0;  // hashing threads; 0 = one per core
  // A stat cache file (farm.v1.StatCacheFile): files whose stat is unchanged since it was
  // written reuse their digest instead of being read; the file is rewritten afterwards. ""
  // hashes every file. A missing or unreadable cache file is simply rebuilt.
  std::string stat_cache;
};

// The patterns of `<dockerfile>.dockerignore` beside the Dockerfile if that file exists,
// else of `<context>/.dockerignore`, else none. `dockerfile_path` may be empty.
absl::StatusOr<std::vector<std::string>> LoadIgnorePatterns(const std::string& context_dir,
                                                            const std::string& dockerfile_path);

class Snapshot {
 public:
  // Walks `dir` (not following symlinks), skipping what `ignore_patterns` exclude (Docker's
  // semantics: an excluded directory is skipped unless a "!" pattern re-includes something
  // below it), hashing every regular file. Sockets, devices and FIFOs are skipped.
  static absl::StatusOr<std::unique_ptr<Snapshot>> FromDirectory(
      const std::string& dir, const std::vector<std::string>& ignore_patterns,
      const SnapshotOptions& options);

  const worker::copy::IndexedTree& tree() const { return *tree_; }
  const farm::v1::ContextRoot& root() const { return root_; }
  const std::string& dir() const { return dir_; }
  int64_t file_count() const { return file_count_; }
  int64_t files_hashed() const { return files_hashed_; }  // read this time (not from the cache)
  int64_t total_bytes() const { return total_bytes_; }

  // The serialized Directory protos by digest (the root included).
  const std::map<common::Digest, std::string>& directories() const { return directories_; }
  // One host path per distinct file digest (made on the first call).
  const std::map<common::Digest, std::string>& files() const;

  // A BlobStore that serves this snapshot's Directory protos (from memory) and files (from
  // disk, their SHA-256 checked while streaming: a file changed since it was hashed is
  // DATA_LOSS naming it) and delegates everything else to `base`. `farm build` hands it to
  // its in-process worker instead of copying the context into the CAS. The snapshot must
  // outlive it.
  std::shared_ptr<cache::BlobStore> Overlay(std::shared_ptr<cache::BlobStore> base) const;

  // Writes every Directory and file blob the CAS is missing: one FindMissing, then
  // `parallelism` threads each writing batches of small blobs (BatchWrite) or streaming one
  // large file from disk. A file that changed since it was hashed fails its write's
  // verification and the error names it.
  struct UploadStats {
    int64_t blobs_checked = 0;
    int64_t blobs_written = 0;
    int64_t bytes_written = 0;
  };
  absl::StatusOr<UploadStats> Upload(cache::BlobStore& cas, int parallelism = 8) const;

  ~Snapshot();

 private:
  Snapshot();
  std::string dir_;
  std::unique_ptr<worker::copy::IndexedTree> tree_;
  farm::v1::ContextRoot root_;
  std::map<common::Digest, std::string> directories_;
  std::unique_ptr<internal::Walk> walk_;  // the walk's listings, which files() indexes
  mutable absl::once_flag files_once_;
  mutable std::map<common::Digest, std::string> files_;
  int64_t file_count_ = 0;
  int64_t files_hashed_ = 0;
  int64_t total_bytes_ = 0;
};

}  // namespace farm::scheduler::context

#endif  // FARM_SCHEDULER_CONTEXT_CONTEXT_H_
