// The sandbox: runs one command in Linux namespaces on an overlayfs root, for RUN steps and for
// `farm run IMAGE`.
//
// Process boundary. The sandbox runner is this very binary re-executed as
// `/proc/self/exe __farm_sandbox__` (request on fd 3, result on fd 4, the command's stdio on
// 0-2). The long-running worker never enters a namespace, mounts anything or changes
// credentials itself; the runner does, then exits. Re-executing /proc/self/exe needs no path
// configuration and always runs the same build as the worker (even if the file on disk was
// replaced), in `farm`, `farm-worker` and test binaries alike. The price: every main() of a
// binary that runs steps must start with
//
//     int main(int argc, char** argv) {
//       worker::sandbox::RunSandboxIfRequested(argc, argv);  // never returns in the runner
//       ...
//
// (tests get it from //worker/sandbox:test_main, a gtest main that does this).
//
// Inside: new mount, pid, uts and ipc namespaces (and a network namespace with only `lo` for
// network "none"); the overlay root mounted with short relative lowerdirs; pivot_root; fresh
// /proc; a tmpfs /dev with null, zero, full, random, urandom, tty, ptmx + devpts, shm and
// mqueue; read-only sysfs; /etc/resolv.conf and /etc/hosts bind-mounted read-only; the
// request's bind and tmpfs mounts; Docker's masked and read-only /proc paths; the hostname.
// Mount targets are resolved inside the root (a symlink in the image cannot point a mount at
// the host), and every path created only to mount on is reported back (SandboxResult.stubs)
// so the caller can keep it out of the layer. A tiny init is pid 1: the command is its child;
// when the command exits, init exits and the kernel kills whatever else is left. The command
// runs as the image's user (resolved in the image's /etc/passwd and /etc/group, with
// supplementary groups) with Docker's default capability set (all capabilities with
// `insecure`), in its workdir (created if missing). A timeout or a cancellation SIGKILLs pid 1,
// taking the whole tree down. Memory/pids limits come from cgroups (cgroups.h).
//
// Rootless (SandboxRequest.userns set): a user namespace as well, owning all the others,
// mapping container ids 0..65535 to a subordinate range; the root overlay and bind sources are
// idmapped mounts made by the runner, so owners and layer bytes are as in a rootful run
// (rootless.h).
//
//   farm::v1::SandboxRequest req = ...;
//   worker::sandbox::SandboxIo io;
//   io.on_line = [](absl::string_view line, bool is_stderr) { ... };
//   ASSIGN_OR_RETURN(farm::v1::SandboxResult r, worker::sandbox::RunSandbox(req, io, &cancel));
//   if (r.error_code() != 0) ...   // the sandbox could not be set up
//   else r.exit_code() ...
#ifndef FARM_WORKER_SANDBOX_SANDBOX_H_
#define FARM_WORKER_SANDBOX_SANDBOX_H_

#include <functional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "farm/v1/sandbox.pb.h"

namespace farm::worker::sandbox {

// argv[1] of a runner process.
inline constexpr char kRunnerMarker[] = "__farm_sandbox__";

// If this process was started as a sandbox runner, runs it and exits; otherwise returns at once.
// Call it first thing in main(), before any thread is started.
void RunSandboxIfRequested(int argc, char** argv);

struct SandboxIo {
  // Given to the command as fd 0; -1: /dev/null.
  int stdin_fd = -1;
  // Given to the command as fds 1 and 2 when >= 0 (interactive use). Otherwise the output is
  // captured and delivered to `on_line`, line by line (without the newline; lines longer than
  // 64 KiB are split), as it is produced, on the calling thread.
  int stdout_fd = -1;
  int stderr_fd = -1;
  std::function<void(absl::string_view line, bool is_stderr)> on_line;
};

// Does now, once per process, what the first RunSandbox would otherwise do first: compile the
// steps' seccomp filter (the default profile, ~15 ms of libseccomp). Thread-safe.
void PrepareSandbox();

// Runs `request` in a sandbox runner and waits for it. `cancel` (nullable): when notified, the
// process tree is killed and the result says `cancelled`. A non-OK status means the runner
// itself failed (could not start, crashed): a host fault. Problems setting up the sandbox
// (a bad user, a mount target that is not a directory, ...) are in the result's error fields.
absl::StatusOr<farm::v1::SandboxResult> RunSandbox(const farm::v1::SandboxRequest& request,
                                                   const SandboxIo& io,
                                                   const absl::Notification* cancel);

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_SANDBOX_H_
