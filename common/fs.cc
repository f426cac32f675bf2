#include "common/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_util.h"

namespace farm::common {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::string out;
  char buf[1 << 16];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return ErrnoToStatus(e, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return out;
}

bool WriteFully(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

absl::StatusOr<int> CreateUnlinkedTempFile(const std::string& dir, absl::string_view what) {
  std::string base = dir;
  if (base.empty()) {
    const char* tmp = getenv("TMPDIR");
    base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
  }
  std::string path = absl::StrCat(base, "/farm-", what, "-XXXXXX");
  std::vector<char> buf(path.begin(), path.end());
  buf.push_back('\0');
  int fd = mkostemp(buf.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create a ", what, " file in ", base));
  unlink(buf.data());
  return fd;
}

absl::Status FdSink::Write(absl::string_view data) {
  if (!WriteFully(fd_, data.data(), data.size())) {
    return ErrnoToStatus(errno, absl::StrCat("write ", what_));
  }
  return absl::OkStatus();
}

namespace {

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoToStatus(errno, absl::StrCat("write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::Status WriteFileAtomic(const std::string& path, absl::string_view data, int mode, bool sync) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".", rand());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  absl::Status s = WriteAll(fd, data, tmp);
  if (s.ok() && sync && fsync(fd) != 0) s = ErrnoToStatus(errno, absl::StrCat("fsync ", tmp));
  if (close(fd) != 0 && s.ok()) s = ErrnoToStatus(errno, absl::StrCat("close ", tmp));
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  if (!sync) return absl::OkStatus();
  int dfd = open(DirName(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::Status MakeDirs(const std::string& path, int mode) {
  if (path.empty()) return absl::OkStatus();
  std::string cur;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (cur.empty() && path[0] == '/') cur = "/";
    if (part.empty()) continue;
    absl::StrAppend(&cur, cur.empty() || cur.back() == '/' ? "" : "/", part);
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoToStatus(errno, absl::StrCat("mkdir ", cur));
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return ErrnoToStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

namespace internal {

absl::StatusOr<int> OpenBeneathByWalk(int dirfd, absl::string_view rel, int flags, int mode) {
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(rel, '/', absl::SkipEmpty())) {
    if (p == ".") continue;
    if (p == "..") {
      return absl::InvalidArgumentError(absl::StrCat("open ", rel, ": \"..\" in the path"));
    }
    parts.emplace_back(p);
  }
  int cur = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (cur < 0) return ErrnoToStatus(errno, "dup");
  for (size_t i = 0; i < parts.size(); ++i) {
    bool last = i + 1 == parts.size();
    int next = last ? openat(cur, parts[i].c_str(), flags | O_NOFOLLOW | O_CLOEXEC, mode)
                    : openat(cur, parts[i].c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    if (next < 0 && !last && e == ENOTDIR) {
      // A symlink in the middle: O_DIRECTORY|O_NOFOLLOW gives ENOTDIR; say ELOOP, as openat2.
      struct stat st;
      if (fstatat(cur, parts[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        e = ELOOP;
      }
    }
    close(cur);
    if (next < 0) return ErrnoToStatus(e, absl::StrCat("open ", rel));
    cur = next;
  }
  if (parts.empty()) {
    int fd = openat(cur, ".", flags | O_CLOEXEC, mode);
    int e = errno;
    close(cur);
    if (fd < 0) return ErrnoToStatus(e, "open .");
    return fd;
  }
  return cur;
}

}  // namespace internal

absl::StatusOr<int> OpenBeneath(int dirfd, absl::string_view rel, int flags, int mode) {
  std::string path(rel.empty() ? "." : rel);
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_NOFOLLOW | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? static_cast<uint64_t>(mode) : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  long fd = syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof(how));
  if (fd >= 0) return static_cast<int>(fd);
  if (errno != ENOSYS) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  return internal::OpenBeneathByWalk(dirfd, rel, flags, mode);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.release();
  }
  return *this;
}

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RemoveAll(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("lstat ", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoToStatus(errno, absl::StrCat("unlink ", path));
    }
    return absl::OkStatus();
  }
  // Make sure we can descend and delete (a build may leave 0500 directories).
  chmod(path.c_str(), 0700);
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return ErrnoToStatus(errno, absl::StrCat("opendir ", path));
  std::vector<std::string> names;
  while (struct dirent* e = readdir(dir)) {
    absl::string_view n = e->d_name;
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  closedir(dir);
  for (const std::string& n : names) {
    absl::Status s = RemoveAll(absl::StrCat(path, "/", n));
    if (!s.ok()) return s;
  }
  if (rmdir(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoToStatus(errno, absl::StrCat("rmdir ", path));
  }
  return absl::OkStatus();
}

bool PathExists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string JoinPath(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  while (!a.empty() && a.back() == '/' && a.size() > 1) a.remove_suffix(1);
  while (!b.empty() && b.front() == '/') b.remove_prefix(1);
  if (a == "/") return absl::StrCat("/", b);
  return absl::StrCat(a, "/", b);
}

std::string CleanPath(absl::string_view path) {
  if (path.empty()) return ".";
  bool rooted = path[0] == '/';
  std::vector<absl::string_view> out;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!out.empty() && out.back() != "..") {
        out.pop_back();
      } else if (!rooted) {
        out.push_back(part);
      }
      continue;
    }
    out.push_back(part);
  }
  std::string joined = absl::StrJoin(out, "/");
  if (rooted) return absl::StrCat("/", joined);
  return joined.empty() ? "." : joined;
}

absl::StatusOr<TempDir> TempDir::Create(absl::string_view prefix) {
  const char* base = getenv("TEST_TMPDIR");
  if (base == nullptr || *base == '\0') base = getenv("TMPDIR");
  if (base == nullptr || *base == '\0') base = "/tmp";
  std::string templ = absl::StrCat(base, "/", prefix, ".XXXXXX");
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("mkdtemp ", templ));
  }
  return TempDir(std::string(buf.data()));
}

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) RemoveAll(path_).IgnoreError();
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

TempDir::~TempDir() {
  if (!path_.empty()) RemoveAll(path_).IgnoreError();
}

}  // namespace farm::common
