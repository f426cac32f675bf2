// SourceTree: a read-only file tree that COPY/ADD and RUN --mount=type=bind read from.
//
// The same selection rules (select.h) run on every kind of tree, so the planner's cache key
// and the worker's copy always agree on which files a COPY takes:
//   - the build context, hashed on the client (IndexedTree built by scheduler/context),
//   - the build context as a REAPI Directory Merkle tree in the CAS (on a remote worker),
//   - another stage's or an image's root filesystem, mounted on the worker (a directory).
//
// Paths are relative, slash-separated and clean: "" is the root, "a/b" a descendant; never a
// leading "/", "." or "..". Implementations are thread-safe for concurrent readers.
#ifndef FARM_WORKER_COPY_SOURCE_TREE_H_
#define FARM_WORKER_COPY_SOURCE_TREE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace farm::worker::copy {

enum class FileType { kRegular, kDirectory, kSymlink, kOther };

// The REAPI NodeProperty of a context FileNode naming its hard-link group (FileInfo).
inline constexpr char kHardlinkProperty[] = "farm.hardlink";

struct FileInfo {
  FileType type = FileType::kRegular;
  uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t size = 0;
  int64_t mtime_sec = 0;  // 0 where the tree does not keep times (the build context)
  // Regular files: the content digest, when the tree knows it without reading the file.
  std::optional<common::Digest> digest;
  std::string link_target;  // symlinks
  // A regular file with other names in the same tree: the same non-empty group is the same
  // file, which a COPY writes once and hard-links under its other names, as Docker does. A
  // host directory's group is "device:inode" (st_nlink > 1); the build context's is the first
  // of the names in walk order, recorded in its Merkle tree (kHardlinkProperty).
  std::string hardlink_group;

  bool is_dir() const { return type == FileType::kDirectory; }
  bool is_symlink() const { return type == FileType::kSymlink; }
  bool executable() const { return (mode & 0111) != 0; }
};

// How symlinks resolve while looking a source path up.
enum class SymlinkPolicy {
  // The build context: a link whose target leaves the tree (absolute, or ".." above the root)
  // is an error, because the context stands for a host directory.
  kContained,
  // A root filesystem (stage, image): "/" is the tree's root and ".." stops at it, as inside
  // the container.
  kRooted,
};

using ReadSink = std::function<absl::Status(absl::string_view chunk)>;

struct DirEntry {
  std::string name;
  FileInfo info;
};

class SourceTree {
 public:
  virtual ~SourceTree() = default;

  // Information about `path` without following a final symlink. NOT_FOUND if absent.
  virtual absl::StatusOr<FileInfo> Lstat(absl::string_view path) const = 0;
  // The entries of directory `path`, sorted by name (byte order). NOT_FOUND if absent,
  // FAILED_PRECONDITION if not a directory.
  virtual absl::StatusOr<std::vector<DirEntry>> ReadDir(absl::string_view path) const = 0;
  // Streams the content of regular file `path` to `sink` in order.
  virtual absl::Status ReadFile(absl::string_view path, const ReadSink& sink) const = 0;
  // A host path holding `path`'s content, for fast copies (copy_file_range, reflinks); empty
  // when the tree has none (a CAS tree).
  virtual std::string HostPath(absl::string_view path) const { return std::string(); }
  virtual SymlinkPolicy symlink_policy() const = 0;
};

// A SourceTree whose structure is held in a sorted in-memory index and whose file contents
// come from a callback (a host directory, the CAS). Build it once, then share it read-only.
//
//   worker::copy::IndexedTree tree(worker::copy::SymlinkPolicy::kContained, reader);
//   tree.Add("src", dir_info);
//   tree.Add("src/main.cc", file_info);
class IndexedTree : public SourceTree {
 public:
  // Reads the content of the file at `path` (whose index entry is `info`).
  using ContentReader =
      std::function<absl::Status(absl::string_view path, const FileInfo& info, const ReadSink&)>;
  using HostPathFn = std::function<std::string(absl::string_view path)>;

  IndexedTree(SymlinkPolicy policy, ContentReader reader, HostPathFn host_path = nullptr);

  // Adds or replaces an entry. Missing parent directories are added (0755, owner 0:0).
  // The root ("") always exists as a directory. Adding in walk order (a directory before its
  // children, siblings by name) appends: no search, no moves.
  void Add(absl::string_view path, FileInfo info);
  void Reserve(size_t entries) { nodes_.reserve(entries + 1); }
  size_t size() const { return nodes_.size() - 1; }
  // Every path in walk order: a directory before its children, siblings by name (byte
  // order); the root is not listed.
  std::vector<std::string> Paths() const;

  absl::StatusOr<FileInfo> Lstat(absl::string_view path) const override;
  absl::StatusOr<std::vector<DirEntry>> ReadDir(absl::string_view path) const override;
  absl::Status ReadFile(absl::string_view path, const ReadSink& sink) const override;
  std::string HostPath(absl::string_view path) const override;
  SymlinkPolicy symlink_policy() const override { return policy_; }

 private:
  struct Node {
    std::string name;
    FileInfo info;
    std::vector<uint32_t> children;  // indexes into nodes_, sorted by name (byte order)
  };
  // The index of `parent`'s child `name`: where it is, else where it would be inserted.
  std::pair<size_t, bool> FindChild(const Node& parent, absl::string_view name) const;
  // The node at `path`, or nullptr.
  const Node* Find(absl::string_view path) const;

  SymlinkPolicy policy_;
  ContentReader reader_;
  HostPathFn host_path_;
  // A flat index: nodes_[0] is the root; a node's children are kept sorted as they are added
  // (20,000 context files index in a few milliseconds, without a map node per path).
  std::vector<Node> nodes_;
};

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_SOURCE_TREE_H_
