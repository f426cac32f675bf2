// StackView: reading a stack of overlay-form layer directories as the one file system it
// shows when mounted, without mounting (no namespace, no privilege, usable in the long-running
// worker). Lookups follow overlayfs's rules: the topmost layer that has a name wins, whiteouts
// delete, opaque directories hide everything below them, a non-directory hides lower
// directories of the same name, directory listings merge.
//
// Paths are slash-separated, relative to the root ("/" prefix allowed, "." and ".." are
// cleaned lexically). Lstat/ReadDir/HostPath never follow symlinks; Resolve follows them the
// way the kernel would inside the container's root (absolute targets start at the root, ".."
// stops at the root), so nothing resolves outside it.
//
//   worker::layerstore::StackView view(stack->lower_dirs());           // top first
//   ASSIGN_OR_RETURN(auto r, view.Resolve("/etc/passwd", true));
//   if (r.exists) ASSIGN_OR_RETURN(std::string text, view.ReadFile(r.path, 1 << 20));
//
// Thread-compatible (const methods only).
#ifndef FARM_WORKER_LAYERSTORE_STACK_VIEW_H_
#define FARM_WORKER_LAYERSTORE_STACK_VIEW_H_

#include <sys/stat.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::worker::layerstore {

class StackView {
 public:
  explicit StackView(std::vector<std::string> layers_top_first)
      : layers_(std::move(layers_top_first)) {}

  struct Found {
    std::string host_path;  // where the entry's data lives on the host
    struct stat st;
  };
  // The entry at `path` (no symlink followed anywhere), nullopt if absent. "" / "/" is the root.
  absl::StatusOr<std::optional<Found>> Lookup(absl::string_view path) const;

  // Names in directory `path` (sorted), NOT_FOUND / FAILED_PRECONDITION (not a directory).
  absl::StatusOr<std::vector<std::string>> ReadDir(absl::string_view path) const;
  // Content of the regular file at `path` (FAILED_PRECONDITION if larger than `max_bytes`).
  absl::StatusOr<std::string> ReadFile(absl::string_view path, int64_t max_bytes) const;
  absl::StatusOr<std::string> Readlink(absl::string_view path) const;

  struct Resolved {
    std::string path;  // clean, relative ("" = root), symlinks resolved in the root
    bool exists = false;
    struct stat st = {};  // when exists
  };
  // Resolves symlinks in `path` inside the root (the final component too if `follow_final`).
  // A missing component ends resolution: `path` then holds the resolved existing prefix plus
  // the remaining components as written (cleaned). ELOOP-like chains (> 40 links) and a
  // non-directory in the middle are FAILED_PRECONDITION.
  absl::StatusOr<Resolved> Resolve(absl::string_view path, bool follow_final) const;

  const std::vector<std::string>& layers() const { return layers_; }

 private:
  std::vector<std::string> layers_;
};

// Splits a path into clean components ("/a//b/./c/../d" → {"a","b","d"}); ".." at the root is
// dropped.
std::vector<std::string> SplitClean(absl::string_view path);

}  // namespace farm::worker::layerstore

#endif  // FARM_WORKER_LAYERSTORE_STACK_VIEW_H_
