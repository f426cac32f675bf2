// RemoteStepExecutor: the StepExecutor the build engine uses on farm-scheduler. Every step it
// is given (a cache miss) becomes a Dispatcher::Run with the build's fields (tenant, priority,
// build id, secrets, cache instance), so the step runs on a farm-worker; the engine cannot
// tell it from the in-process LocalStepExecutor of `farm build`.
//
// Only the secrets the step mounts (RUN --mount=type=secret ids) travel with its task. The
// step's parent chain IDs (for locality) are computed from request.parents()' diff_ids.
//
//   scheduler::dispatch::RemoteBuild b;
//   b.build_id = id;  b.tenant = req.tenant();  b.priority = req.priority();
//   b.secrets = {req.secrets().begin(), req.secrets().end()};  b.cache_instance = "main";
//   scheduler::engine::EngineDeps deps{cas, ac,
//   std::make_shared<scheduler::dispatch::RemoteStepExecutor>(d, b)};
#ifndef FARM_SCHEDULER_DISPATCH_REMOTE_STEP_EXECUTOR_H_
#define FARM_SCHEDULER_DISPATCH_REMOTE_STEP_EXECUTOR_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "executor/step_executor.h"
#include "farm/v1/step.pb.h"
#include "scheduler/dispatch/dispatcher.h"

namespace farm::scheduler::dispatch {

// The per-build fields of every task a RemoteStepExecutor submits.
struct RemoteBuild {
  std::string build_id;
  std::string tenant;
  int32_t priority = 0;
  std::map<std::string, std::string> secrets;  // id → value, for RUN --mount=type=secret
  std::string cache_instance;                  // the farm-cache instance workers use
};

class RemoteStepExecutor final : public executor::StepExecutor {
 public:
  // `dispatcher` must outlive this executor.
  RemoteStepExecutor(Dispatcher* dispatcher, RemoteBuild build);

  // Dispatcher::Run of `request` (see dispatcher.h for the statuses). INVALID_ARGUMENT if a
  // parent layer's diff_id is malformed. Thread-safe.
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override;

  // The TaskSpec Execute submits (exposed for tests).
  absl::StatusOr<TaskSpec> SpecFor(const farm::v1::StepRequest& request) const;

 private:
  Dispatcher* const dispatcher_;
  const RemoteBuild build_;
};

// OCI chain IDs of every prefix of `parents` (bottom to top): [ChainID(L0), ChainID(L0,L1),
// ...], where ChainID(L0) = DiffID(L0) and ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " +
// DiffID(Ln)) as "sha256:<hex>" (oci::ChainIds, the IDs workers report).
// INVALID_ARGUMENT names the parent whose diff_id is not "sha256:<64 hex>".
absl::StatusOr<std::vector<std::string>> ParentChainIds(
    const google::protobuf::RepeatedPtrField<farm::v1::Layer>& parents);

// The ids of the secrets `request` mounts (RUN --mount=type=secret: id, else the target's
// base name, as the worker resolves them).
std::vector<std::string> MountedSecretIds(const farm::v1::StepRequest& request);

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_REMOTE_STEP_EXECUTOR_H_
