// Attachment: connects a caller's stdin/stdout/stderr to a sandboxed command without giving
// the command any of the caller's own descriptors (`farm run`). A terminal handed to a
// command is a terminal it can push keystrokes into (TIOCSTI), reconfigure or read behind the
// caller's back; so the command gets either
//   - with `tty`: the slave of a new pseudo-terminal, in a session of its own (the runner
//     makes it the command's controlling terminal), while this process relays bytes between
//     the caller's terminal (in raw mode for the duration, restored after) and the master,
//     and passes on window size changes; or
//   - without: pipes, relayed to and from the caller's descriptors byte for byte; stdin only
//     with `interactive` (otherwise /dev/null, as `docker run` without -i).
//
//   ASSIGN_OR_RETURN(std::unique_ptr<Attachment> a, Attachment::Create({0, 1, 2, true, true}));
//   req.set_tty(true);
//   ASSIGN_OR_RETURN(SandboxResult r, RunSandbox(req, a->io(), cancel));
//   a->Finish();  // the last output relayed, the terminal restored
//
// One Attachment at a time per process (it owns the SIGWINCH handler while it lives).
#ifndef FARM_WORKER_SANDBOX_ATTACH_H_
#define FARM_WORKER_SANDBOX_ATTACH_H_

#include <termios.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/fs.h"
#include "worker/sandbox/sandbox.h"

namespace farm::worker::sandbox {

class Attachment {
 public:
  struct Options {
    int stdin_fd = 0, stdout_fd = 1, stderr_fd = 2;
    bool interactive = false;  // relay stdin
    bool tty = false;          // a pseudo-terminal instead of pipes
  };

  // FAILED_PRECONDITION when `tty` and `interactive` but stdin is not a terminal (docker's
  // "the input device is not a TTY").
  static absl::StatusOr<std::unique_ptr<Attachment>> Create(const Options& options);
  ~Attachment();  // Finish()

  // The descriptors for RunSandbox (valid until Finish).
  SandboxIo io() const;
  // Call once the runner has exited: closes the command's ends, relays what is left of its
  // output, stops reading stdin, restores the terminal. Idempotent.
  void Finish();

 private:
  Attachment() = default;
  void Relay();

  Options options_;
  // The command's ends (given to the runner) and ours.
  common::UniqueFd pty_slave_, pty_master_;
  common::UniqueFd in_r_, in_w_, out_r_, out_w_, err_r_, err_w_;
  common::UniqueFd wake_r_, wake_w_;  // Finish and SIGWINCH wake the relay
  bool raw_ = false;
  struct termios saved_ = {};
  std::thread relay_;
  bool finished_ = false;
};

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_ATTACH_H_
