#include "worker/layer/unpack.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/layer/diff.h"

namespace farm::worker::layer {
namespace {

constexpr absl::string_view kWhiteoutPrefix = ".wh.";
constexpr absl::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr absl::string_view kMetaPrefix = ".wh..wh.";

absl::Status EntryError(const std::string& entry, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("layer entry \"", entry, "\": ", what));
}

std::pair<std::string, std::string> SplitParent(const std::string& rel) {
  size_t slash = rel.rfind('/');
  if (slash == std::string::npos) return {"", rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

// Removes `base` in `dirfd` (recursively for directories), never following symlinks.
absl::Status RemoveAt(int parent_fd, const std::string& base, const std::string& what) {
  if (unlinkat(parent_fd, base.c_str(), 0) == 0 || errno == ENOENT) return absl::OkStatus();
  if (errno != EISDIR && errno != EPERM) return common::ErrnoToStatus(errno, "unlink " + what);
  int fd = openat(parent_fd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, "open " + what);
  DIR* d = fdopendir(fd);
  if (d == nullptr) {
    close(fd);
    return common::ErrnoToStatus(errno, "opendir " + what);
  }
  std::vector<std::string> names;
  while (struct dirent* de = readdir(d)) {
    absl::string_view n = de->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  absl::Status s;
  for (const std::string& n : names) {
    s = RemoveAt(dirfd(d), n, what + "/" + n);
    if (!s.ok()) break;
  }
  closedir(d);
  RETURN_IF_ERROR(s);
  if (unlinkat(parent_fd, base.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return common::ErrnoToStatus(errno, "rmdir " + what);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> CleanEntryName(absl::string_view name) {
  std::string entry(name);
  if (absl::StartsWith(name, "/")) return EntryError(entry, "absolute path");
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return EntryError(entry, "path escapes the layer root");
      parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  return absl::StrJoin(parts, "/");
}

OverlayUnpacker::OverlayUnpacker(std::string dir) : dir_(std::move(dir)) {}

OverlayUnpacker::~OverlayUnpacker() {
  if (file_fd_ >= 0) close(file_fd_);
  if (cached_fd_ >= 0) close(cached_fd_);
  if (root_fd_ >= 0) close(root_fd_);
}

absl::Status OverlayUnpacker::Open() {
  if (root_fd_ >= 0) return absl::OkStatus();
  root_fd_ = open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd_ < 0) return common::ErrnoToStatus(errno, "open " + dir_);
  return absl::OkStatus();
}

absl::StatusOr<int> OverlayUnpacker::OpenDir(const std::string& rel, const std::string& entry) {
  if (cached_fd_ >= 0 && cached_rel_ == rel) return cached_fd_;
  if (cached_fd_ >= 0) {
    close(cached_fd_);
    cached_fd_ = -1;
  }
  int fd = dup(root_fd_);
  if (fd < 0) return common::ErrnoToStatus(errno, "dup");
  if (!rel.empty()) {
    std::string walked;
    for (absl::string_view part : absl::StrSplit(rel, '/')) {
      std::string p(part);
      walked = walked.empty() ? p : absl::StrCat(walked, "/", p);
      int next = openat(fd, p.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (next < 0 && errno == ENOENT) {
        if (mkdirat(fd, p.c_str(), 0755) != 0 && errno != EEXIST) {
          int e = errno;
          close(fd);
          return common::ErrnoToStatus(e,
                                       absl::StrCat("layer entry \"", entry, "\": mkdir ", walked));
        }
        next = openat(fd, p.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      }
      if (next < 0) {
        int e = errno;
        close(fd);
        if (e == ENOTDIR || e == ELOOP) {
          return EntryError(entry, absl::StrCat("parent \"", walked,
                                                "\" is not a directory (a symlink or file in "
                                                "this layer); refusing to follow it"));
        }
        return common::ErrnoToStatus(e, absl::StrCat("layer entry \"", entry, "\": open ", walked));
      }
      close(fd);
      fd = next;
    }
  }
  cached_rel_ = rel;
  cached_fd_ = fd;
  return fd;
}

absl::Status OverlayUnpacker::Remove(int dirfd, const std::string& base, const std::string& entry) {
  return RemoveAt(dirfd, base, absl::StrCat(dir_, "/", entry));
}

absl::Status OverlayUnpacker::ApplyMeta(int dirfd, const std::string& base, const TarHeader& h,
                                        const std::string& entry, bool is_symlink) {
  if (fchownat(dirfd, base.c_str(), static_cast<uid_t>(h.uid), static_cast<gid_t>(h.gid),
               AT_SYMLINK_NOFOLLOW) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", entry, "\": chown"));
  }
  if (!is_symlink && fchmodat(dirfd, base.c_str(), h.mode & 07777, 0) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", entry, "\": chmod"));
  }
  if (!h.xattrs.empty()) {
    std::string path = absl::StrCat(dir_, "/", entry);
    for (const auto& [name, value] : h.xattrs) {
      if (!IsLayerXattr(name)) continue;
      if (lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
        return common::ErrnoToStatus(errno,
                                     absl::StrCat("layer entry \"", entry, "\": setxattr ", name));
      }
    }
  }
  struct timespec times[2] = {{h.mtime, 0}, {h.mtime, 0}};
  if (utimensat(dirfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", entry, "\": utimes"));
  }
  return absl::OkStatus();
}

absl::Status OverlayUnpacker::OnEntry(const TarHeader& h) {
  RETURN_IF_ERROR(Open());
  ASSIGN_OR_RETURN(std::string rel, CleanEntryName(h.name));
  disk_bytes_ += 512;
  if (rel.empty()) return absl::OkStatus();  // the root itself: its metadata is not a layer's
  auto [parent, base] = SplitParent(rel);

  if (absl::StartsWith(base, kWhiteoutPrefix)) {
    ASSIGN_OR_RETURN(int pfd, OpenDir(parent, h.name));
    if (base == kOpaqueMarker) {
      if (fsetxattr(pfd, "trusted.overlay.opaque", "y", 1, 0) != 0) {
        return common::ErrnoToStatus(
            errno, absl::StrCat("layer entry \"", h.name, "\": set trusted.overlay.opaque"));
      }
      return absl::OkStatus();
    }
    if (absl::StartsWith(base, kMetaPrefix)) return absl::OkStatus();  // AUFS bookkeeping
    std::string victim = base.substr(kWhiteoutPrefix.size());
    if (victim.empty() || victim == "." || victim == "..") {
      return EntryError(h.name, "whiteout of an invalid name");
    }
    RETURN_IF_ERROR(Remove(pfd, victim, parent.empty() ? victim : parent + "/" + victim));
    if (mknodat(pfd, victim.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
      return common::ErrnoToStatus(errno,
                                   absl::StrCat("layer entry \"", h.name, "\": mknod whiteout"));
    }
    return absl::OkStatus();
  }

  ASSIGN_OR_RETURN(int pfd, OpenDir(parent, h.name));
  struct stat existing;
  bool exists = fstatat(pfd, base.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0;
  bool was_whiteout = exists && S_ISCHR(existing.st_mode) && existing.st_rdev == makedev(0, 0);

  if (h.type == TarHeader::kDirectory) {
    if (exists && !S_ISDIR(existing.st_mode)) {
      RETURN_IF_ERROR(Remove(pfd, base, rel));
      exists = false;
    }
    if (!exists && mkdirat(pfd, base.c_str(), 0700) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", h.name, "\": mkdir"));
    }
    if (was_whiteout) {
      // Deleted then recreated in one layer: the lower directory's content must stay hidden.
      int fd = openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) return common::ErrnoToStatus(errno, "open " + rel);
      int r = fsetxattr(fd, "trusted.overlay.opaque", "y", 1, 0);
      int e = errno;
      close(fd);
      if (r != 0) return common::ErrnoToStatus(e, "set trusted.overlay.opaque on " + rel);
    }
    if (fchownat(pfd, base.c_str(), static_cast<uid_t>(h.uid), static_cast<gid_t>(h.gid),
                 AT_SYMLINK_NOFOLLOW) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", h.name, "\": chown"));
    }
    if (!h.xattrs.empty()) {
      std::string path = absl::StrCat(dir_, "/", rel);
      for (const auto& [name, value] : h.xattrs) {
        if (!IsLayerXattr(name)) continue;
        if (lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
          return common::ErrnoToStatus(errno,
                                       absl::StrCat("layer entry \"", h.name, "\": setxattr"));
        }
      }
    }
    dirs_[rel] = DirMeta{h.mode, h.uid, h.gid, h.mtime};
    return absl::OkStatus();
  }

  if (exists) RETURN_IF_ERROR(Remove(pfd, base, rel));
  switch (h.type) {
    case TarHeader::kRegular: {
      file_fd_ =
          openat(pfd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (file_fd_ < 0)
        return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", h.name, "\": create"));
      file_entry_ = rel;
      file_header_ = h;
      disk_bytes_ += h.size;
      return absl::OkStatus();  // metadata in OnEntryEnd, after the content
    }
    case TarHeader::kHardLink: {
      ASSIGN_OR_RETURN(std::string target, CleanEntryName(h.linkname));
      if (target.empty()) return EntryError(h.name, "hard link to the layer root");
      auto [tparent, tbase] = SplitParent(target);
      // Resolve the target's directory without creating anything.
      int tfd = dup(root_fd_);
      if (tfd < 0) return common::ErrnoToStatus(errno, "dup");
      if (!tparent.empty()) {
        for (absl::string_view part : absl::StrSplit(tparent, '/')) {
          int next = openat(tfd, std::string(part).c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          close(tfd);
          if (next < 0) {
            return EntryError(h.name, absl::StrCat("hard link target \"", h.linkname,
                                                   "\" is not an earlier entry of this layer"));
          }
          tfd = next;
        }
      }
      int r = linkat(tfd, tbase.c_str(), pfd, base.c_str(), 0);
      int e = errno;
      close(tfd);
      if (r != 0) {
        if (e == ENOENT || e == EPERM) {
          return EntryError(h.name, absl::StrCat("hard link target \"", h.linkname,
                                                 "\" is not an earlier file of this layer"));
        }
        return common::ErrnoToStatus(e, absl::StrCat("layer entry \"", h.name, "\": link"));
      }
      return absl::OkStatus();  // a hard link shares its target's metadata
    }
    case TarHeader::kSymlink:
      if (symlinkat(h.linkname.c_str(), pfd, base.c_str()) != 0) {
        return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", h.name, "\": symlink"));
      }
      return ApplyMeta(pfd, base, h, rel, /*is_symlink=*/true);
    case TarHeader::kChar:
    case TarHeader::kBlock:
    case TarHeader::kFifo: {
      mode_t type = h.type == TarHeader::kChar    ? S_IFCHR
                    : h.type == TarHeader::kBlock ? S_IFBLK
                                                  : S_IFIFO;
      dev_t dev = makedev(h.dev_major, h.dev_minor);
      if (type == S_IFCHR && dev == makedev(0, 0)) {
        return EntryError(h.name, "a 0/0 character device cannot be stored (it means a whiteout)");
      }
      if (mknodat(pfd, base.c_str(), type | 0600, dev) != 0) {
        return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", h.name, "\": mknod"));
      }
      return ApplyMeta(pfd, base, h, rel, false);
    }
    case TarHeader::kDirectory:
      break;
  }
  return EntryError(h.name, "unsupported type");
}

absl::Status OverlayUnpacker::OnData(absl::string_view data) {
  if (file_fd_ < 0) return absl::OkStatus();
  while (!data.empty()) {
    ssize_t n = write(file_fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", file_entry_, "\": write"));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status OverlayUnpacker::OnEntryEnd() {
  if (file_fd_ < 0) return absl::OkStatus();
  int fd = file_fd_;
  file_fd_ = -1;
  const TarHeader& h = file_header_;
  absl::Status s;
  // chown before chmod: chown clears setuid/setgid bits.
  if (fchown(fd, static_cast<uid_t>(h.uid), static_cast<gid_t>(h.gid)) != 0) {
    s = common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", file_entry_, "\": chown"));
  } else if (fchmod(fd, h.mode & 07777) != 0) {
    s = common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", file_entry_, "\": chmod"));
  }
  for (const auto& [name, value] : h.xattrs) {
    if (!s.ok() || !IsLayerXattr(name)) continue;
    if (fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) != 0) {
      s = common::ErrnoToStatus(errno,
                                absl::StrCat("layer entry \"", file_entry_, "\": setxattr ", name));
    }
  }
  if (s.ok()) {
    struct timespec times[2] = {{h.mtime, 0}, {h.mtime, 0}};
    if (futimens(fd, times) != 0) {
      s = common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", file_entry_, "\": utimes"));
    }
  }
  if (close(fd) != 0 && s.ok()) {
    s = common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", file_entry_, "\": close"));
  }
  return s;
}

absl::Status OverlayUnpacker::Finish() {
  RETURN_IF_ERROR(Open());
  if (cached_fd_ >= 0) {
    close(cached_fd_);
    cached_fd_ = -1;
    cached_rel_.clear();
  }
  // Reverse order: "a/b" before "a", so setting a child's times never touches a finished parent.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    const std::string& rel = it->first;
    auto [parent, base] = SplitParent(rel);
    ASSIGN_OR_RETURN(int pfd, OpenDir(parent, rel));
    if (fchmodat(pfd, base.c_str(), it->second.mode & 07777, 0) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", rel, "\": chmod"));
    }
    struct timespec times[2] = {{it->second.mtime, 0}, {it->second.mtime, 0}};
    if (utimensat(pfd, base.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("layer entry \"", rel, "\": utimes"));
    }
  }
  return absl::OkStatus();
}

}  // namespace farm::worker::layer
