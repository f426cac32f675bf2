#include "worker/sandbox/rootless.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/fsuid.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::sandbox::internal {
namespace {

using farm::v1::SandboxMount;
using farm::v1::SandboxRequest;

absl::Status Errno(absl::string_view what) { return common::ErrnoToStatus(errno, what); }

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Basename(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// A detached copy of the mount tree at `path`, idmapped with `userns_fd` (-1: not idmapped).
absl::StatusOr<common::UniqueFd> CloneTree(const std::string& path, int userns_fd, bool recursive) {
  int fd = open_tree(AT_FDCWD, path.c_str(),
                     OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
  if (fd < 0) return Errno("open_tree " + path);
  common::UniqueFd tree(fd);
  if (userns_fd < 0) return tree;
  struct mount_attr attr = {};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(userns_fd);
  if (mount_setattr(fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr)) !=
      0) {
    return Errno(absl::StrCat("idmapping a mount of ", path,
                              " (its file system must support idmapped mounts)"));
  }
  return tree;
}

// The kernel's own words about a failed fsconfig (read from the fs_context descriptor).
std::string KernelMessages(int fs) {
  std::string out;
  char buf[512];
  while (true) {
    ssize_t n = read(fs, buf, sizeof(buf));
    if (n <= 0) break;
    if (!out.empty()) out += "; ";
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// FSCONFIG_CMD_CREATE with the namespace's root as the file system ids. Overlayfs keeps the
// creds of whoever creates it and uses them for its own work in the upper layer (the work
// directory, copy-up): with the host's root they would be unrepresentable through the
// idmapped upper (EOVERFLOW, and the overlay would fall back to read-only). Only fsuid/fsgid
// change, for this one call; the capabilities stay the host root's (setfsuid drops the
// file-system ones from the effective set: raised again from the permitted set).
bool CreateAsNamespaceRoot(int fs, const farm::v1::SandboxUserNamespace& ns) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct caps[2];
  if (syscall(SYS_capget, &header, caps) != 0) return false;
  setfsgid(ns.gid_start());
  setfsuid(ns.uid_start());
  struct __user_cap_data_struct raised[2];
  std::memcpy(raised, caps, sizeof(raised));
  for (auto& c : raised) c.effective = c.permitted;
  bool ok = syscall(SYS_capset, &header, raised) == 0 &&
            fsconfig(fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) == 0;
  int e = errno;
  setfsuid(0);
  setfsgid(0);
  syscall(SYS_capset, &header, caps);
  errno = e;
  return ok;
}

// A detached overlay mount: `lowers` relative to the idmapped layer directory `layers`,
// `upper`/`work` ("" for read-only) as paths the runner can resolve (through /proc/self/fd).
// Same options and fallbacks as the rootful MountOverlayAt in runner.cc.
absl::StatusOr<common::UniqueFd> MakeOverlay(int layers, std::vector<std::string> lowers,
                                             const std::string& upper, const std::string& work,
                                             bool allow_devices,
                                             const farm::v1::SandboxUserNamespace& ns) {
  if (upper.empty() && lowers.size() == 1) lowers.push_back("empty");
  if (fchdir(layers) != 0) return Errno("fchdir (the idmapped layer directory)");
  const std::vector<std::vector<std::string>> extras = {
      {"index=off", "redirect_dir=off", "metacopy=off", "volatile"},
      {"index=off", "redirect_dir=off", "metacopy=off"},
      {"redirect_dir=off"},
      {}};
  std::string last_error;
  for (const std::vector<std::string>& extra : extras) {
    if (upper.empty() && !extra.empty() && extra.back() == "volatile") continue;
    int fs = fsopen("overlay", FSOPEN_CLOEXEC);
    if (fs < 0) return Errno("fsopen overlay");
    common::UniqueFd fs_fd(fs);
    auto set = [&](const std::string& key, const std::string& value) {
      int rc = value.empty() ? fsconfig(fs, FSCONFIG_SET_FLAG, key.c_str(), nullptr, 0)
                             : fsconfig(fs, FSCONFIG_SET_STRING, key.c_str(), value.c_str(), 0);
      return rc == 0;
    };
    // lowerdir+ (Linux 6.8+) takes one layer at a time: fsconfig strings are limited to 256
    // bytes, too short for a whole stack.
    bool ok = true;
    for (const std::string& l : lowers) ok = ok && set("lowerdir+", l);
    if (!ok && errno == EINVAL) {
      KernelMessages(fs);
      fs_fd = common::UniqueFd();
      fs = fsopen("overlay", FSOPEN_CLOEXEC);
      if (fs < 0) return Errno("fsopen overlay");
      fs_fd = common::UniqueFd(fs);
      ok = set("lowerdir", absl::StrJoin(lowers, ":"));
    }
    if (ok && !upper.empty()) ok = set("upperdir", upper) && set("workdir", work);
    for (const std::string& e : extra) {
      if (!ok) break;
      size_t eq = e.find('=');
      ok = eq == std::string::npos ? set(e, "") : set(e.substr(0, eq), e.substr(eq + 1));
    }
    if (ok) ok = CreateAsNamespaceRoot(fs, ns);
    if (ok) {
      unsigned int attrs =
          (upper.empty() ? MOUNT_ATTR_RDONLY : 0) | (allow_devices ? 0 : MOUNT_ATTR_NODEV);
      int mnt = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
      if (mnt >= 0) return common::UniqueFd(mnt);
    }
    int e = errno;
    last_error = absl::StrCat(strerror(e), " (", KernelMessages(fs), ")");
    if (e != EINVAL) break;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "mounting an overlay of ", lowers.size(),
      " idmapped layers (overlayfs on idmapped layers needs Linux 5.19+): ", last_error));
}

// A path to `upper` (and `work`, which must share its directory) through one idmapped clone
// of that directory, kept open in `held`.
absl::StatusOr<std::pair<std::string, std::string>> IdmappedUpper(
    const std::string& upper, const std::string& work, int userns_fd,
    std::vector<common::UniqueFd>* held) {
  if (upper.empty()) return std::pair<std::string, std::string>();
  std::string dir = Dirname(upper);
  if (Dirname(work) != dir) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rootless: the upperdir ", upper, " and workdir ", work, " must be in the same directory"));
  }
  ASSIGN_OR_RETURN(common::UniqueFd tree, CloneTree(dir, userns_fd, false));
  std::string base = absl::StrCat("/proc/self/fd/", tree.get(), "/");
  held->push_back(std::move(tree));
  return std::make_pair(base + Basename(upper), base + Basename(work));
}

}  // namespace

std::string RunDirOf(const SandboxRequest& req) { return Dirname(req.rootfs_dir()); }

std::string LocalPath(const SandboxRequest& req, const std::string& path) {
  std::string dir = RunDirOf(req) + "/";
  if (absl::StartsWith(path, dir) && path.size() > dir.size()) return path.substr(dir.size());
  return path;
}

absl::Status OpenRunDirForNamespace(const SandboxRequest& req) {
  std::string dir = RunDirOf(req);
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return Errno("stat " + dir);
  if ((st.st_mode & S_IXOTH) == 0 && chmod(dir.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0) {
    return Errno("chmod o+x " + dir);
  }
  return absl::OkStatus();
}

absl::Status WriteIdMaps(pid_t pid, const farm::v1::SandboxUserNamespace& ns) {
  for (auto [file, start] :
       {std::pair<const char*, uint32_t>{"uid_map", ns.uid_start()}, {"gid_map", ns.gid_start()}}) {
    std::string path = absl::StrCat("/proc/", pid, "/", file);
    std::string line = absl::StrCat("0 ", start, " ", ns.count(), "\n");
    int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return Errno("open " + path);
    common::UniqueFd closer(fd);
    if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      return Errno(absl::StrCat("writing \"0 ", start, " ", ns.count(), "\" to ", path));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MountSources> PrepareMountSources(const SandboxRequest& req, int userns_fd) {
  MountSources out;
  std::vector<common::UniqueFd> held;  // idmapped upper directories, until the overlays exist
  ASSIGN_OR_RETURN(common::UniqueFd layers, CloneTree(req.layer_dir(), userns_fd, false));
  ASSIGN_OR_RETURN(auto upper, IdmappedUpper(req.upper_dir(), req.work_dir(), userns_fd, &held));
  ASSIGN_OR_RETURN(out[kRootSlot],
                   MakeOverlay(layers.get(), {req.lower_dirs().begin(), req.lower_dirs().end()},
                               upper.first, upper.second, req.insecure(), req.userns()));
  // Host files: plain clones (init cannot reach them where the worker keeps them).
  if (!req.resolv_conf().empty()) {
    ASSIGN_OR_RETURN(out[kResolvConfSlot], CloneTree(req.resolv_conf(), -1, false));
  }
  if (!req.hosts().empty()) {
    ASSIGN_OR_RETURN(out[kHostsSlot], CloneTree(req.hosts(), -1, false));
  }
  for (int i = 0; i < req.mounts_size(); ++i) {
    const SandboxMount& m = req.mounts(i);
    std::string where = absl::StrCat("mount at ", m.target());
    if (m.kind() == SandboxMount::BIND) {
      absl::StatusOr<common::UniqueFd> tree = CloneTree(m.source(), userns_fd, true);
      if (!tree.ok()) return common::Annotate(tree.status(), where);
      out[kFirstMountSlot + i] = *std::move(tree);
    } else if (m.kind() == SandboxMount::OVERLAY) {
      auto mu = IdmappedUpper(m.upper_dir(), m.work_dir(), userns_fd, &held);
      if (!mu.ok()) return common::Annotate(mu.status(), where);
      absl::StatusOr<common::UniqueFd> ovl =
          MakeOverlay(layers.get(), {m.lower_dirs().begin(), m.lower_dirs().end()}, mu->first,
                      mu->second, false, req.userns());
      if (!ovl.ok()) return common::Annotate(ovl.status(), where);
      out[kFirstMountSlot + i] = *std::move(ovl);
    }
  }
  if (chdir("/") != 0) return Errno("chdir /");
  return out;
}

absl::Status SendMountSources(int sock, const MountSources& sources) {
  auto send_one = [&](int32_t slot, int fd) -> absl::Status {
    struct msghdr msg = {};
    struct iovec iov = {&slot, sizeof(slot)};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
      if (errno != EINTR) return Errno("sending a mount to the sandbox's init");
    }
    return absl::OkStatus();
  };
  for (const auto& [slot, fd] : sources) RETURN_IF_ERROR(send_one(slot, fd.get()));
  return send_one(-1, -1);
}

absl::StatusOr<MountSources> ReceiveMountSources(int sock) {
  MountSources out;
  while (true) {
    int32_t slot = 0;
    struct msghdr msg = {};
    struct iovec iov = {&slot, sizeof(slot)};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n != sizeof(slot)) return absl::InternalError("receiving the sandbox's mounts");
    if (slot < 0) return out;
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr || c->cmsg_type != SCM_RIGHTS) {
      return absl::InternalError("receiving the sandbox's mounts: no descriptor");
    }
    int fd = -1;
    std::memcpy(&fd, CMSG_DATA(c), sizeof(int));
    out[slot] = common::UniqueFd(fd);
  }
}

}  // namespace farm::worker::sandbox::internal
