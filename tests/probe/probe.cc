// probe: what a build step or `farm run` can do, seen from inside. A static binary (no
// library from the image is needed), copied into a scratch image by the tests
// (tests/probe/probe_test.sh) and run in RUN steps and with `farm run`.
//
//   probe sandbox                  seccomp mode, capabilities, and the profile's refusals
//   probe connect ADDR PORT [...]  one line per ADDR PORT pair: "connect ADDR:PORT ok <greeting>"
//                                  or "connect ADDR:PORT refused <errno text>"
//   probe tiocsti TEXT             pushes TEXT into the input of the terminal on stdin
//   probe tty                      stdin's terminal, session and controlling terminal
//   probe ssh-agent                asks the agent at $SSH_AUTH_SOCK for its identities:
//                                  "ssh_agent: N identities" or "ssh_agent: refused (...)"
//
// Every line is "name: value"; the exit status is 0 unless the probe itself failed to run.
// It is a test tool: it reports, the tests judge.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace {

std::string Field(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size() + 1, key + ":") == 0) {
      size_t v = line.find_first_not_of(" \t", key.size() + 1);
      return v == std::string::npos ? "" : line.substr(v);
    }
  }
  return "?";
}

// The first line of an id map (/proc/self/uid_map), its three numbers one space apart:
// "0 0 4294967295" outside a user namespace, "0 START COUNT" in a rootless step.
std::string IdMap(const std::string& file) {
  std::ifstream in(file);
  std::string first, out;
  std::getline(in, first);
  std::istringstream words(first);
  for (std::string w; words >> w;) out += (out.empty() ? "" : " ") + w;
  return out.empty() ? "?" : out;
}

std::string Outcome(int rc, int err) {
  return rc >= 0 ? "allowed" : std::string("refused (") + strerror(err) + ")";
}

void Sandbox() {
  printf("seccomp: %s\n", Field("/proc/self/status", "Seccomp").c_str());
  printf("no_new_privs: %s\n", Field("/proc/self/status", "NoNewPrivs").c_str());
  printf("cap_eff: %s\n", Field("/proc/self/status", "CapEff").c_str());
  printf("cap_bnd: %s\n", Field("/proc/self/status", "CapBnd").c_str());
  printf("uid: %d\n", static_cast<int>(getuid()));
  printf("uid_map: %s\n", IdMap("/proc/self/uid_map").c_str());
  printf("gid_map: %s\n", IdMap("/proc/self/gid_map").c_str());

  // A block device (the host's first disk's major/minor): made, maybe; opened, never.
  const char* node = "/tmp/probe-blockdev";
  unlink(node);
  int rc = mknod(node, S_IFBLK | 0600, makedev(8, 0));
  printf("mknod_block: %s\n", Outcome(rc, errno).c_str());
  if (rc == 0) {
    int fd = open(node, O_RDONLY | O_CLOEXEC);
    printf("open_block: %s\n", Outcome(fd, errno).c_str());
    if (fd >= 0) close(fd);
    unlink(node);
  } else {
    printf("open_block: refused (no node)\n");
  }
  // The kernel keyring (Docker's profile refuses keyctl, add_key, request_key).
  long k = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
  printf("keyctl: %s\n", Outcome(static_cast<int>(k), errno).c_str());
  long a = syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING);
  printf("add_key: %s\n", Outcome(static_cast<int>(a), errno).c_str());
  // A user namespace (in a child: unshare would change this process).
  pid_t child = fork();
  if (child == 0) _exit(unshare(CLONE_NEWUSER) == 0 ? 0 : errno);
  int status = 0;
  waitpid(child, &status, 0);
  int e = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  printf("unshare_user: %s\n", e == 0 ? "allowed" : Outcome(-1, e).c_str());
  // Mounting (CAP_SYS_ADMIN is not in the default set).
  rc = static_cast<int>(syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, nullptr));
  printf("mount: %s\n", Outcome(rc, errno).c_str());
}

void Connect(const char* addr, const char* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(atoi(port)));
  if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
    printf("connect %s:%s: bad address\n", addr, port);
    close(fd);
    return;
  }
  // Non-blocking with a deadline: a dropped packet shows as "timed out", not as a hang.
  fcntl(fd, F_SETFL, O_NONBLOCK);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  int err = rc == 0 ? 0 : errno;
  if (rc != 0 && err == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 5000) == 1) {
      socklen_t len = sizeof(err);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    } else {
      err = ETIMEDOUT;
    }
  }
  if (err != 0) {
    printf("connect %s:%s: refused (%s)\n", addr, port, strerror(err));
    close(fd);
    return;
  }
  fcntl(fd, F_SETFL, 0);
  char buf[256] = {0};
  pollfd p{fd, POLLIN, 0};
  ssize_t n = poll(&p, 1, 3000) == 1 ? read(fd, buf, sizeof(buf) - 1) : 0;
  std::string got(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!got.empty() && (got.back() == '\n' || got.back() == '\r')) got.pop_back();
  printf("connect %s:%s: ok %s\n", addr, port, got.c_str());
  close(fd);
}

// SSH_AGENTC_REQUEST_IDENTITIES (11) to the agent; the answer is SSH_AGENT_IDENTITIES_ANSWER
// (12) and a count. Busybox's nc cannot speak to a unix socket, hence this.
void SshAgent() {
  const char* path = getenv("SSH_AUTH_SOCK");
  if (path == nullptr || strlen(path) >= sizeof(sockaddr_un::sun_path)) {
    printf("ssh_agent: refused (no SSH_AUTH_SOCK)\n");
    return;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  strcpy(sa.sun_path, path);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    printf("ssh_agent: refused (%s)\n", strerror(errno));
    close(fd);
    return;
  }
  const unsigned char req[] = {0, 0, 0, 1, 11};
  unsigned char got[9] = {0};
  size_t have = 0;
  if (write(fd, req, sizeof(req)) == static_cast<ssize_t>(sizeof(req))) {
    pollfd p{fd, POLLIN, 0};
    while (have < sizeof(got) && poll(&p, 1, 5000) == 1) {
      ssize_t n = read(fd, got + have, sizeof(got) - have);
      if (n <= 0) break;
      have += static_cast<size_t>(n);
    }
  }
  close(fd);
  if (have < sizeof(got) || got[4] != 12) {
    printf("ssh_agent: refused (no identities answer)\n");
    return;
  }
  unsigned count = (got[5] << 24) | (got[6] << 16) | (got[7] << 8) | got[8];
  printf("ssh_agent: %u identities\n", count);
}

void Tiocsti(const char* text) {
  int pushed = 0, err = 0;
  for (const char* c = text; *c != '\0'; ++c) {
    if (ioctl(0, TIOCSTI, c) != 0) {
      err = errno;
      break;
    }
    ++pushed;
  }
  printf("tiocsti: %d of %zu bytes%s%s\n", pushed, strlen(text), err != 0 ? ", then " : "",
         err != 0 ? strerror(err) : "");
}

void Tty() {
  char name[256] = {0};
  printf("stdin_tty: %s\n", isatty(0) ? "yes" : "no");
  printf("ttyname: %s\n", ttyname_r(0, name, sizeof(name)) == 0 ? name : "none");
  pid_t sid = getsid(0), pgrp = getpgrp();
  printf("session_leader: %s\n", sid == getpid() ? "yes" : "no");
  pid_t fg = tcgetpgrp(0);
  printf("foreground: %s\n", fg < 0 ? "none" : fg == pgrp ? "this group" : "another group");
  int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
  printf("controlling_tty: %s\n", fd >= 0 ? "yes" : "no");
  if (fd >= 0) close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "sandbox") {
    Sandbox();
  } else if (cmd == "connect" && argc >= 4 && argc % 2 == 0) {
    for (int i = 2; i + 1 < argc; i += 2) Connect(argv[i], argv[i + 1]);
  } else if (cmd == "tiocsti" && argc == 3) {
    Tiocsti(argv[2]);
  } else if (cmd == "tty") {
    Tty();
  } else if (cmd == "ssh-agent") {
    SshAgent();
  } else {
    fprintf(stderr,
            "usage: probe sandbox | connect ADDR PORT [ADDR PORT...] | tiocsti TEXT | tty | "
            "ssh-agent\n");
    return 2;
  }
  return 0;
}
