// The sandbox request of a RUN step (and of `farm run`), apart from its mounts (run_mounts.h):
// the run directory's layout, the overlay of the parent layers, the command's environment, the
// RUN's network, security and timeout, the host files and cgroups, and the inline files.
// No I/O beyond the run directory: the request goes to worker/sandbox/sandbox.h's RunSandbox.
//
//   ASSIGN_OR_RETURN(RunDirs dirs, RunDirs::Create(run_dir));
//   ASSIGN_OR_RETURN(farm::v1::SandboxRequest req,
//                    RunSandboxRequest(run, env, stack.base_dir(), stack.lower_names(), dirs,
//                                      host, "farm-123-7"));
//   RETURN_IF_ERROR(AddInlineFiles(run, run_dir, &req));
#ifndef FARM_WORKER_RUN_REQUEST_H_
#define FARM_WORKER_RUN_REQUEST_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "farm/v1/sandbox.pb.h"
#include "farm/v1/step.pb.h"

namespace farm::worker {

// The directories a sandboxed command needs in its run directory: upper/ (what it writes,
// later the layer), work/ (overlayfs' work directory) and rootfs/ (where the root is mounted).
struct RunDirs {
  std::string upper;
  std::string work;
  std::string rootfs;
  // Creates them (0755) under `run_dir`.
  static absl::StatusOr<RunDirs> Create(const std::string& run_dir);
};

// What the host gives every sandbox: the cgroups to create (sandbox::PlanCgroups), and files
// bind-mounted read-only at /etc/resolv.conf and /etc/hosts ("" or missing: none).
struct SandboxHost {
  std::vector<farm::v1::SandboxCgroup> cgroups;
  std::string resolv_conf;
  std::string hosts;
};

// "none" is NONE; "", "default" and "host" are HOST; anything else nullopt.
std::optional<farm::v1::SandboxRequest::Network> ParseNetwork(const std::string& mode);

// The request for a command on the layers `lower_names` (relative to `layer_dir`) with `env`:
// the overlay's directories, env, user, working directory ("/" if unset), hostname ("farm" if
// unset), the host's cgroups under `cgroup_name`, and its host files that exist. The command,
// network and the rest are the caller's.
farm::v1::SandboxRequest BaseSandboxRequest(const std::string& layer_dir,
                                            const std::vector<std::string>& lower_names,
                                            const RunDirs& dirs, const farm::v1::ExecEnv& env,
                                            const SandboxHost& host,
                                            const std::string& cgroup_name);

// A RUN's request: BaseSandboxRequest plus its command, --network (default, none or host),
// --security (sandbox or insecure) and timeout. INVALID_ARGUMENT naming the option for a mode
// it does not know.
absl::StatusOr<farm::v1::SandboxRequest> RunSandboxRequest(
    const farm::v1::RunOp& run, const farm::v1::ExecEnv& env, const std::string& layer_dir,
    const std::vector<std::string>& lower_names, const RunDirs& dirs, const SandboxHost& host,
    const std::string& cgroup_name);

// Heredoc scripts and other inline files of a RUN: written to `run_dir`/files/N (mode as given,
// else 0755) and mounted read-only at their (absolute) names; INVALID_ARGUMENT naming a
// relative one.
absl::Status AddInlineFiles(const farm::v1::RunOp& run, const std::string& run_dir,
                            farm::v1::SandboxRequest* request);

}  // namespace farm::worker

#endif  // FARM_WORKER_RUN_REQUEST_H_
