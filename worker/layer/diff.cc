#include "worker/layer/diff.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::layer {

bool IsLayerXattr(absl::string_view name) {
  if (name == "security.capability") return true;
  return absl::StartsWith(name, "user.") && !absl::StartsWith(name, "user.overlay.");
}

namespace {

constexpr char kWhiteoutPrefix[] = ".wh.";
constexpr char kOpaqueMarker[] = ".wh..wh..opq";

// Where xattrs are read: an open file (regular files and directories, which the walk opens
// anyway: no path lookup) or, for what cannot be opened (symlinks, devices), a path.
struct XattrSource {
  int fd = -1;
  std::string path;

  ssize_t List(char* buf, size_t size) const {
    return fd >= 0 ? flistxattr(fd, buf, size) : llistxattr(path.c_str(), buf, size);
  }
  ssize_t Get(const char* name, void* buf, size_t size) const {
    return fd >= 0 ? fgetxattr(fd, name, buf, size) : lgetxattr(path.c_str(), name, buf, size);
  }
  int Remove(const char* name) const {
    return fd >= 0 ? fremovexattr(fd, name) : lremovexattr(path.c_str(), name);
  }
};

// Returns the names of every xattr of `src` (not following symlinks); errors name `shown`.
absl::StatusOr<std::vector<std::string>> ListXattrs(const XattrSource& src,
                                                    const std::string& shown) {
  std::vector<char> buf(256);
  while (true) {
    ssize_t n = src.List(buf.data(), buf.size());
    if (n >= 0) {
      std::vector<std::string> names;
      for (ssize_t i = 0; i < n;) {
        std::string name(&buf[i]);
        i += static_cast<ssize_t>(name.size()) + 1;
        if (!name.empty()) names.push_back(std::move(name));
      }
      return names;
    }
    if (errno == ERANGE) {
      ssize_t need = src.List(nullptr, 0);
      if (need < 0) return common::ErrnoToStatus(errno, absl::StrCat("listxattr ", shown));
      buf.resize(static_cast<size_t>(need) + 1);
      continue;
    }
    if (errno == ENOTSUP) return std::vector<std::string>();
    return common::ErrnoToStatus(errno, absl::StrCat("listxattr ", shown));
  }
}

// Value of xattr `name` of `src`, or nullopt if absent; errors name `shown`.
absl::StatusOr<std::optional<std::string>> GetXattr(const XattrSource& src, const char* name,
                                                    const std::string& shown) {
  std::string value(64, '\0');
  while (true) {
    ssize_t n = src.Get(name, &value[0], value.size());
    if (n >= 0) {
      value.resize(static_cast<size_t>(n));
      return std::optional<std::string>(std::move(value));
    }
    if (errno == ENODATA || errno == ENOTSUP) return std::optional<std::string>();
    if (errno == ERANGE) {
      ssize_t need = src.Get(name, nullptr, 0);
      if (need < 0) return common::ErrnoToStatus(errno, absl::StrCat("getxattr ", shown));
      value.resize(static_cast<size_t>(need));
      continue;
    }
    return common::ErrnoToStatus(errno, absl::StrCat("getxattr ", name, " ", shown));
  }
}

// The path of `name` in the directory open as `dirfd`, for the calls that take only paths (the
// xattr ones): the kernel resolves /proc/self/fd/N to exactly that directory, so no component
// of the tree's own path is looked up again (and no symlink on it followed) after the walk
// opened it with O_NOFOLLOW.
std::string AtPath(int dirfd, const std::string& name) {
  return absl::StrCat("/proc/self/fd/", dirfd, "/", name);
}

struct Entry {
  std::string tar_name;   // base name as written in the tar (".wh.x" for a whiteout of x)
  std::string disk_name;  // base name on disk
  struct stat st;
  bool whiteout = false;
};

class Walker {
 public:
  Walker(const std::string& root, const DiffOptions& options, TarWriter* tar)
      : root_(root), options_(options), tar_(tar), buffer_(1 << 20) {}

  absl::Status Run() {
    int fd = open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", root_));
    absl::Status s = WalkDir(fd, "");
    close(fd);
    return s;
  }

  const DiffStats& stats() const { return stats_; }

 private:
  int64_t Clamp(int64_t t) const {
    if (options_.clamp_mtime.has_value() && t > *options_.clamp_mtime) return *options_.clamp_mtime;
    return t;
  }

  // `rel` is the directory's path relative to the root ("" for the root, else "a/b/").
  absl::Status WalkDir(int dirfd, const std::string& rel) {
    int dup_fd = dup(dirfd);
    if (dup_fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("dup ", root_, "/", rel));
    DIR* dir = fdopendir(dup_fd);
    if (dir == nullptr) {
      close(dup_fd);
      return common::ErrnoToStatus(errno, absl::StrCat("opendir ", root_, "/", rel));
    }
    std::vector<Entry> entries;
    absl::Status status;
    while (true) {
      errno = 0;
      struct dirent* de = readdir(dir);
      if (de == nullptr) {
        if (errno != 0)
          status = common::ErrnoToStatus(errno, absl::StrCat("readdir ", root_, "/", rel));
        break;
      }
      absl::string_view name = de->d_name;
      if (name == "." || name == "..") continue;
      Entry e;
      e.disk_name = std::string(name);
      if (fstatat(dirfd, de->d_name, &e.st, AT_SYMLINK_NOFOLLOW) != 0) {
        status = common::ErrnoToStatus(errno, absl::StrCat("stat ", root_, "/", rel, name));
        break;
      }
      if (S_ISCHR(e.st.st_mode) && e.st.st_rdev == makedev(0, 0)) {
        e.whiteout = true;
      } else if (S_ISREG(e.st.st_mode) && e.st.st_size == 0) {
        auto wh = GetXattr(XattrSource{-1, AtPath(dirfd, e.disk_name)}, "trusted.overlay.whiteout",
                           DiskPath(rel, e.disk_name));
        if (!wh.ok()) {
          status = wh.status();
          break;
        }
        e.whiteout = wh->has_value();
      }
      e.tar_name = e.whiteout ? absl::StrCat(kWhiteoutPrefix, name) : e.disk_name;
      entries.push_back(std::move(e));
    }
    closedir(dir);
    RETURN_IF_ERROR(status);
    std::sort(entries.begin(), entries.end(),
              [](const Entry& a, const Entry& b) { return a.tar_name < b.tar_name; });
    for (const Entry& e : entries) RETURN_IF_ERROR(Emit(dirfd, rel, e));
    return absl::OkStatus();
  }

  std::string DiskPath(const std::string& rel, const std::string& name) const {
    return absl::StrCat(root_, "/", rel, name);
  }

  absl::Status Emit(int dirfd, const std::string& rel, const Entry& e) {
    std::string path = DiskPath(rel, e.disk_name);
    TarHeader h;
    h.name = rel + e.tar_name;
    if (e.whiteout) {
      // Whiteouts carry no metadata worth keeping: fixed values keep layers reproducible.
      h.type = TarHeader::kRegular;
      RETURN_IF_ERROR(tar_->WriteHeader(h));
      ++stats_.entries;
      return absl::OkStatus();
    }
    const struct stat& st = e.st;
    h.mode = st.st_mode & 07777;
    h.uid = st.st_uid;
    h.gid = st.st_gid;
    h.mtime = Clamp(st.st_mtim.tv_sec);
    if (options_.normalize_tree && h.mtime != st.st_mtim.tv_sec) {
      struct timespec times[2] = {{0, UTIME_OMIT}, {h.mtime, 0}};
      if (utimensat(dirfd, e.disk_name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
        return common::ErrnoToStatus(errno, absl::StrCat("utimensat ", path));
      }
    }
    // Regular files and directories are opened once, here: their xattrs are read through the
    // descriptor, then the content is read or the directory walked.
    common::UniqueFd fd;
    XattrSource xsrc;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
      int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | (S_ISDIR(st.st_mode) ? O_DIRECTORY : 0);
      int f = openat(dirfd, e.disk_name.c_str(), flags | O_NOATIME);
      if (f < 0 && errno == EPERM) f = openat(dirfd, e.disk_name.c_str(), flags);
      if (f < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
      fd = common::UniqueFd(f);
      xsrc.fd = f;
    } else {
      xsrc.path = AtPath(dirfd, e.disk_name);
    }
    bool opaque = false;
    ASSIGN_OR_RETURN(std::vector<std::string> xattrs, ListXattrs(xsrc, path));
    std::sort(xattrs.begin(), xattrs.end());
    for (const std::string& name : xattrs) {
      if (IsLayerXattr(name)) {
        ASSIGN_OR_RETURN(std::optional<std::string> v, GetXattr(xsrc, name.c_str(), path));
        if (v.has_value()) h.xattrs.emplace_back(name, std::move(*v));
        continue;
      }
      if (name == "trusted.overlay.opaque" && S_ISDIR(st.st_mode)) {
        ASSIGN_OR_RETURN(std::optional<std::string> v, GetXattr(xsrc, name.c_str(), path));
        opaque = v.has_value() && *v == "y";
        if (opaque) continue;
      }
      // Overlay's bookkeeping (origin, impure, nlink, ...) goes; what makes the directory a
      // valid lowerdir (opaque markers, xattr whiteouts) stays.
      if (options_.normalize_tree && absl::StartsWith(name, "trusted.overlay.") &&
          name != "trusted.overlay.whiteout" && name != "trusted.overlay.opaque") {
        if (xsrc.Remove(name.c_str()) != 0 && errno != ENODATA) {
          return common::ErrnoToStatus(errno, absl::StrCat("removexattr ", name, " ", path));
        }
      }
    }

    if (S_ISDIR(st.st_mode)) {
      h.type = TarHeader::kDirectory;
      RETURN_IF_ERROR(tar_->WriteHeader(h));
      ++stats_.entries;
      if (opaque) {
        TarHeader marker;
        marker.name = absl::StrCat(rel, e.disk_name, "/", kOpaqueMarker);
        RETURN_IF_ERROR(tar_->WriteHeader(marker));
        ++stats_.entries;
      }
      return WalkDir(fd.get(), absl::StrCat(rel, e.disk_name, "/"));
    }
    if (S_ISLNK(st.st_mode)) {
      h.type = TarHeader::kSymlink;
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = readlinkat(dirfd, e.disk_name.c_str(), &target[0], target.size());
      if (n < 0) return common::ErrnoToStatus(errno, absl::StrCat("readlink ", path));
      if (static_cast<size_t>(n) >= target.size()) {
        return absl::InternalError(absl::StrCat("symlink ", path, " changed while archiving"));
      }
      target.resize(static_cast<size_t>(n));
      h.linkname = std::move(target);
    } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
      h.type = S_ISCHR(st.st_mode) ? TarHeader::kChar : TarHeader::kBlock;
      h.dev_major = major(st.st_rdev);
      h.dev_minor = minor(st.st_rdev);
    } else if (S_ISFIFO(st.st_mode)) {
      h.type = TarHeader::kFifo;
    } else if (S_ISSOCK(st.st_mode)) {
      return absl::OkStatus();
    } else if (S_ISREG(st.st_mode)) {
      if (st.st_nlink > 1) {
        auto key = std::make_pair(st.st_dev, st.st_ino);
        auto it = links_.find(key);
        if (it != links_.end()) {
          h.type = TarHeader::kHardLink;
          h.linkname = it->second;
          h.xattrs.clear();
          RETURN_IF_ERROR(tar_->WriteHeader(h));
          ++stats_.entries;
          return absl::OkStatus();
        }
        links_.emplace(key, h.name);
      }
      h.type = TarHeader::kRegular;
      h.size = st.st_size;
      RETURN_IF_ERROR(tar_->WriteHeader(h));
      ++stats_.entries;
      return CopyContent(fd.get(), path, st.st_size);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unsupported file type at ", path));
    }
    RETURN_IF_ERROR(tar_->WriteHeader(h));
    ++stats_.entries;
    return absl::OkStatus();
  }

  // Copies `size` bytes of the open file `fd` into the archive.
  absl::Status CopyContent(int fd, const std::string& path, int64_t size) {
    if (size > static_cast<int64_t>(buffer_.size())) posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int64_t left = size;
    while (left > 0) {
      ssize_t n = read(fd, buffer_.data(), std::min<int64_t>(left, buffer_.size()));
      if (n < 0) {
        if (errno == EINTR) continue;
        return common::ErrnoToStatus(errno, absl::StrCat("read ", path));
      }
      if (n == 0) return absl::InternalError(absl::StrCat(path, " shrank while archiving"));
      RETURN_IF_ERROR(tar_->WriteData(absl::string_view(buffer_.data(), static_cast<size_t>(n))));
      left -= n;
      stats_.file_bytes += n;
    }
    return absl::OkStatus();
  }

  const std::string root_;
  const DiffOptions options_;
  TarWriter* tar_;
  std::vector<char> buffer_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
  DiffStats stats_;
};

}  // namespace

absl::StatusOr<DiffStats> WriteOverlayDirAsTar(const std::string& dir, const DiffOptions& options,
                                               TarWriter* tar) {
  Walker walker(dir, options, tar);
  RETURN_IF_ERROR(walker.Run());
  return walker.stats();
}

}  // namespace farm::worker::layer
