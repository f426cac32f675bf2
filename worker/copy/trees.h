// SourceTree implementations the worker reads COPY/ADD and RUN --mount sources from:
//
//   CasTree       the build context as a REAPI Directory Merkle tree in the CAS (what the client
//                 uploaded, already filtered by .dockerignore). Directories are fetched lazily
//                 and cached; file contents stream from the CAS. Modes: 0755/0644 from
//                 is_executable, or NodeProperties.unix_mode when the client recorded it
//                 (the default; not with --normalize-permissions). kContained symlinks.
//   DirectoryTree a directory on the host (e.g. a mounted stage root), read with lstat/readdir;
//                 kRooted or kContained as the caller says.
//   StackTree     a stack of overlay-form layer directories (a stage's or an image's root)
//                 read through worker::layerstore::StackView, without mounting. kRooted.
//
//   worker::copy::CasTree ctx(cas, root_digest);
//   ASSIGN_OR_RETURN(auto matches, worker::copy::ResolveSources(ctx, srcs, {}));
#ifndef FARM_WORKER_COPY_TREES_H_
#define FARM_WORKER_COPY_TREES_H_

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/blob_store.h"
#include "worker/copy/source_tree.h"
#include "worker/layerstore/stack_view.h"

namespace farm::worker::copy {

class CasTree : public SourceTree {
 public:
  CasTree(std::shared_ptr<cache::BlobStore> cas, common::Digest root)
      : cas_(std::move(cas)), root_(std::move(root)) {}

  absl::StatusOr<FileInfo> Lstat(absl::string_view path) const override;
  absl::StatusOr<std::vector<DirEntry>> ReadDir(absl::string_view path) const override;
  absl::Status ReadFile(absl::string_view path, const ReadSink& sink) const override;
  SymlinkPolicy symlink_policy() const override { return SymlinkPolicy::kContained; }

  // The digest of the Directory message at `path` (a directory), e.g. to cache a materialized
  // copy of a subtree.
  absl::StatusOr<common::Digest> DirectoryDigest(absl::string_view path) const;

 private:
  using Directory = build::bazel::remote::execution::v2::Directory;
  absl::StatusOr<std::shared_ptr<const Directory>> Fetch(const common::Digest& d) const;
  // The Directory at `path` and its digest.
  absl::StatusOr<std::pair<std::shared_ptr<const Directory>, common::Digest>> Dir(
      absl::string_view path) const;

  std::shared_ptr<cache::BlobStore> cas_;
  common::Digest root_;
  mutable absl::Mutex mu_;
  mutable std::map<common::Digest, std::shared_ptr<const Directory>> dirs_ ABSL_GUARDED_BY(mu_);
};

class DirectoryTree : public SourceTree {
 public:
  DirectoryTree(std::string dir, SymlinkPolicy policy) : dir_(std::move(dir)), policy_(policy) {}

  absl::StatusOr<FileInfo> Lstat(absl::string_view path) const override;
  absl::StatusOr<std::vector<DirEntry>> ReadDir(absl::string_view path) const override;
  absl::Status ReadFile(absl::string_view path, const ReadSink& sink) const override;
  std::string HostPath(absl::string_view path) const override;
  SymlinkPolicy symlink_policy() const override { return policy_; }

 private:
  std::string dir_;
  SymlinkPolicy policy_;
};

class StackTree : public SourceTree {
 public:
  explicit StackTree(layerstore::StackView view) : view_(std::move(view)) {}

  absl::StatusOr<FileInfo> Lstat(absl::string_view path) const override;
  absl::StatusOr<std::vector<DirEntry>> ReadDir(absl::string_view path) const override;
  absl::Status ReadFile(absl::string_view path, const ReadSink& sink) const override;
  std::string HostPath(absl::string_view path) const override;
  SymlinkPolicy symlink_policy() const override { return SymlinkPolicy::kRooted; }

  const layerstore::StackView& view() const { return view_; }

 private:
  layerstore::StackView view_;
};

// FileInfo of a host file (lstat result + symlink target).
absl::StatusOr<FileInfo> HostFileInfo(const std::string& path);
// Streams a host file to `sink`.
absl::Status ReadHostFile(const std::string& path, const ReadSink& sink);

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_TREES_H_
