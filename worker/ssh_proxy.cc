#include "worker/ssh_proxy.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker {
namespace {

// Fills `addr` for `path`; long paths go through an O_PATH descriptor of the directory, whose
// fd is returned in `*dir_fd` (to be closed after the call).
absl::Status UnixAddress(const std::string& path, struct sockaddr_un* addr, int* dir_fd) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  *dir_fd = -1;
  std::string p = path;
  if (p.size() >= sizeof(addr->sun_path)) {
    size_t slash = p.rfind('/');
    if (slash == std::string::npos) return absl::InvalidArgumentError("socket path too long: " + p);
    *dir_fd = open(p.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (*dir_fd < 0) return common::ErrnoToStatus(errno, "open " + p.substr(0, slash));
    p = absl::StrCat("/proc/self/fd/", *dir_fd, "/", p.substr(slash + 1));
    if (p.size() >= sizeof(addr->sun_path)) {
      close(*dir_fd);
      return absl::InvalidArgumentError("socket name too long: " + path);
    }
  }
  std::memcpy(addr->sun_path, p.data(), p.size());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int> ConnectUnix(const std::string& path) {
  struct sockaddr_un addr;
  int dir_fd;
  RETURN_IF_ERROR(UnixAddress(path, &addr, &dir_fd));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int r = fd < 0 ? -1 : connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int e = errno;
  if (dir_fd >= 0) close(dir_fd);
  if (r != 0) {
    if (fd >= 0) close(fd);
    return common::ErrnoToStatus(e, "connect " + path);
  }
  return fd;
}

absl::StatusOr<int> ListenUnix(const std::string& path) {
  struct sockaddr_un addr;
  int dir_fd;
  RETURN_IF_ERROR(UnixAddress(path, &addr, &dir_fd));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int r = fd < 0 ? -1 : bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (r == 0) r = listen(fd, 16);
  int e = errno;
  if (dir_fd >= 0) close(dir_fd);
  if (r != 0) {
    if (fd >= 0) close(fd);
    return common::ErrnoToStatus(e, "listen on " + path);
  }
  return fd;
}

absl::StatusOr<std::unique_ptr<SshAgentProxy>> SshAgentProxy::Start(const std::string& agent,
                                                                    const std::string& path,
                                                                    const copy::Attrs& attrs) {
  struct stat st;
  if (stat(agent.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("ssh agent socket ", agent, " does not exist"));
  }
  ASSIGN_OR_RETURN(int fd, ListenUnix(path));
  copy::Attrs a = attrs;
  if (a.mode == 0) a.mode = 0600;
  if (chown(path.c_str(), a.uid, a.gid) != 0 || chmod(path.c_str(), a.mode) != 0) {
    close(fd);
    return common::ErrnoToStatus(errno, "chown/chmod " + path);
  }
  int stop[2];
  if (pipe2(stop, O_CLOEXEC) != 0) {
    close(fd);
    return common::ErrnoToStatus(errno, "pipe");
  }
  std::unique_ptr<SshAgentProxy> proxy(new SshAgentProxy(agent, path, fd, stop[0], stop[1]));
  proxy->acceptor_ = std::thread([p = proxy.get()] { p->AcceptLoop(); });
  return proxy;
}

SshAgentProxy::~SshAgentProxy() {
  close(stop_w_);  // every poll() sees POLLHUP on stop_r_
  acceptor_.join();
  std::vector<std::thread> relays;
  {
    absl::MutexLock lock(&mu_);
    relays.swap(relays_);
  }
  for (std::thread& t : relays) t.join();
  close(stop_r_);
  close(listen_fd_);
  unlink(path_.c_str());
}

void SshAgentProxy::AcceptLoop() {
  while (true) {
    struct pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_r_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents != 0) return;
    if (!(fds[0].revents & POLLIN)) continue;
    int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    absl::MutexLock lock(&mu_);
    relays_.emplace_back([this, client] { Relay(client); });
  }
}

void SshAgentProxy::Relay(int client) {
  absl::StatusOr<int> agent = ConnectUnix(agent_);
  if (!agent.ok()) {
    close(client);
    return;
  }
  int fds_pair[2] = {client, *agent};
  char buf[16384];
  bool open[2] = {true, true};
  while (open[0] && open[1]) {
    struct pollfd fds[3] = {{client, POLLIN, 0}, {*agent, POLLIN, 0}, {stop_r_, POLLIN, 0}};
    if (poll(fds, 3, -1) < 0 && errno != EINTR) break;
    if (fds[2].revents != 0) break;
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds_pair[i], buf, sizeof(buf));
      if (n <= 0 || !common::WriteFully(fds_pair[1 - i], buf, static_cast<size_t>(n)))
        open[i] = false;
    }
  }
  close(client);
  close(*agent);
}

}  // namespace farm::worker
