#include "worker/sandbox/attach.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

#include "common/fs.h"
#include "common/status_util.h"

namespace farm::worker::sandbox {
namespace {

std::atomic<int> g_winch_fd{-1};

void OnWinch(int) {
  int fd = g_winch_fd.load();
  if (fd >= 0) {
    char w = 'w';
    (void)!write(fd, &w, 1);
  }
}

absl::Status Pipe(common::UniqueFd* r, common::UniqueFd* w) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
  *r = common::UniqueFd(p[0]);
  *w = common::UniqueFd(p[1]);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Attachment>> Attachment::Create(const Options& options) {
  std::unique_ptr<Attachment> a(new Attachment());
  a->options_ = options;
  if (options.tty && options.interactive && !isatty(options.stdin_fd)) {
    return absl::FailedPreconditionError("the input device is not a TTY");
  }
  absl::Status s = Pipe(&a->wake_r_, &a->wake_w_);
  if (!s.ok()) return s;
  fcntl(a->wake_w_.get(), F_SETFL, O_NONBLOCK);
  if (options.tty) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0) return common::ErrnoToStatus(errno, "posix_openpt");
    a->pty_master_ = common::UniqueFd(m);
    char name[128];
    if (grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, name, sizeof(name)) != 0) {
      return common::ErrnoToStatus(errno, "setting up the pseudo-terminal");
    }
    int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (sl < 0) return common::ErrnoToStatus(errno, std::string("open ") + name);
    a->pty_slave_ = common::UniqueFd(sl);
    // The caller's window size, now and on every SIGWINCH.
    struct winsize ws;
    for (int fd : {options.stdout_fd, options.stdin_fd}) {
      if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0) {
        ioctl(m, TIOCSWINSZ, &ws);
        break;
      }
    }
    g_winch_fd = a->wake_w_.get();
    struct sigaction sa = {};
    sa.sa_handler = OnWinch;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGWINCH, &sa, nullptr);
    // Raw mode: every key (^C included) goes to the command's terminal, which interprets it.
    if (options.interactive && tcgetattr(options.stdin_fd, &a->saved_) == 0) {
      struct termios raw = a->saved_;
      cfmakeraw(&raw);
      if (tcsetattr(options.stdin_fd, TCSANOW, &raw) == 0) a->raw_ = true;
    }
  } else {
    if (options.interactive && options.stdin_fd >= 0) {
      s = Pipe(&a->in_r_, &a->in_w_);
      if (!s.ok()) return s;
      fcntl(a->in_w_.get(), F_SETFL, O_NONBLOCK);
    }
    s = Pipe(&a->out_r_, &a->out_w_);
    if (s.ok()) s = Pipe(&a->err_r_, &a->err_w_);
    if (!s.ok()) return s;
  }
  Attachment* self = a.get();
  a->relay_ = std::thread([self] { self->Relay(); });
  return a;
}

Attachment::~Attachment() { Finish(); }

SandboxIo Attachment::io() const {
  SandboxIo io;
  if (options_.tty) {
    io.stdin_fd = pty_slave_.get();
    io.stdout_fd = pty_slave_.get();
    io.stderr_fd = pty_slave_.get();
  } else {
    io.stdin_fd = in_r_.get();  // -1 (/dev/null) without `interactive`
    io.stdout_fd = out_w_.get();
    io.stderr_fd = err_w_.get();
  }
  return io;
}

void Attachment::Finish() {
  if (finished_) return;
  finished_ = true;
  // The runner is gone: once our copies of the command's ends are closed, the relay reads
  // what is left and then EOF (pipes) or EIO (the pty).
  pty_slave_ = common::UniqueFd();
  out_w_ = common::UniqueFd();
  err_w_ = common::UniqueFd();
  in_r_ = common::UniqueFd();
  char f = 'f';
  (void)!write(wake_w_.get(), &f, 1);
  if (relay_.joinable()) relay_.join();
  if (options_.tty) {
    g_winch_fd = -1;
    signal(SIGWINCH, SIG_DFL);
  }
  if (raw_) tcsetattr(options_.stdin_fd, TCSANOW, &saved_);
}

// One thread: caller's stdin → the command's input (a buffer, so that a command that does not
// read cannot stop its output from being relayed); the command's output → the caller's.
void Attachment::Relay() {
  const bool tty = options_.tty;
  int input = tty ? pty_master_.get() : in_w_.get();  // where the caller's stdin goes
  bool read_stdin = options_.interactive && options_.stdin_fd >= 0 && input >= 0;
  int outs[2] = {tty ? pty_master_.get() : out_r_.get(), tty ? -1 : err_r_.get()};
  int dests[2] = {options_.stdout_fd, options_.stderr_fd};
  std::string pending;
  bool finishing = false;
  char buf[65536];
  while (outs[0] >= 0 || outs[1] >= 0) {
    struct pollfd fds[5] = {
        {wake_r_.get(), POLLIN, 0},
        {read_stdin && pending.size() < sizeof(buf) && !finishing ? options_.stdin_fd : -1, POLLIN,
         0},
        {!pending.empty() && !finishing ? input : -1, POLLOUT, 0},
        {outs[0], POLLIN, 0},
        {outs[1], POLLIN, 0}};
    if (poll(fds, 5, finishing ? 100 : -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents & POLLIN) {
      char c[16];
      ssize_t n = read(wake_r_.get(), c, sizeof(c));
      for (ssize_t i = 0; i < n; ++i) {
        if (c[i] == 'f') finishing = true;
        if (c[i] == 'w' && tty) {
          struct winsize ws;
          for (int fd : {options_.stdout_fd, options_.stdin_fd}) {
            if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0) {
              ioctl(pty_master_.get(), TIOCSWINSZ, &ws);
              break;
            }
          }
        }
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(options_.stdin_fd, buf, sizeof(buf) - pending.size());
      if (n > 0) {
        pending.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        read_stdin = false;
        if (!tty && pending.empty()) in_w_ = common::UniqueFd();  // EOF for the command
      }
    }
    if (fds[2].revents & POLLOUT) {
      ssize_t n = write(input, pending.data(), pending.size());
      if (n > 0) pending.erase(0, static_cast<size_t>(n));
      if (n < 0 && errno != EAGAIN && errno != EINTR) pending.clear();
      if (!tty && pending.empty() && !read_stdin) in_w_ = common::UniqueFd();
    }
    if (fds[2].revents & (POLLERR | POLLHUP)) pending.clear();
    for (int i = 0; i < 2; ++i) {
      if (outs[i] < 0 || !(fds[3 + i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(outs[i], buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        outs[i] = -1;  // EOF, or EIO: the pty's last slave is closed
        continue;
      }
      common::WriteFully(dests[i], buf, static_cast<size_t>(n));
    }
    // Finishing with the output still open means a process outside the sandbox kept an end
    // (none should); do not wait for it forever.
    if (finishing && fds[3].revents == 0 && fds[4].revents == 0) break;
  }
}

}  // namespace farm::worker::sandbox
