#include "worker/testing/test_hosts.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::testing {

absl::Status Shell(const std::string& command) {
  int rc = std::system(command.c_str());
  if (rc == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("`", command, "` failed (status ", rc, ")"));
}

absl::StatusOr<std::unique_ptr<TestHosts>> TestHosts::Create() {
  if (unshare(CLONE_NEWNET) != 0) {
    return common::ErrnoToStatus(errno, "unshare(CLONE_NEWNET) (test hosts need root)");
  }
  std::unique_ptr<TestHosts> h(new TestHosts());
  RETURN_IF_ERROR(Shell("ip link set lo up"));
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
  h->peer_ = fork();
  if (h->peer_ < 0) return common::ErrnoToStatus(errno, "fork");
  if (h->peer_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char ok = unshare(CLONE_NEWNET) == 0 ? 'y' : 'n';
    (void)!write(ready[1], &ok, 1);
    while (true) pause();
  }
  close(ready[1]);
  char ok = 0;
  ssize_t n = read(ready[0], &ok, 1);
  close(ready[0]);
  if (n != 1 || ok != 'y') return absl::InternalError("the peer namespace could not be made");
  std::string in_peer = absl::StrCat("nsenter -t ", h->peer_, " -n ");
  RETURN_IF_ERROR(Shell(absl::StrCat("ip link add up0 type veth peer name eth0 netns ", h->peer_)));
  RETURN_IF_ERROR(Shell(absl::StrCat("ip addr add ", kHostAddress, "/24 dev up0")));
  RETURN_IF_ERROR(Shell("ip link set up0 up"));
  RETURN_IF_ERROR(Shell(absl::StrCat(in_peer, "ip link set lo up")));
  RETURN_IF_ERROR(Shell(absl::StrCat(in_peer, "ip addr add ", kPeerAddress, "/24 dev eth0")));
  RETURN_IF_ERROR(Shell(absl::StrCat(in_peer, "ip link set eth0 up")));
  RETURN_IF_ERROR(Shell(absl::StrCat(in_peer, "ip route add default via ", kHostAddress)));
  return h;
}

TestHosts::~TestHosts() {
  if (peer_ > 0) {
    kill(peer_, SIGKILL);
    waitpid(peer_, nullptr, 0);
  }
}

absl::Status TestHosts::AddPeerAddress(const std::string& addr) {
  RETURN_IF_ERROR(
      Shell(absl::StrCat("nsenter -t ", peer_, " -n ip addr add ", addr, "/32 dev lo")));
  return Shell(absl::StrCat("ip route add ", addr, "/32 via ", kPeerAddress));
}

absl::Status TestHosts::InPeer(const std::function<void()>& f) {
  int home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) return common::ErrnoToStatus(errno, "open /proc/thread-self/ns/net");
  std::string path = absl::StrCat("/proc/", peer_, "/ns/net");
  int peer = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (peer < 0 || setns(peer, CLONE_NEWNET) != 0) {
    int e = errno;
    close(home);
    if (peer >= 0) close(peer);
    return common::ErrnoToStatus(e, "entering the peer's network namespace");
  }
  close(peer);
  f();
  int rc = setns(home, CLONE_NEWNET);
  int e = errno;
  close(home);
  if (rc != 0) return common::ErrnoToStatus(e, "returning to this host's network namespace");
  return absl::OkStatus();
}

GreetingServer::GreetingServer(const std::string& addr, int port, std::string greeting)
    : greeting_(std::move(greeting)) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  socklen_t len = sizeof(sa);
  ok_ = bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0 && listen(fd_, 16) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len) == 0;
  port_ = ntohs(sa.sin_port);
  thread_ = std::thread([this] {
    while (true) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;  // shut down
      }
      std::string line = greeting_ + "\n";
      (void)!write(c, line.data(), line.size());
      close(c);
    }
  });
}

GreetingServer::~GreetingServer() {
  shutdown(fd_, SHUT_RDWR);
  thread_.join();
  close(fd_);
}

std::string ReadGreeting(const std::string& addr, int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0) {
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return std::string(absl::StripSuffix(out, "\n"));
}

}  // namespace farm::worker::testing
