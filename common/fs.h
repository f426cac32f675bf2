// File-system helpers returning absl::Status (errno mapped by ErrnoToStatus).
//
//   ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
//   RETURN_IF_ERROR(common::WriteFileAtomic(path, bytes));   // tmp + fsync + rename
//   ASSIGN_OR_RETURN(common::TempDir tmp, common::TempDir::Create("farm-test"));
#ifndef FARM_COMMON_FS_H_
#define FARM_COMMON_FS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/byte_sink.h"

namespace farm::common {

absl::StatusOr<std::string> ReadFile(const std::string& path);
// Writes all `n` bytes to `fd`, retrying on EINTR and short writes; false on an error or a
// zero-byte write (errno tells which). Allocates nothing and takes no lock, so a child may
// call it between fork and exec.
bool WriteFully(int fd, const void* data, size_t n);

// A file created in `dir` ("" = $TMPDIR, else /tmp) and unlinked at once: scratch space that
// disappears with its descriptor (spooling a blob whose digest is known only at the end).
// Returns the descriptor (O_CLOEXEC); the caller closes it.
absl::StatusOr<int> CreateUnlinkedTempFile(const std::string& dir, absl::string_view what);

// Appends whatever is written to it to a file descriptor (not owned).
class FdSink : public ByteSink {
 public:
  FdSink(int fd, std::string what) : fd_(fd), what_(std::move(what)) {}
  absl::Status Write(absl::string_view data) override;

 private:
  int fd_;
  std::string what_;  // for errors: "write <what>"
};

// Writes `data` to a temporary file beside `path`, fsyncs it, renames it over `path` and
// fsyncs the directory: after return, the new content survives a crash. With sync=false the
// fsyncs are skipped: readers still see the old or the new content, never a mix, and a
// process crash loses nothing; only a power loss may bring back the old content. For caches
// and records whose loss costs only time (and whose fsyncs would wait behind every other
// process's dirty pages).
absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, int mode = 0644,
                             bool sync = true);
// mkdir -p.
absl::Status MakeDirs(const std::string& path, int mode = 0755);
// rm -rf; a missing path is OK. Does not cross into other mounts' content (no special care
// beyond unlinking: callers unmount first).
absl::Status RemoveAll(const std::string& path);
bool PathExists(const std::string& path);
// Joins path components with single slashes ("a/" + "/b" → "a/b").
std::string JoinPath(absl::string_view a, absl::string_view b);
// Lexically cleans a slash-separated path like Go's path.Clean ("a//b/../c/." → "a/c").
std::string CleanPath(absl::string_view path);

// Opens `rel` (relative; "" or "." is the directory itself) below the directory `dirfd` the
// safe way for trees someone else controls (an upperdir a build step wrote, a rootfs): no
// symlink is followed anywhere on the way, the last component included, and ".." never leaves
// `dirfd`; nor does the walk cross into another mount. openat2(RESOLVE_IN_ROOT |
// RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) where the kernel has it
// (5.6+), else a walk one component at a time with O_NOFOLLOW (that does not check mounts;
// "..": INVALID_ARGUMENT).
// `flags` are open(2)'s (O_NOFOLLOW and O_CLOEXEC are added). A symlink on the way fails with
// ELOOP's status, a missing component with NOT_FOUND. The caller owns the descriptor.
absl::StatusOr<int> OpenBeneath(int dirfd, absl::string_view rel, int flags, int mode = 0);

namespace internal {
// OpenBeneath's fallback for kernels without openat2 (exposed for its test).
absl::StatusOr<int> OpenBeneathByWalk(int dirfd, absl::string_view rel, int flags, int mode);
}  // namespace internal

// The size of a buffer to read a file of `file_size` bytes through: the file's size (at least
// 4 KiB), at most 1 MiB. A zeroed megabyte per small file costs more than reading it.
inline size_t ReadBufferSize(int64_t file_size) {
  if (file_size < 4096) return 4096;
  return file_size > (1 << 20) ? size_t{1} << 20 : static_cast<size_t>(file_size);
}

// An owned file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd();
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// A directory removed (recursively) when the object is destroyed.
class TempDir {
 public:
  // Creates a fresh directory under $TEST_TMPDIR, $TMPDIR or /tmp.
  static absl::StatusOr<TempDir> Create(absl::string_view prefix);
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace farm::common

#endif  // FARM_COMMON_FS_H_
