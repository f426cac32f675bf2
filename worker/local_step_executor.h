// LocalStepExecutor: the StepExecutor that runs steps on this machine. Used in-process by
// `farm build` and by farm-worker for remote tasks.
//
// RUN: the parent layers come from the layer store (fetched from the CAS and unpacked once),
// stacked under a fresh upperdir in a sandbox runner (worker/sandbox/sandbox.h) with the
// step's env, user, workdir, network, mounts and limits; on success the upperdir, minus the
// mount points the sandbox had to create, becomes the layer (worker/layer/layer_io.h) and is
// kept in the layer store as that layer's unpacked form. COPY/ADD and WORKDIR write their
// layer's tree directly (worker/copy/copy_op.h), reading the parent file system through
// worker::layerstore::StackView: no namespace, no mount.
//
// State under Options::state_dir: layers/ (the layer store), cache-mounts/ (RUN
// --mount=type=cache), run/ (per-step scratch, wiped at start), tmp/ (layer spool files),
// network/ (the steps' resolv.conf). With the policy's isolated network (the default) the
// executor owns an nftables table (worker/network/step_network.h) for as long as it lives.
// One process per state_dir (the layer store holds a lock).
//
// The process must be root (namespaces, overlayfs, chown), and its main() must call
// worker::sandbox::RunSandboxIfRequested(argc, argv) first (see worker/sandbox/sandbox.h).
//
//   worker::LocalStepExecutor::Options o;
//   o.state_dir = home + "/worker";
//   o.cas = cas;
//   ASSIGN_OR_RETURN(auto exec, worker::LocalStepExecutor::Create(std::move(o)));
//   ASSIGN_OR_RETURN(farm::v1::StepResult r, exec->Execute(request, log, &cancel));
//
// Secrets (RUN --mount=type=secret) come from Options::secrets or, per call, from
// CallOptions::secrets; their bytes reach the sandbox in memory only (a tmpfs private to the
// step's mount namespace, or its environment) and are never written to the state directory.
#ifndef FARM_WORKER_LOCAL_STEP_EXECUTOR_H_
#define FARM_WORKER_LOCAL_STEP_EXECUTOR_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/blob_store.h"
#include "executor/step_executor.h"
#include "farm/v1/sandbox.pb.h"
#include "worker/cache_mounts.h"
#include "worker/copy/fetch.h"
#include "worker/layerstore/layer_store.h"
#include "worker/run_request.h"
#include "worker/sandbox/cgroups.h"
#include "worker/sandbox_policy.h"
#include "worker/write_behind.h"

namespace farm::worker {

class LocalStepExecutor : public executor::StepExecutor {
 public:
  struct Options {
    std::string state_dir;                  // required
    std::shared_ptr<cache::BlobStore> cas;  // required: layers, context files, outputs
    int64_t layer_store_max_bytes = 0;      // unpacked layers kept; 0 = unlimited
    executor::SecretProvider::Ptr secrets;  // RUN --mount=type=secret|ssh; null = none
    sandbox::CgroupLimits limits;           // per RUN step; zero = none (see policy)
    // The operator's sandbox decisions: permitted entitlements, no_new_privs, the default
    // pids limit (worker/sandbox_policy.h).
    SandboxPolicy policy;
    // Host files bind-mounted read-only at /etc/resolv.conf and /etc/hosts in RUN ("" = none).
    std::string resolv_conf = "/etc/resolv.conf";
    std::string hosts = "/etc/hosts";
    int compression_threads = 0;  // 0 = every core
    // ADD https://…; default: libcurl under the policy's destination rules and limits.
    copy::UrlFetcher fetcher;
    // The executor's own warnings (one line each); default: stderr.
    std::function<void(absl::string_view)> log;
    // Store each layer's blob in the CAS on a thread of its own while the next steps run
    // (write_behind.h): results come back with store_pending, and Sync() waits for them.
    // `farm build`; farm-worker stores before it reports.
    bool store_layers_behind = false;
  };

  // FAILED_PRECONDITION when not root, when the layer store is in use by another process, or
  // when limits are asked for but cgroups cannot provide them (the policy's default pids limit
  // is dropped instead, with a line on stderr).
  // The steps' isolated network is made in the background: an error making it (nftables
  // missing or refusing the rules) is the error of every RUN.
  static absl::StatusOr<std::unique_ptr<LocalStepExecutor>> Create(Options options);
  ~LocalStepExecutor() override;

  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override;

  // What one Execute call may set beyond the executor's Options.
  struct CallOptions {
    // Where this step's RUN --mount=type=secret|ssh get their values, instead of
    // Options::secrets (null: Options::secrets). farm-worker passes the secrets the scheduler
    // sent with the task, so they reach that step only.
    executor::SecretProvider::Ptr secrets;
  };
  // Execute with per-call options. Thread-safe like Execute.
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel,
                                               const CallOptions& call);

  // `farm run IMAGE`: runs `args` on `layers` with the image's env/user/workdir, the caller's
  // stdin/stdout/stderr attached and the caller's terminal session; what the command writes is
  // discarded. Returns its exit status (128+N when killed by signal N). `network` host and
  // `insecure` are the caller's own choice (as `docker run --privileged`): no entitlement.
  struct RunOptions {
    std::vector<farm::v1::Layer> layers;  // bottom to top
    farm::v1::ExecEnv env;
    std::vector<std::string> args;
    std::string network = "default";  // default | host | none
    bool insecure = false;
    // The caller's descriptors; the command gets none of them (sandbox/attach.h): with `tty`
    // a pseudo-terminal of its own (in raw mode relay), else pipes; stdin only if
    // `interactive` (docker run -i / -t).
    int stdin_fd = 0, stdout_fd = 1, stderr_fd = 2;
    bool interactive = false;
    bool tty = false;
    const absl::Notification* cancel = nullptr;
  };
  absl::StatusOr<int> RunAttached(const RunOptions& options);

  absl::Status Sync() override { return behind_.Sync(); }

  layerstore::LayerStore* layer_store() { return store_.get(); }

 private:
  LocalStepExecutor(Options options, std::unique_ptr<layerstore::LayerStore> store,
                    std::vector<farm::v1::SandboxCgroup> cgroups);
  // The isolated step network once made (null when the policy does not isolate).
  absl::StatusOr<network::StepNetwork*> Network();
  struct RunDir;
  absl::StatusOr<std::string> NewRunDir();
  // What this host gives every sandbox (cgroups, resolv.conf, hosts).
  SandboxHost Host() const;
  // RUN (run_request.h, run_mounts.h, run_command.h do the work): validate, build the sandbox
  // request with its mounts, run the command, turn its upperdir into the layer.
  absl::StatusOr<farm::v1::StepResult> ExecuteRun(const farm::v1::StepRequest& request,
                                                  const layerstore::Stack& stack,
                                                  const executor::LogSink& log,
                                                  const absl::Notification* cancel,
                                                  executor::SecretProvider* secrets);
  absl::StatusOr<farm::v1::StepResult> ExecuteCopy(const farm::v1::StepRequest& request,
                                                   const layerstore::Stack& stack,
                                                   const absl::Notification* cancel);
  absl::StatusOr<farm::v1::StepResult> ExecuteMkdir(const farm::v1::StepRequest& request,
                                                    const layerstore::Stack& stack);
  // Archives `dir` as the step's layer, stores it in the CAS and keeps `dir` as its unpacked
  // form; fills result.layer unless nothing changed.
  absl::Status FinishLayer(const std::string& dir, const farm::v1::LayerOptions& output,
                           farm::v1::StepResult* result);

  const Options options_;
  std::unique_ptr<layerstore::LayerStore> store_;
  const std::vector<farm::v1::SandboxCgroup> cgroups_;
  // The isolated step network (null when the policy does not isolate), made by prepare_.
  absl::StatusOr<std::unique_ptr<network::StepNetwork>> network_;
  absl::Notification network_ready_;
  std::thread prepare_;
  CacheMounts cache_mounts_;
  std::atomic<uint64_t> counter_{0};
  WriteBehind behind_;
};

}  // namespace farm::worker

#endif  // FARM_WORKER_LOCAL_STEP_EXECUTOR_H_
