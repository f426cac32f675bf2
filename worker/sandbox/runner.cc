// The sandbox runner and the init (pid 1) of the sandbox's pid namespace.
//
//   worker ──posix_spawn──▶ runner (host namespaces: cgroups, timeout, result)
//                              └─clone(NEW{NS,PID,UTS,IPC[,NET]})─▶ init (pid 1: mounts,
//                                  pivot_root, user)  └─fork─▶ command (caps, setuid, exec)
//
// The runner is single-threaded, so the raw clone() and fork() below are safe.
//
// Rootless (SandboxRequest.userns; worker/sandbox/rootless.h explains the choices): init is
// cloned into a new user namespace as well, so every other namespace belongs to it (root in
// the step has its capabilities over its own network, hostname and mounts, none on the host).
// The runner writes the id maps, builds the root overlay and the RUN --mount sources as
// detached idmapped mounts and sends them to init, which attaches them instead of mounting.
#include "worker/sandbox/runner.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/sandbox.pb.h"
#include "worker/sandbox/cgroups.h"
#include "worker/sandbox/rootless.h"
#include "worker/sandbox/seccomp_profile.h"
#include "worker/sandbox/step_net.h"
#include "worker/user/user_db.h"

namespace farm::worker::sandbox {
namespace internal {
namespace {

using farm::v1::SandboxMount;
using farm::v1::SandboxRequest;
using farm::v1::SandboxResult;
using farm::v1::SandboxStub;

constexpr char kDefaultPath[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

int64_t NowMicros() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

absl::Status Errno(absl::string_view what) { return common::ErrnoToStatus(errno, what); }

// Length-prefixed messages on the init -> runner report pipe.
void SendReport(int fd, const SandboxResult& partial) {
  std::string bytes = partial.SerializeAsString();
  uint32_t len = static_cast<uint32_t>(bytes.size());
  common::WriteFully(fd, &len, sizeof(len));
  common::WriteFully(fd, bytes.data(), bytes.size());
}

void CloseFrom(int first) {
  if (syscall(SYS_close_range, first, ~0U, 0) == 0) return;
  for (int fd = first; fd < 1024; ++fd) close(fd);
}

// ---------------------------------------------------------------------------------------
// Paths inside the root, created on demand and reported as stubs.

// A mount target inside the root: an O_PATH descriptor of it, held until the mount is made
// (mount on at(): the kernel mounts on exactly that file, whatever became of the path since),
// and its host path for the reader.
struct Target {
  common::UniqueFd fd;
  std::string host;
  std::string at() const { return absl::StrCat("/proc/self/fd/", fd.get()); }
};

class RootFs {
 public:
  explicit RootFs(std::string root) : root_(std::move(root)) {}

  // Opens the root (once the overlay is mounted on it).
  absl::Status Open() {
    int fd = open(root_.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Errno("open " + root_);
    root_fd_ = common::UniqueFd(fd);
    return absl::OkStatus();
  }

  // Resolves `target` (absolute, in the container) inside the root, following symlinks the way
  // the kernel would after pivot_root, and creates what is missing (directories, and the last
  // component as a directory or an empty file). Every step is an openat of one name in a
  // directory already open, without following symlinks (they are read and resolved here,
  // inside the root): a directory on the way that is swapped for a symlink meanwhile (a cache
  // mount shared with a running step) cannot lead the mount out of the root.
  absl::StatusOr<Target> Prepare(absl::string_view target, bool is_dir) {
    std::vector<std::string> remaining = absl::StrSplit(target, '/', absl::SkipEmpty());
    std::reverse(remaining.begin(), remaining.end());
    std::vector<std::pair<std::string, common::UniqueFd>> chain;  // resolved, all directories
    auto dir = [&]() { return chain.empty() ? root_fd_.get() : chain.back().second.get(); };
    int links = 0;
    while (!remaining.empty()) {
      std::string part = std::move(remaining.back());
      remaining.pop_back();
      if (part == ".") continue;
      if (part == "..") {
        if (!chain.empty()) chain.pop_back();
        continue;
      }
      int fd = openat(dir(), part.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0) {
        if (errno != ENOENT) return Errno("open " + Host(chain, part));
        remaining.push_back(part);
        return Create(target, std::move(chain), std::move(remaining), is_dir);
      }
      common::UniqueFd opened(fd);
      struct stat st;
      if (fstat(fd, &st) != 0) return Errno("stat " + Host(chain, part));
      bool last = remaining.empty();
      if (S_ISLNK(st.st_mode)) {
        if (++links > 40) {
          return absl::FailedPreconditionError(
              absl::StrCat("mount target ", target, ": too many levels of symbolic links"));
        }
        char buf[4096];
        ssize_t n = readlinkat(fd, "", buf, sizeof(buf) - 1);
        if (n < 0) return Errno("readlink " + Host(chain, part));
        std::string link(buf, static_cast<size_t>(n));
        if (!link.empty() && link[0] == '/') chain.clear();
        std::vector<std::string> t = absl::StrSplit(link, '/', absl::SkipEmpty());
        for (auto it = t.rbegin(); it != t.rend(); ++it) remaining.push_back(*it);
        continue;
      }
      if (!last && !S_ISDIR(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrCat("mount target ", target, ": ", Rel(chain, part), " is not a directory"));
      }
      chain.emplace_back(part, std::move(opened));
    }
    return Finish(std::move(chain));
  }

  const google::protobuf::RepeatedPtrField<SandboxStub>& stubs() const { return stubs_; }
  const std::string& root() const { return root_; }

 private:
  using Chain = std::vector<std::pair<std::string, common::UniqueFd>>;

  static std::string Rel(const Chain& chain, const std::string& more = "") {
    std::string out;
    for (const auto& [name, fd] : chain) absl::StrAppend(&out, out.empty() ? "" : "/", name);
    if (!more.empty()) absl::StrAppend(&out, out.empty() ? "" : "/", more);
    return out;
  }
  std::string Host(const Chain& chain, const std::string& more = "") const {
    std::string rel = Rel(chain, more);
    return rel.empty() ? root_ : absl::StrCat(root_, "/", rel);
  }

  absl::StatusOr<Target> Finish(Chain chain) {
    Target t;
    int fd = fcntl(chain.empty() ? root_fd_.get() : chain.back().second.get(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return Errno("dup");
    t.fd = common::UniqueFd(fd);
    t.host = Host(chain);
    return t;
  }

  // `existing`: resolved components that exist (directories); `remaining`: what to create
  // (stack order: back() first).
  absl::StatusOr<Target> Create(absl::string_view target, Chain chain,
                                std::vector<std::string> remaining, bool is_dir) {
    // Overlayfs copies every existing ancestor up when something is created below it: remember
    // how each looked before the first change.
    for (size_t i = 0; i < chain.size(); ++i) {
      std::string rel;
      for (size_t j = 0; j <= i; ++j) absl::StrAppend(&rel, j == 0 ? "" : "/", chain[j].first);
      if (std::find(recorded_.begin(), recorded_.end(), rel) != recorded_.end()) continue;
      struct stat st;
      if (fstat(chain[i].second.get(), &st) != 0) return Errno("stat " + rel);
      recorded_.push_back(rel);
      SandboxStub* s = stubs_.Add();
      s->set_path(rel);
      s->set_created(false);
      s->set_is_dir(true);
      s->set_mode(st.st_mode & 07777);
      s->set_uid(st.st_uid);
      s->set_gid(st.st_gid);
      s->set_mtime_sec(st.st_mtim.tv_sec);
      s->set_mtime_nsec(st.st_mtim.tv_nsec);
    }
    while (!remaining.empty()) {
      std::string part = std::move(remaining.back());
      remaining.pop_back();
      if (part == "." || part == "..") {
        return absl::InvalidArgumentError(absl::StrCat("mount target ", target, " is not clean"));
      }
      bool last = remaining.empty();
      int dir = chain.empty() ? root_fd_.get() : chain.back().second.get();
      std::string p = Host(chain, part);
      if (last && !is_dir) {
        int fd =
            openat(dir, part.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) return Errno("create mount point " + p);
        close(fd);
      } else if (mkdirat(dir, part.c_str(), 0755) != 0) {
        return Errno("create mount point " + p);
      }
      // What was just made, not whatever may have replaced it: no symlink is followed, and a
      // directory must still be one.
      int fd = openat(dir, part.c_str(),
                      O_PATH | O_NOFOLLOW | O_CLOEXEC | (last && !is_dir ? 0 : O_DIRECTORY));
      if (fd < 0) return Errno("open mount point " + p);
      common::UniqueFd made(fd);
      struct stat st;
      if (fstat(fd, &st) != 0 || S_ISLNK(st.st_mode)) {
        return absl::FailedPreconditionError("mount point " + p + " was replaced");
      }
      chain.emplace_back(part, std::move(made));
      SandboxStub* s = stubs_.Add();
      s->set_path(Rel(chain));
      s->set_created(true);
      s->set_is_dir(!last || is_dir);
    }
    return Finish(std::move(chain));
  }

  std::string root_;
  common::UniqueFd root_fd_;
  std::vector<std::string> recorded_;
  google::protobuf::RepeatedPtrField<SandboxStub> stubs_;
};

absl::Status Mount(const std::string& source, const std::string& target, const char* fstype,
                   unsigned long flags, const std::string& data) {
  if (mount(source.c_str(), target.c_str(), fstype, flags, data.empty() ? nullptr : data.c_str()) !=
      0) {
    return Errno(
        absl::StrCat("mount ", fstype != nullptr ? fstype : "bind", " ", source, " on ", target));
  }
  return absl::OkStatus();
}

// Bind-mounts `source` at `target`, read-only if asked, and `nodev` unless `allow_devices`:
// a device node reachable through a bind mount (a cache directory, the build context) can
// never be opened from inside.
absl::Status BindMount(const std::string& source, const std::string& target, bool readonly,
                       bool allow_devices = false) {
  RETURN_IF_ERROR(Mount(source, target, nullptr, MS_BIND | MS_REC, ""));
  unsigned long extra = (readonly ? MS_RDONLY : 0) | (allow_devices ? 0 : MS_NODEV);
  if (extra == 0) return absl::OkStatus();
  // Keep the flags the kernel locked on the source mount (nosuid, nodev, noexec).
  struct statvfs sv;
  if (statvfs(target.c_str(), &sv) == 0) {
    if (sv.f_flag & ST_NOSUID) extra |= MS_NOSUID;
    if (sv.f_flag & ST_NODEV) extra |= MS_NODEV;
    if (sv.f_flag & ST_NOEXEC) extra |= MS_NOEXEC;
    if (sv.f_flag & ST_RDONLY) extra |= MS_RDONLY;
  }
  return Mount("", target, nullptr, MS_REMOUNT | MS_BIND | extra, "");
}

// Attaches the detached mount `tree` (open_tree/fsmount) at the prepared target, read-only
// and/or nodev as asked (`what` names it in errors).
absl::Status AttachAt(int tree, const std::string& what, const Target& t, bool readonly,
                      bool allow_devices = false) {
  struct mount_attr attr = {};
  attr.attr_set = (readonly ? MOUNT_ATTR_RDONLY : 0) | (allow_devices ? 0 : MOUNT_ATTR_NODEV);
  if (attr.attr_set != 0 &&
      mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) != 0) {
    return Errno("mount_setattr " + what);
  }
  if (move_mount(tree, "", t.fd.get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) !=
      0) {
    return Errno(absl::StrCat("mount bind ", what, " on ", t.host));
  }
  return absl::OkStatus();
}

// BindMount onto a prepared target: the new mount API (open_tree, mount_setattr, move_mount;
// Linux 5.12+) attaches the clone of `source`, already read-only/nodev, to exactly the file
// `t.fd` is, with no path looked up again. Older kernels: bind on the descriptor's path, then
// remount by the host path (the flags cannot be changed through the descriptor).
absl::Status BindMountAt(const std::string& source, const Target& t, bool readonly,
                         bool allow_devices = false) {
  int tree =
      open_tree(AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tree < 0 && errno == ENOSYS) {
    RETURN_IF_ERROR(Mount(source, t.at(), nullptr, MS_BIND | MS_REC, ""));
    if (!readonly && allow_devices) return absl::OkStatus();
    // Re-bind over the host path to change flags (BindMount keeps the locked ones).
    return BindMount(t.host, t.host, readonly, allow_devices);
  }
  if (tree < 0) return Errno("open_tree " + source);
  common::UniqueFd tree_fd(tree);
  return AttachAt(tree, source, t, readonly, allow_devices);
}

// Mounts an overlay of `lowers` (relative to the current directory) at `target`; read-only
// without an upper directory (a single lower directory then needs a second, empty one).
absl::Status MountOverlayAt(const std::vector<std::string>& lowers, const std::string& upper,
                            const std::string& work, const std::string& target,
                            const std::string& empty_dir, bool allow_devices) {
  std::vector<std::string> l = lowers;
  if (upper.empty() && l.size() == 1) l.push_back(empty_dir);
  std::string base = absl::StrCat("lowerdir=", absl::StrJoin(l, ":"));
  if (!upper.empty()) absl::StrAppend(&base, ",upperdir=", upper, ",workdir=", work);
  // Prefer: no index/redirects/metacopy (an upperdir must hold whole files and plain
  // directories to become a layer), and volatile (no syncfs: the upperdir is throwaway until
  // archived). Older kernels lack some options: fall back.
  const char* extras[] = {",index=off,redirect_dir=off,metacopy=off,volatile",
                          ",index=off,redirect_dir=off,metacopy=off", ",redirect_dir=off", ""};
  int last_errno = 0;
  for (const char* extra : extras) {
    std::string opts = base + extra;
    if (upper.empty() && absl::StrContains(opts, "volatile")) continue;
    // nodev: device nodes in the layers (unpacked from tars, made by mknod in an earlier
    // step) are kept in the layer but can never be opened through this mount.
    unsigned long flags = (upper.empty() ? MS_RDONLY : 0) | (allow_devices ? 0 : MS_NODEV);
    if (mount("overlay", target.c_str(), "overlay", flags, opts.c_str()) == 0) {
      return absl::OkStatus();
    }
    last_errno = errno;
    if (errno != EINVAL) break;
  }
  return common::ErrnoToStatus(
      last_errno, absl::StrCat("mounting an overlay of ", lowers.size(), " layers on ", target));
}

absl::Status MountOverlay(const SandboxRequest& req) {
  if (chdir(req.layer_dir().c_str()) != 0) return Errno("chdir " + req.layer_dir());
  return MountOverlayAt({req.lower_dirs().begin(), req.lower_dirs().end()}, req.upper_dir(),
                        req.work_dir(), req.rootfs_dir(), "empty", req.insecure());
}

// /dev: a tmpfs with the standard nodes. The tmpfs is `nodev`, so a node a step creates
// there (mknod) cannot be opened; the standard ones are the host's own nodes bind-mounted
// read-only on empty files (a device node on a read-only mount still reads and writes, but
// its owner and mode cannot be changed, so a step cannot chmod the host's /dev/null).
// `allow_devices` (insecure): a plain tmpfs where mknod'ed nodes work, as in Docker.
absl::Status MakeDev(const std::string& at, const std::string& dev, bool allow_devices) {
  RETURN_IF_ERROR(Mount("tmpfs", at, "tmpfs",
                        MS_NOSUID | MS_STRICTATIME | (allow_devices ? 0 : MS_NODEV),
                        "mode=755,size=65536k"));
  struct Node {
    const char* name;
    unsigned major, minor;
  };
  for (Node n : {Node{"null", 1, 3}, Node{"zero", 1, 5}, Node{"full", 1, 7}, Node{"random", 1, 8},
                 Node{"urandom", 1, 9}, Node{"tty", 5, 0}}) {
    std::string path = dev + "/" + n.name;
    if (allow_devices && mknod(path.c_str(), S_IFCHR | 0666, makedev(n.major, n.minor)) == 0) {
      chmod(path.c_str(), 0666);
      continue;
    }
    std::string host = std::string("/dev/") + n.name;
    struct stat st;
    if (stat(host.c_str(), &st) != 0 || !S_ISCHR(st.st_mode) ||
        st.st_rdev != makedev(n.major, n.minor)) {
      return absl::FailedPreconditionError(
          absl::StrCat("the host's ", host, " is not the character device ", n.major, ":", n.minor,
                       " the sandbox binds at /dev/", n.name));
    }
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) return Errno("create " + path);
    close(fd);
    RETURN_IF_ERROR(Mount(host, path, nullptr, MS_BIND, ""));
    RETURN_IF_ERROR(
        Mount("", path, nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, ""));
  }
  std::string pts = dev + "/pts";
  if (mkdir(pts.c_str(), 0755) != 0) return Errno("mkdir " + pts);
  RETURN_IF_ERROR(Mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
                        "newinstance,ptmxmode=0666,mode=0620,gid=5"));
  if (symlink("pts/ptmx", (dev + "/ptmx").c_str()) != 0) return Errno("symlink /dev/ptmx");
  std::string shm = dev + "/shm";
  if (mkdir(shm.c_str(), 01777) != 0) return Errno("mkdir " + shm);
  RETURN_IF_ERROR(
      Mount("shm", shm, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k"));
  std::string mq = dev + "/mqueue";
  if (mkdir(mq.c_str(), 0755) == 0) {
    // Optional (needs CONFIG_POSIX_MQUEUE); the ipc namespace makes it private.
    mount("mqueue", mq.c_str(), "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  }
  for (auto [name, target] : {std::pair<const char*, const char*>{"fd", "/proc/self/fd"},
                              {"stdin", "/proc/self/fd/0"},
                              {"stdout", "/proc/self/fd/1"},
                              {"stderr", "/proc/self/fd/2"}}) {
    if (symlink(target, (dev + "/" + name).c_str()) != 0)
      return Errno(absl::StrCat("symlink /dev/", name));
  }
  return absl::OkStatus();
}

// Docker's default masks: kernel interfaces a build has no business reading or writing.
void MaskPaths(const std::string& root) {
  for (const char* p :
       {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        "/sys/devices/virtual/powercap"}) {
    std::string path = root + p;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      mount("tmpfs", path.c_str(), "tmpfs", MS_RDONLY, nullptr);
    } else {
      mount((root + "/dev/null").c_str(), path.c_str(), nullptr, MS_BIND, nullptr);
    }
  }
  for (const char* p : {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}) {
    std::string path = root + p;
    if (access(path.c_str(), F_OK) != 0) continue;
    BindMount(path, path, true).IgnoreError();
  }
}

absl::Status BringUpLoopback() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Errno("socket");
  struct ifreq ifr;
  std::memset(&ifr, 0, sizeof(ifr));
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  absl::Status s;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    s = Errno("SIOCGIFFLAGS lo");
  } else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) s = Errno("bringing up lo");
  }
  close(fd);
  return s;
}

// A FILE mount: the content goes into a tmpfs that exists only in this mount namespace (a
// secret never reaches the host's disk), then is bind-mounted read-only at the target.
absl::Status MountFile(const SandboxMount& m, const std::string& source, RootFs* fs) {
  if (source.empty()) return absl::InvalidArgumentError("file mount without a source");
  size_t pages = (m.content().size() + 4095) / 4096 + 1;
  RETURN_IF_ERROR(Mount("tmpfs", source, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                        absl::StrCat("mode=700,size=", pages * 4096)));
  std::string file = source + "/file";
  int fd = open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("create " + file);
  bool written = common::WriteFully(fd, m.content().data(), m.content().size());
  int e = errno;
  absl::Status s;
  if (!written) {
    s = common::ErrnoToStatus(e, "write " + file);
  } else if (fchown(fd, m.file_uid(), m.file_gid()) != 0) {
    s = Errno("chown " + file);
  } else if (fchmod(fd, m.file_mode() != 0 ? m.file_mode() : 0400) != 0) {
    s = Errno("chmod " + file);
  }
  close(fd);
  RETURN_IF_ERROR(s);
  ASSIGN_OR_RETURN(Target t, fs->Prepare(m.target(), false));
  return BindMountAt(file, t, true);
}

// Rootless: `sources` are the runner's detached mounts (rootless.h), and host paths below the
// run directory (init's working directory) are reached relative to it.
absl::Status SetupRoot(const SandboxRequest& req, RootFs* fs, MountSources* sources) {
  const bool rootless = req.has_userns();
  auto source_of = [&](int slot) { return sources->count(slot) ? (*sources)[slot].get() : -1; };
  // Nothing we mount may propagate back to the host.
  RETURN_IF_ERROR(Mount("", "/", nullptr, MS_REC | MS_PRIVATE, ""));
  if (!rootless) {
    RETURN_IF_ERROR(MountOverlay(req));
  } else if (source_of(kRootSlot) < 0 ||
             move_mount(source_of(kRootSlot), "", AT_FDCWD, fs->root().c_str(),
                        MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    return Errno("attaching the idmapped root overlay at " + req.rootfs_dir());
  }
  RETURN_IF_ERROR(fs->Open());
  const std::string& root = fs->root();

  ASSIGN_OR_RETURN(Target proc, fs->Prepare("/proc", true));
  RETURN_IF_ERROR(Mount("proc", proc.at(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, ""));
  ASSIGN_OR_RETURN(Target dev, fs->Prepare("/dev", true));
  // (The tmpfs /dev and what MakeDev makes in it are new: nothing else can write there.)
  RETURN_IF_ERROR(MakeDev(dev.at(), dev.host, req.insecure()));
  if (req.tty()) {
    // /dev/console is the run's terminal (as in runc), so ttyname() finds a name for it: its
    // pts lives in the host's devpts, not in the sandbox's own.
    // (Bound by its path: the descriptor's mount belongs to the caller's mount namespace, and
    // a bind source must be in ours; the same device is checked.)
    std::string console = dev.host + "/console";
    int fd = open(console.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Errno("create " + console);
    close(fd);
    char name[256];
    ssize_t n = readlink("/proc/self/fd/0", name, sizeof(name) - 1);
    struct stat want, got;
    if (n <= 0 || fstat(0, &want) != 0 || !S_ISCHR(want.st_mode)) {
      return absl::FailedPreconditionError("tty: the runner's stdin is not a terminal");
    }
    name[n] = '\0';
    if (stat(name, &got) != 0 || got.st_rdev != want.st_rdev) {
      return absl::FailedPreconditionError(
          absl::StrCat("tty: ", name, " is not the run's terminal"));
    }
    RETURN_IF_ERROR(Mount(name, console, nullptr, MS_BIND, ""));
  }
  ASSIGN_OR_RETURN(Target sys, fs->Prepare("/sys", true));
  unsigned long sys_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY;
  if (mount("sysfs", sys.at().c_str(), "sysfs", sys_flags, nullptr) != 0) {
    RETURN_IF_ERROR(BindMountAt("/sys", sys, true));
  }
  for (auto [host, target, slot] : {std::tuple<std::string, const char*, int>{
                                        req.resolv_conf(), "/etc/resolv.conf", kResolvConfSlot},
                                    {req.hosts(), "/etc/hosts", kHostsSlot}}) {
    if (host.empty()) continue;
    ASSIGN_OR_RETURN(Target t, fs->Prepare(target, false));
    if (rootless) {
      RETURN_IF_ERROR(AttachAt(source_of(slot), host, t, true));
    } else {
      RETURN_IF_ERROR(BindMountAt(host, t, true));
    }
  }

  // The request's mounts, parents before children.
  std::vector<int> order(req.mounts_size());
  for (int i = 0; i < req.mounts_size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    const std::string& ta = req.mounts(a).target();
    const std::string& tb = req.mounts(b).target();
    return std::count(ta.begin(), ta.end(), '/') < std::count(tb.begin(), tb.end(), '/');
  });
  for (int index : order) {
    const SandboxMount* m = &req.mounts(index);
    const int slot = kFirstMountSlot + index;
    if (m->target().empty() || m->target()[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("mount target \"", m->target(), "\" is not absolute"));
    }
    if (m->kind() == SandboxMount::TMPFS) {
      ASSIGN_OR_RETURN(Target t, fs->Prepare(m->target(), true));
      std::string data = absl::StrFormat("mode=%o", m->tmpfs_mode() != 0 ? m->tmpfs_mode() : 01777);
      if (m->tmpfs_size_bytes() > 0) absl::StrAppend(&data, ",size=", m->tmpfs_size_bytes());
      RETURN_IF_ERROR(Mount("tmpfs", t.at(), "tmpfs", MS_NOSUID | MS_NODEV, data));
      continue;
    }
    if (m->kind() == SandboxMount::FILE) {
      RETURN_IF_ERROR(
          common::Annotate(MountFile(*m, rootless ? LocalPath(req, m->source()) : m->source(), fs),
                           absl::StrCat("mount at ", m->target())));
      continue;
    }
    if (rootless && m->kind() == SandboxMount::BIND) {
      // The runner's idmapped clone of the source.
      struct stat st;
      if (source_of(slot) < 0 || fstat(source_of(slot), &st) != 0) {
        return Errno("mount source " + m->source());
      }
      ASSIGN_OR_RETURN(Target t, fs->Prepare(m->target(), S_ISDIR(st.st_mode)));
      RETURN_IF_ERROR(common::Annotate(AttachAt(source_of(slot), m->source(), t, m->readonly()),
                                       absl::StrCat("mount at ", m->target())));
      continue;
    }
    std::string source = m->source();
    if (rootless && m->kind() == SandboxMount::OVERLAY) {
      // The runner's overlay, attached on its mount point so its subpath can be bound.
      source = LocalPath(req, m->source());
      if (source_of(slot) < 0 ||
          move_mount(source_of(slot), "", AT_FDCWD, source.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0) {
        return Errno(absl::StrCat("mount at ", m->target(), ": attaching the overlay"));
      }
      if (!m->subpath().empty()) source = absl::StrCat(source, "/", m->subpath());
    } else if (m->kind() == SandboxMount::OVERLAY) {
      // Still in layer_dir (MountOverlay chdir'ed there): the lowerdirs are relative to it.
      RETURN_IF_ERROR(common::Annotate(
          MountOverlayAt({m->lower_dirs().begin(), m->lower_dirs().end()}, m->upper_dir(),
                         m->work_dir(), m->source(), "empty", false),
          absl::StrCat("mount at ", m->target())));
      if (!m->subpath().empty()) source = absl::StrCat(m->source(), "/", m->subpath());
    }
    struct stat st;
    if (stat(source.c_str(), &st) != 0) return Errno("mount source " + source);
    ASSIGN_OR_RETURN(Target t, fs->Prepare(m->target(), S_ISDIR(st.st_mode)));
    RETURN_IF_ERROR(common::Annotate(BindMountAt(source, t, m->readonly()),
                                     absl::StrCat("mount at ", m->target())));
  }
  if (!req.insecure()) MaskPaths(root);

  std::string hostname = req.hostname().empty() ? "farm" : req.hostname();
  if (sethostname(hostname.data(), hostname.size()) != 0) return Errno("sethostname");
  if (req.network() != SandboxRequest::HOST) RETURN_IF_ERROR(BringUpLoopback());

  // pivot_root(".", ".") stacks the old root on the new one; detaching it leaves only the new.
  if (chdir(root.c_str()) != 0) return Errno("chdir " + root);
  if (syscall(SYS_pivot_root, ".", ".") != 0) return Errno("pivot_root " + root);
  if (umount2(".", MNT_DETACH) != 0) return Errno("detaching the old root");
  if (chdir("/") != 0) return Errno("chdir /");
  return absl::OkStatus();
}

std::optional<std::string> ReadOptional(const char* path) {
  auto text = common::ReadFile(path);
  if (!text.ok()) return std::nullopt;
  return *text;
}

// ---------------------------------------------------------------------------------------
// The command.

// Docker's default capability set for containers.
constexpr int kDefaultCaps[] = {CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
                                CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
                                CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
                                CAP_KILL,    CAP_AUDIT_WRITE};

int LastCap() {
  auto text = common::ReadFile("/proc/sys/kernel/cap_last_cap");
  int n = 0;
  if (text.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &n)) return n;
  return CAP_LAST_CAP;
}

bool InDefaultSet(int cap) {
  return std::find(std::begin(kDefaultCaps), std::end(kDefaultCaps), cap) != std::end(kDefaultCaps);
}

// Drops every capability outside Docker's default set from the bounding set, and (for root)
// from the effective/permitted/inheritable sets.
absl::Status DropCapabilities(int last_cap, bool root) {
  for (int cap = 0; cap <= last_cap; ++cap) {
    if (!InDefaultSet(cap) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) {
      return Errno(absl::StrCat("dropping capability ", cap));
    }
  }
  if (!root) return absl::OkStatus();
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  std::memset(data, 0, sizeof(data));
  for (int cap : kDefaultCaps) {
    data[cap / 32].effective |= 1u << (cap % 32);
    data[cap / 32].permitted |= 1u << (cap % 32);
    data[cap / 32].inheritable |= 1u << (cap % 32);
  }
  if (syscall(SYS_capset, &header, data) != 0) return Errno("capset");
  return absl::OkStatus();
}

std::string LookPath(const std::string& file, const std::vector<std::string>& env) {
  if (file.find('/') != std::string::npos) return file;
  std::string path = kDefaultPath;
  for (const std::string& e : env) {
    if (absl::StartsWith(e, "PATH=")) path = e.substr(5);
  }
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    std::string candidate = absl::StrCat(dir.empty() ? "." : dir, "/", file);
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

[[noreturn]] void Fail(const std::string& message, int code) {
  std::string line = "farm: " + message + "\n";
  common::WriteFully(2, line.data(), line.size());
  _exit(code);
}

// The default profile compiled for the default capabilities.
absl::StatusOr<std::vector<sock_filter>> CompileStepFilter() {
  ASSIGN_OR_RETURN(const SeccompProfile* profile, DefaultSeccompProfile());
  SeccompTarget target;
  target.caps.assign(std::begin(kDefaultCaps), std::end(kDefaultCaps));
  absl::StatusOr<std::vector<sock_filter>> filter = CompileSeccomp(*profile, target);
  if (!filter.ok()) return common::Annotate(filter.status(), "the seccomp profile");
  return filter;
}

// The step's seccomp filter: precompiled by the spawning process (SandboxRequest.seccomp_filter)
// or compiled here. Empty for `insecure` (no filter, as BuildKit's insecure mode).
absl::StatusOr<std::vector<sock_filter>> StepSeccompFilter(const SandboxRequest& req) {
  if (req.insecure()) return std::vector<sock_filter>();
  const std::string& bytes = req.seccomp_filter();
  if (bytes.empty()) return CompileStepFilter();
  size_t n = bytes.size() / sizeof(sock_filter);
  if (bytes.size() % sizeof(sock_filter) != 0 || n > BPF_MAXINSNS) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the precompiled seccomp filter is not a BPF program (", bytes.size(), " bytes)"));
  }
  std::vector<sock_filter> filter(n);
  memcpy(filter.data(), bytes.data(), bytes.size());
  return filter;
}

// In the forked child of init: become the user and exec the command. Never returns.
//
// The order matters. The seccomp filter is installed while the process still has
// CAP_SYS_ADMIN, before the capabilities are dropped: installing it otherwise needs
// no_new_privs, and no_new_privs would stop setuid binaries (su, ping on some images) from
// working inside RUN the way they do in Docker (which sets it only with
// --security-opt no-new-privileges). Everything after the filter (capset, setuid, chdir,
// execve) is allowed by it.
[[noreturn]] void ExecCommand(const SandboxRequest& req, const user::ResolvedUser& u, int last_cap,
                              const std::vector<sock_filter>& filter) {
  // A session of its own, always: the caller's terminal (if any) is not the command's
  // controlling terminal, so the command cannot push input into it (TIOCSTI) or signal its
  // jobs. With `tty`, the run's own pseudo-terminal (stdin) is.
  setsid();
  if (req.tty() && ioctl(0, TIOCSCTTY, 0) != 0) {
    Fail("making the pseudo-terminal the controlling terminal: " + std::string(strerror(errno)),
         126);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  CloseFrom(3);

  std::vector<std::string> env(req.env().begin(), req.env().end());
  auto has = [&](absl::string_view key) {
    return std::any_of(env.begin(), env.end(), [&](const std::string& e) {
      return absl::StartsWith(e, absl::StrCat(key, "="));
    });
  };
  if (!has("PATH")) env.push_back(absl::StrCat("PATH=", kDefaultPath));
  if (!has("HOME")) env.push_back("HOME=" + u.home);

  std::vector<gid_t> groups(u.groups.begin(), u.groups.end());
  if (setgroups(groups.size(), groups.data()) != 0)
    Fail("setgroups: " + std::string(strerror(errno)), 126);
  if (setresgid(u.gid, u.gid, u.gid) != 0) Fail("setgid: " + std::string(strerror(errno)), 126);
  if (req.no_new_privileges() && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    Fail("no_new_privs: " + std::string(strerror(errno)), 126);
  }
  if (!filter.empty()) {
    absl::Status s = InstallSeccomp(filter);
    if (!s.ok()) Fail(std::string(s.message()), 126);
  }
  if (!req.insecure()) {
    absl::Status s = DropCapabilities(last_cap, u.uid == 0);
    if (!s.ok()) Fail(std::string(s.message()), 126);
  }
  // A non-root uid loses every capability here (no SECBIT_KEEP_CAPS), as in Docker.
  if (setresuid(u.uid, u.uid, u.uid) != 0) Fail("setuid: " + std::string(strerror(errno)), 126);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  if (chdir(req.cwd().empty() ? "/" : req.cwd().c_str()) != 0) {
    Fail(absl::StrCat("chdir to ", req.cwd(), ": ", strerror(errno)), 126);
  }
  if (req.args().empty()) Fail("no command given", 126);
  std::vector<std::string> args(req.args().begin(), req.args().end());
  std::string path = LookPath(args[0], env);
  if (path.empty())
    Fail(absl::StrCat("exec: \"", args[0], "\": executable file not found in $PATH"), 127);
  std::vector<char*> argv, envp;
  for (std::string& a : args) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  for (std::string& e : env) envp.push_back(&e[0]);
  envp.push_back(nullptr);
  execve(path.c_str(), argv.data(), envp.data());
  int e = errno;
  Fail(absl::StrCat("exec ", path, ": ", strerror(e)), e == ENOENT ? 127 : 126);
}

// The command, for init's signal forwarding (0 until forked).
volatile sig_atomic_t g_command = 0;

// init (pid 1) gets only the signals it handles: it passes these on to the command (the runner
// forwards an interactive caller's ^C, ^\; a signal from inside the namespace to pid 1 too).
void ForwardToCommand(int sig) {
  if (g_command > 0) kill(g_command, sig);
}

// pid 1 of the sandbox. Returns its exit code.
int InitMain(const SandboxRequest& req, int sync_fd, int report_fd, int mounts_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Two words from the runner: 'g' (set up the root: the id maps are written) and, before the
  // command may start, 'c' (it is in its cgroups and on its network). The runner does the
  // latter while this process mounts.
  char go = 0;
  if (read(sync_fd, &go, 1) != 1 || go != 'g') return 1;  // the runner gave up
  // Read before /proc is replaced.
  int last_cap = LastCap();

  if (req.has_userns()) {
    // A new user namespace keeps the host ids (root: unmapped, seen as nobody) until they
    // are set again, now that the runner has written the maps: root of the namespace.
    if (setresgid(0, 0, 0) != 0 || setgroups(0, nullptr) != 0 || setresuid(0, 0, 0) != 0) {
      return 1;
    }
  }
  // Rootless: the root is reached from the run directory, init's working directory.
  RootFs fs(req.has_userns() ? LocalPath(req, req.rootfs_dir()) : req.rootfs_dir());
  SandboxResult report;
  auto fail = [&](const absl::Status& s) {
    report.set_error_code(static_cast<int>(s.code()));
    report.set_error_message(std::string(s.message()));
    *report.mutable_stubs() = fs.stubs();
    SendReport(report_fd, report);
    return 1;
  };
  MountSources sources;
  if (req.has_userns()) {
    absl::StatusOr<MountSources> got = ReceiveMountSources(mounts_fd);
    if (!got.ok()) return fail(got.status());
    sources = *std::move(got);
  }
  close(mounts_fd);
  absl::Status s = SetupRoot(req, &fs, &sources);
  sources.clear();
  if (!s.ok()) return fail(s);
  // The user, from the image's own files (now at /etc).
  auto u = user::ResolveUser(req.user(), ReadOptional("/etc/passwd"), ReadOptional("/etc/group"));
  if (!u.ok()) return fail(u.status());
  if (!req.cwd().empty()) {
    s = common::MakeDirs(req.cwd(), 0755);
    if (!s.ok()) return fail(common::Annotate(s, "creating the working directory"));
  }
  absl::StatusOr<std::vector<sock_filter>> filter = StepSeccompFilter(req);
  if (!filter.ok()) return fail(filter.status());
  go = 0;
  if (read(sync_fd, &go, 1) != 1 || go != 'c') return 1;  // the runner gave up
  close(sync_fd);
  *report.mutable_stubs() = fs.stubs();
  report.set_started(true);
  SendReport(report_fd, report);

  pid_t child = fork();
  if (child < 0) return fail(Errno("fork"));
  if (child == 0) {
    close(report_fd);
    ExecCommand(req, *u, last_cap, *filter);
  }
  g_command = child;
  struct sigaction forward = {};
  forward.sa_handler = ForwardToCommand;
  sigset_t forwarded;
  sigemptyset(&forwarded);
  for (int sig : {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2}) {
    sigaction(sig, &forward, nullptr);
    sigaddset(&forwarded, sig);
  }
  sigprocmask(SIG_UNBLOCK, &forwarded, nullptr);  // (blocked since the runner's signalfd)
  // Reap everything (orphans are re-parented to us) until the command itself exits; returning
  // then makes the kernel kill whatever is left in the namespace.
  while (true) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (pid != child) continue;
    SandboxResult done;
    done.set_finished(true);
    if (WIFEXITED(status)) {
      done.set_exit_code(WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
      done.set_term_signal(WTERMSIG(status));
      done.set_exit_code(128 + WTERMSIG(status));
    }
    SendReport(report_fd, done);
    return 0;
  }
}

// ---------------------------------------------------------------------------------------
// The runner.

class ReportReader {
 public:
  // Reads what is available; returns false at EOF.
  bool Read(int fd, SandboxResult* into) {
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    while (buffer_.size() >= 4) {
      uint32_t len;
      std::memcpy(&len, buffer_.data(), 4);
      if (buffer_.size() < 4 + len) break;
      SandboxResult part;
      if (part.ParseFromArray(buffer_.data() + 4, static_cast<int>(len))) into->MergeFrom(part);
      buffer_.erase(0, 4 + len);
    }
    return true;
  }

 private:
  std::string buffer_;
};

SandboxResult Run(const SandboxRequest& req) {
  SandboxResult result;
  auto error = [&](const absl::Status& s) {
    result.set_error_code(static_cast<int>(s.code()));
    result.set_error_message(std::string(s.message()));
    return result;
  };
  int64_t start = NowMicros();

  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT}) sigaddset(&mask, sig);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) return error(Errno("signalfd"));

  absl::StatusOr<RunCgroup> cgroup =
      RunCgroup::Create(req.cgroups(), req.cgroup_name(), req.insecure());
  if (!cgroup.ok()) return error(common::Annotate(cgroup.status(), "setting up cgroups"));

  // sync_sock: a socket, not a pipe, so that a word for an init that already failed is
  // EPIPE (MSG_NOSIGNAL), not a SIGPIPE that kills the runner before it reports.
  int sync_sock[2], report_pipe[2], mounts_sock[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_sock) != 0) {
    return error(Errno("socketpair"));
  }
  if (pipe2(report_pipe, O_CLOEXEC) != 0) return error(Errno("pipe"));
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, mounts_sock) != 0) {
    return error(Errno("socketpair"));
  }
  unsigned long flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
  if (req.network() != SandboxRequest::HOST) flags |= CLONE_NEWNET;
  const bool rootless = req.has_userns();
  if (rootless) {
    if (req.userns().count() < 65536 || req.userns().uid_start() == 0 ||
        req.userns().gid_start() == 0) {
      return error(absl::InvalidArgumentError(
          "rootless: the subordinate id range must hold 65536 ids and must not start at 0"));
    }
    // init starts in the run directory (see rootless.h): the clone's working directory.
    absl::Status opened = OpenRunDirForNamespace(req);
    if (!opened.ok()) return error(opened);
    if (chdir(RunDirOf(req).c_str()) != 0) return error(Errno("chdir " + RunDirOf(req)));
    flags |= CLONE_NEWUSER;
  }
  pid_t init = static_cast<pid_t>(syscall(SYS_clone, flags, nullptr, nullptr, nullptr, nullptr));
  if (init < 0) return error(Errno("clone (new namespaces; this needs root)"));
  if (init == 0) {
    close(sync_sock[1]);
    close(report_pipe[0]);
    close(mounts_sock[0]);
    close(sfd);
    _exit(InitMain(req, sync_sock[0], report_pipe[1], mounts_sock[1]));
  }
  close(sync_sock[0]);
  close(report_pipe[1]);
  close(mounts_sock[1]);
  if (rootless) {
    // The maps first (idmapping needs them), then the mounts init will attach.
    absl::Status s = WriteIdMaps(init, req.userns());
    absl::StatusOr<MountSources> sources;
    if (s.ok()) {
      std::string ns = absl::StrCat("/proc/", init, "/ns/user");
      int userns = open(ns.c_str(), O_RDONLY | O_CLOEXEC);
      if (userns < 0) {
        s = Errno("open " + ns);
      } else {
        sources = PrepareMountSources(req, userns);
        close(userns);
        s = sources.ok() ? SendMountSources(mounts_sock[0], *sources) : sources.status();
      }
    }
    if (!s.ok()) {
      kill(init, SIGKILL);
      waitpid(init, nullptr, 0);
      return error(common::Annotate(s, "rootless"));
    }
  }
  close(mounts_sock[0]);
  auto word = [&](char w) { (void)send(sync_sock[1], &w, 1, MSG_NOSIGNAL); };
  // init mounts its root while it is moved into its cgroups (on cgroup v1 each move waits for
  // an RCU grace period: 5-20 ms) and its network is made; it starts nothing before 'c'.
  word('g');
  // From here init works on its own and may fail first (a mount, an unknown USER): then its
  // report says why, not what its exit did to the steps below (ESRCH, no /proc/PID/ns/net).
  auto abandon = [&](const absl::Status& s) {
    if (waitpid(init, nullptr, WNOHANG) != init) {
      kill(init, SIGKILL);
      waitpid(init, nullptr, 0);
      return error(s);
    }
    ReportReader early;
    while (early.Read(report_pipe[0], &result)) {
    }
    return result.error_code() != 0 ? result : error(s);
  };
  absl::Status added = cgroup->AddProcess(init);
  if (!added.ok()) return abandon(common::Annotate(added, "adding the sandbox to its cgroup"));
  // The isolated network: configured from here (the host's namespace) before init goes on;
  // its slot released when this function returns (the veth pair goes with the namespace).
  std::unique_ptr<StepNet> net;
  if (req.network() == SandboxRequest::ISOLATED) {
    absl::StatusOr<std::unique_ptr<StepNet>> made = StepNet::Create(req.isolated(), init);
    if (!made.ok()) return abandon(made.status());
    net = *std::move(made);
  }
  word('c');
  close(sync_sock[1]);

  int64_t deadline = req.timeout_ms() > 0 ? NowMicros() + req.timeout_ms() * 1000 : 0;
  bool init_done = false, report_open = true, killed = false;
  int init_status = 0;
  ReportReader reader;
  auto kill_tree = [&] {
    if (!killed) kill(init, SIGKILL);  // pid 1 gone: the kernel kills the whole namespace
    killed = true;
  };
  while (!init_done || report_open) {
    struct pollfd fds[2] = {{sfd, POLLIN, 0}, {report_open ? report_pipe[0] : -1, POLLIN, 0}};
    int timeout = -1;
    if (deadline != 0 && !killed) {
      int64_t left = deadline - NowMicros();
      timeout = left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left / 1000 + 1, 1 << 30));
    }
    int n = poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) break;
    if (deadline != 0 && !killed && NowMicros() >= deadline) {
      result.set_timed_out(true);
      kill_tree();
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      if (!reader.Read(report_pipe[0], &result)) report_open = false;
    }
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) continue;
        if (req.interactive() && (si.ssi_signo == SIGINT || si.ssi_signo == SIGQUIT)) {
          // The caller's terminal sent it (the command is in a session of its own and did
          // not get it): pass it on, and let the command decide.
          kill(init, static_cast<int>(si.ssi_signo));
          continue;
        }
        result.set_cancelled(true);
        kill_tree();
      }
    }
    if (!init_done) {
      pid_t r = waitpid(init, &init_status, WNOHANG);
      if (r == init) init_done = true;
    }
  }
  close(report_pipe[0]);
  result.set_oom_killed(cgroup->OomKilled());
  cgroup->Destroy();
  result.set_run_micros(NowMicros() - start);
  if (result.error_code() == 0 && !result.timed_out() && !result.cancelled() &&
      !result.finished()) {
    if (result.started() && result.oom_killed()) {
      // The OOM killer took init (or the command before it could be reported).
      result.set_exit_code(128 + SIGKILL);
      result.set_term_signal(SIGKILL);
    } else {
      result.set_error_code(static_cast<int>(absl::StatusCode::kInternal));
      result.set_error_message(absl::StrCat(
          "the sandbox's init died ", result.started() ? "while" : "before",
          " running the command (", WIFSIGNALED(init_status) ? "signal " : "exit status ",
          WIFSIGNALED(init_status) ? WTERMSIG(init_status) : WEXITSTATUS(init_status), ")"));
    }
  }
  return result;
}

}  // namespace

const std::string* PrecompiledStepFilter() {
  static const std::string* const filter = [] {
    absl::StatusOr<std::vector<sock_filter>> f = CompileStepFilter();
    if (!f.ok() || f->empty()) return static_cast<const std::string*>(nullptr);
    return static_cast<const std::string*>(
        new std::string(reinterpret_cast<const char*>(f->data()), f->size() * sizeof(sock_filter)));
  }();
  return filter;
}

int RunnerMain(int parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) return 1;  // the worker died before we could notice
  CloseFrom(5);
  std::string bytes;
  char buf[65536];
  while (true) {
    ssize_t n = read(3, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  close(3);
  SandboxRequest req;
  SandboxResult result;
  if (!req.ParseFromString(bytes)) {
    result.set_error_code(static_cast<int>(absl::StatusCode::kInternal));
    result.set_error_message("sandbox runner: malformed request");
  } else {
    result = Run(req);
  }
  std::string out = result.SerializeAsString();
  return common::WriteFully(4, out.data(), out.size()) ? 0 : 1;
}

}  // namespace internal
}  // namespace farm::worker::sandbox
