#include "worker/sandbox/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_util.h"
#include "worker/sandbox/runner.h"

namespace farm::worker::sandbox {

void RunSandboxIfRequested(int argc, char** argv) {
  if (argc < 3 || std::strcmp(argv[1], kRunnerMarker) != 0) return;
  int parent = 0;
  if (!absl::SimpleAtoi(argv[2], &parent)) _exit(2);
  _exit(internal::RunnerMain(parent));
}

namespace {

constexpr size_t kMaxLine = 64 << 10;

class FdCloser {
 public:
  explicit FdCloser(std::vector<int*> fds) : fds_(std::move(fds)) {}
  ~FdCloser() {
    for (int* fd : fds_) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }

 private:
  std::vector<int*> fds_;
};

// A copy of `fd` numbered >= 10 (close-on-exec), so the child's dup2 onto 0..4 cannot clobber
// another source.
int HighDup(int fd) { return fcntl(fd, F_DUPFD_CLOEXEC, 10); }

// Splits a stream into lines for the callback.
class LineSplitter {
 public:
  LineSplitter(const std::function<void(absl::string_view, bool)>* sink, bool is_stderr)
      : sink_(sink), is_stderr_(is_stderr) {}
  void Feed(absl::string_view data) {
    while (!data.empty()) {
      size_t nl = data.find('\n');
      if (nl == absl::string_view::npos) {
        buffer_.append(data.data(), data.size());
        while (buffer_.size() >= kMaxLine) {
          (*sink_)(absl::string_view(buffer_).substr(0, kMaxLine), is_stderr_);
          buffer_.erase(0, kMaxLine);
        }
        return;
      }
      buffer_.append(data.data(), nl);
      (*sink_)(buffer_, is_stderr_);
      buffer_.clear();
      data.remove_prefix(nl + 1);
    }
  }
  void Flush() {
    if (!buffer_.empty()) (*sink_)(buffer_, is_stderr_);
    buffer_.clear();
  }

 private:
  const std::function<void(absl::string_view, bool)>* sink_;
  bool is_stderr_;
  std::string buffer_;
};

// The program that runs the sandbox: farm-sandbox next to this binary when it is there and as
// trustworthy as the binary itself (a regular executable file owned by root or by us, that no
// one else may write), else this binary again. Decided once per process.
const std::string& RunnerPath() {
  static const std::string* const path = [] {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
      std::string dir(self, static_cast<size_t>(n));
      dir.resize(dir.rfind('/') + 1);
      std::string candidate = dir + "farm-sandbox";
      struct stat st;
      if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0100) &&
          (st.st_mode & 022) == 0 && (st.st_uid == 0 || st.st_uid == geteuid())) {
        return new std::string(candidate);
      }
    }
    return new std::string("/proc/self/exe");
  }();
  return *path;
}

}  // namespace

void PrepareSandbox() { internal::PrecompiledStepFilter(); }

absl::StatusOr<farm::v1::SandboxResult> RunSandbox(const farm::v1::SandboxRequest& request,
                                                   const SandboxIo& io,
                                                   const absl::Notification* cancel) {
  int req_fd = -1, result_r = -1, result_w = -1, out_r = -1, out_w = -1, err_r = -1, err_w = -1;
  int in_dup = -1, out_dup = -1, err_dup = -1, req_dup = -1, result_dup = -1;
  FdCloser closer({&req_fd, &result_r, &result_w, &out_r, &out_w, &err_r, &err_w, &in_dup, &out_dup,
                   &err_dup, &req_dup, &result_dup});

  req_fd = memfd_create("farm-sandbox-request", MFD_CLOEXEC);
  if (req_fd < 0) return common::ErrnoToStatus(errno, "memfd_create");
  std::string bytes;
  const std::string* filter = nullptr;
  if (!request.insecure() && request.seccomp_filter().empty() &&
      (filter = internal::PrecompiledStepFilter()) != nullptr) {
    // Compiled once here for every step of this process instead of in each runner.
    farm::v1::SandboxRequest with_filter = request;
    with_filter.set_seccomp_filter(*filter);
    bytes = with_filter.SerializeAsString();
  } else {
    bytes = request.SerializeAsString();
  }
  if (write(req_fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size()) ||
      lseek(req_fd, 0, SEEK_SET) != 0) {
    return common::ErrnoToStatus(errno, "writing the sandbox request");
  }
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
  result_r = pipefd[0];
  result_w = pipefd[1];
  bool capture = io.stdout_fd < 0 || io.stderr_fd < 0;
  if (capture) {
    if (!io.on_line)
      return absl::InvalidArgumentError("RunSandbox: no stdout/stderr and no on_line");
    if (pipe2(pipefd, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
    out_r = pipefd[0];
    out_w = pipefd[1];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
    err_r = pipefd[0];
    err_w = pipefd[1];
  }
  out_dup = HighDup(capture ? out_w : io.stdout_fd);
  err_dup = HighDup(capture ? err_w : io.stderr_fd);
  req_dup = HighDup(req_fd);
  result_dup = HighDup(result_w);
  if (io.stdin_fd >= 0) in_dup = HighDup(io.stdin_fd);
  if (out_dup < 0 || err_dup < 0 || req_dup < 0 || result_dup < 0 ||
      (io.stdin_fd >= 0 && in_dup < 0)) {
    return common::ErrnoToStatus(errno, "dup");
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (in_dup >= 0) {
    posix_spawn_file_actions_adddup2(&actions, in_dup, 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_adddup2(&actions, out_dup, 1);
  posix_spawn_file_actions_adddup2(&actions, err_dup, 2);
  posix_spawn_file_actions_adddup2(&actions, req_dup, 3);
  posix_spawn_file_actions_adddup2(&actions, result_dup, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (!request.interactive()) {
    flags |= POSIX_SPAWN_SETPGROUP;  // a terminal's ^C reaches farm, which cancels cleanly
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::string parent = absl::StrCat(getpid());
  char arg0[] = "farm-sandbox";
  std::string marker = kRunnerMarker;
  char* argv[] = {arg0, &marker[0], &parent[0], nullptr};
  char env0[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {env0, nullptr};
  pid_t pid = 0;
  const std::string& runner = RunnerPath();
  int rc = posix_spawn(&pid, runner.c_str(), &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return common::ErrnoToStatus(rc, absl::StrCat("starting the sandbox runner (", runner, ")"));
  }
  // Only the child keeps the write ends.
  for (int* fd : {&result_w, &out_w, &err_w, &in_dup, &out_dup, &err_dup, &req_dup, &result_dup}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }

  std::string result_bytes;
  LineSplitter out_lines(&io.on_line, false), err_lines(&io.on_line, true);
  bool sent_term = false;
  absl::Time term_at;
  char buf[65536];
  while (result_r >= 0 || out_r >= 0 || err_r >= 0) {
    struct pollfd fds[3] = {{result_r, POLLIN, 0}, {out_r, POLLIN, 0}, {err_r, POLLIN, 0}};
    // Cancellation is an absl::Notification (no fd to poll): check it between short polls.
    int n = poll(fds, 3, cancel != nullptr ? 50 : -1);
    if (n < 0 && errno != EINTR) return common::ErrnoToStatus(errno, "poll");
    if (cancel != nullptr && cancel->HasBeenNotified()) {
      if (!sent_term) {
        kill(pid, SIGTERM);  // the runner kills the tree and reports `cancelled`
        sent_term = true;
        term_at = absl::Now();
      } else if (absl::Now() - term_at > absl::Seconds(10)) {
        kill(pid, SIGKILL);  // an unresponsive runner: its death kills the tree (PDEATHSIG)
      }
    }
    for (int i = 0; i < 3; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = read(fds[i].fd, buf, sizeof(buf));
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        int* fd = i == 0 ? &result_r : i == 1 ? &out_r : &err_r;
        close(*fd);
        *fd = -1;
        continue;
      }
      absl::string_view data(buf, static_cast<size_t>(r));
      if (i == 0) {
        result_bytes.append(data.data(), data.size());
      } else if (i == 1) {
        out_lines.Feed(data);
      } else {
        err_lines.Feed(data);
      }
    }
  }
  if (capture) {
    out_lines.Flush();
    err_lines.Flush();
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  farm::v1::SandboxResult result;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !result.ParseFromString(result_bytes)) {
    return absl::InternalError(
        absl::StrCat("the sandbox runner failed (",
                     WIFSIGNALED(status) ? absl::StrCat("killed by signal ", WTERMSIG(status))
                                         : absl::StrCat("exit status ", WEXITSTATUS(status)),
                     ")"));
  }
  return result;
}

}  // namespace farm::worker::sandbox
