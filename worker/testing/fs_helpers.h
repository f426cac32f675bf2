// Small file-system helpers for worker tests: build trees (files, dirs, links, whiteouts,
// xattrs) and inspect them. Each returns a Status so tests can ASSERT_OK them.
#ifndef FARM_WORKER_TESTING_FS_HELPERS_H_
#define FARM_WORKER_TESTING_FS_HELPERS_H_

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_util.h"

namespace farm::worker::testing {

inline std::string Dirname(const std::string& p) {
  size_t s = p.rfind('/');
  return s == std::string::npos ? "." : p.substr(0, s);
}

inline absl::Status WriteFile(const std::string& path, const std::string& content,
                              int mode = 0644) {
  absl::Status s = common::MakeDirs(Dirname(path));
  if (!s.ok()) return s;
  s = common::WriteFileAtomic(path, content, mode);
  if (!s.ok()) return s;
  if (chmod(path.c_str(), mode) != 0) return common::ErrnoToStatus(errno, "chmod " + path);
  return absl::OkStatus();
}

inline absl::Status Symlink(const std::string& target, const std::string& path) {
  absl::Status s = common::MakeDirs(Dirname(path));
  if (!s.ok()) return s;
  if (symlink(target.c_str(), path.c_str()) != 0)
    return common::ErrnoToStatus(errno, "symlink " + path);
  return absl::OkStatus();
}

inline absl::Status Whiteout(const std::string& path) {
  absl::Status s = common::MakeDirs(Dirname(path));
  if (!s.ok()) return s;
  if (mknod(path.c_str(), S_IFCHR | 0, makedev(0, 0)) != 0) {
    return common::ErrnoToStatus(errno, "mknod " + path);
  }
  return absl::OkStatus();
}

inline absl::Status SetXattr(const std::string& path, const std::string& name,
                             const std::string& value) {
  if (lsetxattr(path.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("setxattr ", name, " ", path));
  }
  return absl::OkStatus();
}

inline std::string GetXattr(const std::string& path, const std::string& name) {
  char buf[4096];
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

inline absl::Status SetMtime(const std::string& path, int64_t mtime) {
  struct timespec t[2] = {{mtime, 0}, {mtime, 0}};
  if (utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW) != 0) {
    return common::ErrnoToStatus(errno, "utimensat " + path);
  }
  return absl::OkStatus();
}

inline bool Lstat(const std::string& path, struct stat* st) { return lstat(path.c_str(), st) == 0; }

inline bool IsWhiteout(const std::string& path) {
  struct stat st;
  return Lstat(path, &st) && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

// A security.capability value granting cap_net_raw (effective), VFS_CAP_REVISION_2.
inline std::string NetRawCapability() {
  return std::string(
      "\x01\x00\x00\x02"
      "\x00\x20\x00\x00"
      "\x00\x00\x00\x00"
      "\x00\x00\x00\x00"
      "\x00\x00\x00\x00",
      20);
}

// Every regular file under `dir` (recursively, not following symlinks or crossing into other
// mounts) whose content contains `needle`: proof that a secret never reached the disk.
inline std::vector<std::string> FilesContaining(const std::string& dir, const std::string& needle) {
  static thread_local std::vector<std::string>* found;
  static thread_local const std::string* wanted;
  std::vector<std::string> out;
  found = &out;
  wanted = &needle;
  nftw(
      dir.c_str(),
      [](const char* path, const struct stat* st, int type, struct FTW*) {
        if (type != FTW_F || !S_ISREG(st->st_mode)) return 0;
        auto content = common::ReadFile(path);
        if (content.ok() && content->find(*wanted) != std::string::npos) found->push_back(path);
        return 0;
      },
      64, FTW_PHYS | FTW_MOUNT);
  return out;
}

}  // namespace farm::worker::testing

#endif  // FARM_WORKER_TESTING_FS_HELPERS_H_
