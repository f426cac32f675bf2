// SandboxPolicy: what the operator of this host decides about the sandbox every RUN step and
// `farm run` gets, beyond the defaults that are not negotiable (Docker's seccomp profile and
// capabilities, only the standard devices, masked /proc paths; worker/sandbox/sandbox.h):
// which entitlements the host permits, no_new_privs, the default pids limit, and the network
// a step's default network is.
//
//   worker::SandboxPolicy p;
//   p.entitlements = {"network.host"};
//   RETURN_IF_ERROR(worker::ApplyRunSandbox(p, run.network(), run.security(), true, &req));
#ifndef FARM_WORKER_SANDBOX_POLICY_H_
#define FARM_WORKER_SANDBOX_POLICY_H_

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "farm/v1/sandbox.pb.h"
#include "worker/network/step_network.h"
#include "worker/subids.h"

namespace farm::worker {

// Every RUN's pid limit when none is configured: a fork bomb stops there instead of taking the
// host. Generous for builds (parallel compilers, test suites).
inline constexpr int64_t kDefaultPidsLimit = 4096;

struct SandboxPolicy {
  // Entitlements this host permits (executor/entitlements.h); a step that needs another one
  // fails with FAILED_PRECONDITION before anything runs.
  std::set<std::string> entitlements;
  // no_new_privs for every command (Docker's --security-opt no-new-privileges): setuid
  // binaries and file capabilities then grant nothing. Off by default, as in Docker.
  bool no_new_privileges = false;
  // The pids limit of a RUN when LocalStepExecutor::Options::limits.pids is 0; 0 = none. Best
  // effort: where cgroups cannot provide it (cgroup v2 without delegation), steps run without
  // it and the executor says so once.
  int64_t default_pids_limit = kDefaultPidsLimit;
  // The default network of RUN steps (and farm run): a network namespace of its own, routed
  // out under `network`'s rules (worker/network/step_network.h). false: the host's network,
  // as before this existed (the operator's explicit choice: steps then reach the host).
  bool isolate_network = true;
  network::StepNetworkOptions network;
  // Rootless steps (worker/sandbox/rootless.h): every RUN and farm run in a user namespace
  // mapping container ids 0..65535 to `subids`, which must then be set (LocalStepExecutor::
  // Create refuses the policy otherwise).
  bool rootless = false;
  SubIdRange subids;
  // ADD <url>: the downloads' limits (the destination rules are `network`'s).
  int64_t add_max_bytes = int64_t{8} << 30;
  absl::Duration add_timeout = absl::Minutes(30);
  // The most one image layer or one ADDed archive may expand to when unpacked on this host
  // (setting extract-max-size): a small gzip can expand to terabytes. Layers count their
  // uncompressed tar, archives the sizes their entries declare (sparse files included).
  int64_t extract_max_bytes = int64_t{64} << 30;
};

// Sets the network and security of a sandbox request from a RUN's --network and --security
// (or farm run's --network/--privileged): INVALID_ARGUMENT for unknown values;
// FAILED_PRECONDITION when `check_entitlements` and the step needs an entitlement `policy`
// does not permit (farm run, the caller's own choice on its own machine, does not check).
// `step_network` (null when the policy does not isolate) makes the default network.
absl::Status ApplyRunSandbox(const SandboxPolicy& policy, const network::StepNetwork* step_network,
                             absl::string_view network, absl::string_view security,
                             bool check_entitlements, farm::v1::SandboxRequest* req);

}  // namespace farm::worker

#endif  // FARM_WORKER_SANDBOX_POLICY_H_
