#include "worker/layerstore/flatten.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/layer/diff.h"

namespace farm::worker::layerstore {

bool IsOverlayWhiteout(const std::string& path, const struct stat& st) {
  if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) return true;
  if (S_ISREG(st.st_mode) && st.st_size == 0) {
    return lgetxattr(path.c_str(), "trusted.overlay.whiteout", nullptr, 0) >= 0;
  }
  return false;
}

bool IsOverlayOpaque(const std::string& path) {
  char v[4];
  ssize_t n = lgetxattr(path.c_str(), "trusted.overlay.opaque", v, sizeof(v));
  return n == 1 && v[0] == 'y';
}

namespace {

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return common::ErrnoToStatus(errno, "opendir " + dir);
  std::vector<std::string> names;
  while (struct dirent* de = readdir(d)) {
    absl::string_view n = de->d_name;
    if (n != "." && n != "..") names.emplace_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status CopyXattrs(const std::string& from, const std::string& to) {
  char names[4096];
  ssize_t n = llistxattr(from.c_str(), names, sizeof(names));
  if (n < 0) return absl::OkStatus();
  for (ssize_t i = 0; i < n;) {
    std::string name(&names[i]);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (!layer::IsLayerXattr(name)) continue;
    char value[4096];
    ssize_t v = lgetxattr(from.c_str(), name.c_str(), value, sizeof(value));
    if (v < 0) continue;
    if (lsetxattr(to.c_str(), name.c_str(), value, static_cast<size_t>(v), 0) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("setxattr ", name, " ", to));
    }
  }
  return absl::OkStatus();
}

absl::Status CopyFile(const std::string& from, const std::string& to, const struct stat& st) {
  int in = open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0) return common::ErrnoToStatus(errno, "open " + from);
  int out = open(to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) {
    close(in);
    return common::ErrnoToStatus(errno, "create " + to);
  }
  absl::Status s;
  char buf[1 << 16];
  while (true) {
    ssize_t n = read(in, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = common::ErrnoToStatus(errno, "read " + from);
      break;
    }
    if (n == 0) break;
    if (write(out, buf, static_cast<size_t>(n)) != n) {
      s = common::ErrnoToStatus(errno, "write " + to);
      break;
    }
  }
  if (s.ok() && fchown(out, st.st_uid, st.st_gid) != 0)
    s = common::ErrnoToStatus(errno, "chown " + to);
  if (s.ok() && fchmod(out, st.st_mode & 07777) != 0)
    s = common::ErrnoToStatus(errno, "chmod " + to);
  struct timespec t[2] = {st.st_atim, st.st_mtim};
  if (s.ok() && futimens(out, t) != 0) s = common::ErrnoToStatus(errno, "utimes " + to);
  close(in);
  close(out);
  if (s.ok()) s = CopyXattrs(from, to);
  return s;
}

absl::Status SetMeta(const std::string& path, const struct stat& st, bool symlink) {
  if (lchown(path.c_str(), st.st_uid, st.st_gid) != 0)
    return common::ErrnoToStatus(errno, "chown " + path);
  if (!symlink && chmod(path.c_str(), st.st_mode & 07777) != 0) {
    return common::ErrnoToStatus(errno, "chmod " + path);
  }
  struct timespec t[2] = {st.st_atim, st.st_mtim};
  if (utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW) != 0) {
    return common::ErrnoToStatus(errno, "utimes " + path);
  }
  return absl::OkStatus();
}

class Merger {
 public:
  absl::Status Apply(const std::string& src, const std::string& dst) {
    ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(src));
    for (const std::string& name : names) {
      std::string s = src + "/" + name, d = dst + "/" + name;
      struct stat st, existing;
      if (lstat(s.c_str(), &st) != 0) return common::ErrnoToStatus(errno, "lstat " + s);
      bool exists = lstat(d.c_str(), &existing) == 0;
      if (IsOverlayWhiteout(s, st)) {
        if (exists) RETURN_IF_ERROR(common::RemoveAll(d));
        Forget(d, true);
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        if (exists && !S_ISDIR(existing.st_mode)) {
          RETURN_IF_ERROR(common::RemoveAll(d));
          Forget(d, true);
          exists = false;
        }
        if (!exists) {
          if (mkdir(d.c_str(), 0700) != 0) return common::ErrnoToStatus(errno, "mkdir " + d);
        } else if (IsOverlayOpaque(s)) {
          ASSIGN_OR_RETURN(std::vector<std::string> old, ListDir(d));
          for (const std::string& o : old) RETURN_IF_ERROR(common::RemoveAll(d + "/" + o));
          Forget(d, false);
        }
        dirs_[d] = {s, st};
        RETURN_IF_ERROR(Apply(s, d));
        ++entries_;
        continue;
      }
      if (exists) {
        RETURN_IF_ERROR(common::RemoveAll(d));
        Forget(d, true);
      }
      ++entries_;
      if (S_ISREG(st.st_mode)) {
        if (link(s.c_str(), d.c_str()) == 0) continue;
        if (errno != EXDEV && errno != EMLINK && errno != EPERM) {
          return common::ErrnoToStatus(errno, absl::StrCat("link ", s, " ", d));
        }
        RETURN_IF_ERROR(CopyFile(s, d, st));
      } else if (S_ISLNK(st.st_mode)) {
        std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
        ssize_t n = readlink(s.c_str(), &target[0], target.size());
        if (n < 0) return common::ErrnoToStatus(errno, "readlink " + s);
        target.resize(static_cast<size_t>(n));
        if (symlink(target.c_str(), d.c_str()) != 0)
          return common::ErrnoToStatus(errno, "symlink " + d);
        RETURN_IF_ERROR(SetMeta(d, st, true));
      } else {
        if (mknod(d.c_str(), st.st_mode & S_IFMT, st.st_rdev) != 0) {
          return common::ErrnoToStatus(errno, "mknod " + d);
        }
        RETURN_IF_ERROR(SetMeta(d, st, false));
      }
    }
    return absl::OkStatus();
  }

  // Directory metadata last, deepest first, from the topmost layer that had each directory.
  absl::Status Finish() {
    for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
      RETURN_IF_ERROR(SetMeta(it->first, it->second.second, false));
      RETURN_IF_ERROR(CopyXattrs(it->second.first, it->first));
    }
    return absl::OkStatus();
  }

  int64_t entries() const { return entries_; }

 private:
  // Drops recorded directories below `d` (and `d` itself if `self`) after they were removed.
  void Forget(const std::string& d, bool self) {
    if (self) dirs_.erase(d);
    std::string prefix = d + "/";
    auto it = dirs_.lower_bound(prefix);
    while (it != dirs_.end() && it->first.compare(0, prefix.size(), prefix) == 0) {
      it = dirs_.erase(it);
    }
  }

  std::map<std::string, std::pair<std::string, struct stat>> dirs_;
  int64_t entries_ = 0;
};

}  // namespace

absl::StatusOr<int64_t> MergeLayers(const std::vector<std::string>& roots,
                                    const std::string& dest) {
  Merger m;
  for (const std::string& root : roots) {
    RETURN_IF_ERROR(common::Annotate(m.Apply(root, dest), "flattening layers"));
  }
  RETURN_IF_ERROR(m.Finish());
  return m.entries();
}

}  // namespace farm::worker::layerstore
