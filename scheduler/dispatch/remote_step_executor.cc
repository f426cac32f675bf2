#include "scheduler/dispatch/remote_step_executor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "oci/chain_id.h"

namespace farm::scheduler::dispatch {

absl::StatusOr<std::vector<std::string>> ParentChainIds(
    const google::protobuf::RepeatedPtrField<farm::v1::Layer>& parents) {
  std::vector<std::string> diff_ids;
  for (int i = 0; i < parents.size(); ++i) {
    const std::string& diff_id = parents[i].diff_id();
    if (!common::Digest::ParseOci(diff_id, 0).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("parent layer ", i, " (", parents[i].digest(), ") has diff_id \"", diff_id,
                       "\": want \"sha256:\" and 64 lowercase hex characters"));
    }
    diff_ids.push_back(diff_id);
  }
  return oci::ChainIds(diff_ids);
}

std::vector<std::string> MountedSecretIds(const farm::v1::StepRequest& request) {
  std::vector<std::string> ids;
  if (!request.has_run()) return ids;
  for (const farm::v1::Mount& m : request.run().mounts()) {
    if (m.type() != farm::v1::Mount::SECRET) continue;
    std::string id = m.id();
    if (id.empty()) {
      size_t slash = m.target().rfind('/');
      id = slash == std::string::npos ? m.target() : m.target().substr(slash + 1);
    }
    if (!id.empty()) ids.push_back(std::move(id));
  }
  return ids;
}

RemoteStepExecutor::RemoteStepExecutor(Dispatcher* dispatcher, RemoteBuild build)
    : dispatcher_(dispatcher), build_(std::move(build)) {}

absl::StatusOr<TaskSpec> RemoteStepExecutor::SpecFor(const farm::v1::StepRequest& request) const {
  TaskSpec spec;
  spec.key = request.key();
  spec.request = request;
  spec.build_id = build_.build_id;
  spec.tenant = build_.tenant;
  spec.priority = build_.priority;
  spec.platform = request.env().platform();
  spec.cache_instance = build_.cache_instance;
  // RUN --mount=type=cache directories are per tenant: one tenant's build never reads or
  // poisons another's (the worker keys its cache directories by id).
  if (!build_.tenant.empty() && spec.request.has_run()) {
    for (farm::v1::Mount& m : *spec.request.mutable_run()->mutable_mounts()) {
      if (m.type() != farm::v1::Mount::CACHE) continue;
      std::string id = m.id().empty() ? m.target() : m.id();
      m.set_id(absl::StrCat("tenant/", build_.tenant, "/", id));
    }
  }
  for (const std::string& id : MountedSecretIds(request)) {
    auto it = build_.secrets.find(id);
    if (it != build_.secrets.end()) spec.secrets.insert(*it);
  }
  ASSIGN_OR_RETURN(spec.parent_chain_ids, ParentChainIds(request.parents()));
  return spec;
}

absl::StatusOr<farm::v1::StepResult> RemoteStepExecutor::Execute(
    const farm::v1::StepRequest& request, const executor::LogSink& log,
    const absl::Notification* cancel) {
  ASSIGN_OR_RETURN(TaskSpec spec, SpecFor(request));
  return dispatcher_->Run(spec, log, cancel);
}

}  // namespace farm::scheduler::dispatch
