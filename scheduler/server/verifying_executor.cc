#include "scheduler/server/verifying_executor.h"

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status_util.h"

namespace farm::scheduler::server {

absl::StatusOr<farm::v1::StepResult> VerifyingExecutor::Execute(
    const farm::v1::StepRequest& request, const executor::LogSink& log,
    const absl::Notification* cancel) {
  absl::StatusOr<farm::v1::StepResult> r = inner_->Execute(request, log, cancel);
  if (!r.ok() || r->exit_code() != 0 || r->timed_out() || !r->has_layer()) return r;
  const farm::v1::Layer& layer = r->layer();
  absl::StatusOr<common::Digest> d = common::Digest::ParseOci(layer.digest(), layer.size());
  if (!d.ok()) {
    return absl::InternalError(absl::StrCat("the worker reported a malformed layer digest \"",
                                            layer.digest(), "\": ", d.status().message()));
  }
  if (layer.diff_id().empty() ||
      !common::IsValidSha256Hex(layer.diff_id().substr(layer.diff_id().find(':') + 1))) {
    return absl::InternalError(
        absl::StrCat("the worker reported layer ", layer.digest(), " without a valid diff_id"));
  }
  absl::StatusOr<std::vector<common::Digest>> missing = cas_->FindMissing({*d});
  if (!missing.ok()) {
    return common::Annotate(missing.status(),
                            absl::StrCat("checking the worker's layer ", layer.digest()));
  }
  if (!missing->empty()) {
    return absl::UnavailableError(absl::StrCat("the worker reported layer ", layer.digest(), " (",
                                               layer.size(), " bytes), but farm-cache lacks it"));
  }
  return r;
}

}  // namespace farm::scheduler::server
