// RUN --mount: what each mount of a RUN becomes in the sandbox request, and what it needs
// while the command runs. A RunMounts holds those (the layer stacks a bind or a cache seed
// reads, cache-mount leases, ssh-agent proxies) until it is destroyed: keep it alive until the
// sandbox has exited.
//
//   bind    from a stage or image: an overlay of its layers at the source path (read-write
//           mounts get their own upperdir, discarded); from the build context: the source
//           materialized under the run directory. A source must exist.
//   cache   a directory kept across steps by id (default: the target), with its sharing mode,
//           owner and mode; `from` seeds a new one.
//   tmpfs   a tmpfs of size_bytes (0: unlimited).
//   secret  the value, from the SecretProvider, as a file (default /run/secrets/<id>, mode
//           0400) on a tmpfs of the sandbox's own, and/or an environment variable. Never
//           written to the run directory.
//   ssh     a proxy socket to the provider's agent (default /run/buildkit/ssh_agent.N); the
//           first one is SSH_AUTH_SOCK.
// A relative target is relative to the RUN's working directory. A secret or ssh agent that
// is absent is skipped, unless required (FAILED_PRECONDITION). Errors name the mount
// ("--mount #2 (target /cache)").
//
//   RunMounts mounts({store, cas, &cache_mounts, secrets});
//   for (int i = 0; i < run.mounts_size(); ++i) {
//     RETURN_IF_ERROR(mounts.Add(run.mounts(i), i, req.cwd(), run_dir, cancel, &req));
//   }
//   ... run the sandbox; then `mounts` may go.
#ifndef FARM_WORKER_RUN_MOUNTS_H_
#define FARM_WORKER_RUN_MOUNTS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "cache/blob_store.h"
#include "executor/step_executor.h"
#include "farm/v1/sandbox.pb.h"
#include "farm/v1/step.pb.h"
#include "worker/cache_mounts.h"
#include "worker/layerstore/layer_store.h"
#include "worker/ssh_proxy.h"

namespace farm::worker {

class RunMounts {
 public:
  // Where mounts come from. Not owned; they outlive the RunMounts.
  struct Sources {
    layerstore::LayerStore* layers = nullptr;     // bind and cache seeds from a stage or image
    std::shared_ptr<cache::BlobStore> cas;        // bind and cache seeds from the build context
    CacheMounts* caches = nullptr;                // type=cache
    executor::SecretProvider* secrets = nullptr;  // type=secret and ssh; null: none provided
  };

  explicit RunMounts(Sources sources) : sources_(std::move(sources)) {}

  // Adds mount number `index` (0-based) of a RUN whose working directory is `workdir` to
  // `request` (its mounts; a secret's variable to its env). Scratch goes under `run_dir`.
  // `cancel` (nullable) stops a wait for a locked cache. Not thread-safe.
  absl::Status Add(const farm::v1::Mount& mount, int index, const std::string& workdir,
                   const std::string& run_dir, const absl::Notification* cancel,
                   farm::v1::SandboxRequest* request);

 private:
  // Each kind. `what` names the mount for errors ("--mount #2 (target /x)"); a mount whose
  // target is missing was refused before.
  absl::Status AddBind(const farm::v1::Mount& m, const std::string& target,
                       const std::string& mount_dir, const std::string& what,
                       farm::v1::SandboxRequest* request);
  absl::Status AddCache(const farm::v1::Mount& m, const std::string& target,
                        const absl::Notification* cancel, const std::string& what,
                        farm::v1::SandboxRequest* request);
  absl::Status AddSecret(const farm::v1::Mount& m, std::string target, const std::string& dir,
                         const std::string& what, farm::v1::SandboxRequest* request);
  absl::Status AddSsh(const farm::v1::Mount& m, std::string target, const std::string& socket,
                      const std::string& what, farm::v1::SandboxRequest* request);

  Sources sources_;
  std::vector<std::unique_ptr<layerstore::Stack>> stacks_;
  std::vector<std::unique_ptr<CacheMounts::Lease>> caches_;
  std::vector<std::unique_ptr<SshAgentProxy>> proxies_;
  int ssh_count_ = 0;
};

}  // namespace farm::worker

#endif  // FARM_WORKER_RUN_MOUNTS_H_
