#include "scheduler/server/verifying_executor.h"

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/compression.h"
#include "oci/media_types.h"

namespace farm::scheduler::server {

absl::StatusOr<farm::v1::StepResult> VerifyingExecutor::Execute(
    const farm::v1::StepRequest& request, const executor::LogSink& log,
    const absl::Notification* cancel) {
  absl::StatusOr<farm::v1::StepResult> r = inner_->Execute(request, log, cancel);
  if (!r.ok() || r->exit_code() != 0 || r->timed_out() || !r->has_layer()) return r;
  const farm::v1::Layer& layer = r->layer();
  // "worker w3" on the farm (the dispatcher names the worker whose result it is).
  const std::string who = r->worker().empty() ? "the worker" : absl::StrCat("worker ", r->worker());
  absl::StatusOr<common::Digest> d = common::Digest::ParseOci(layer.digest(), layer.size());
  if (!d.ok()) {
    return absl::InternalError(absl::StrCat(who, " reported a malformed layer digest \"",
                                            layer.digest(), "\": ", d.status().message()));
  }
  if (layer.diff_id().empty() ||
      !common::IsValidSha256Hex(layer.diff_id().substr(layer.diff_id().find(':') + 1))) {
    return absl::InternalError(
        absl::StrCat(who, " reported layer ", layer.digest(), " without a valid diff_id"));
  }
  absl::StatusOr<oci::Compression> declared = oci::LayerCompression(layer.media_type());
  if (!declared.ok()) {
    return absl::PermissionDeniedError(absl::StrCat(who, " reported layer ", layer.digest(),
                                                    " with media type \"", layer.media_type(),
                                                    "\": ", declared.status().message()));
  }
  absl::StatusOr<std::vector<absl::StatusOr<cache::LayerInfo>>> infos =
      cas_->GetLayerInfo(absl::MakeConstSpan(&*d, 1));
  if (!infos.ok()) {
    return common::Annotate(infos.status(),
                            absl::StrCat("checking layer ", layer.digest(), " from ", who));
  }
  const absl::StatusOr<cache::LayerInfo>& info = (*infos)[0];
  if (absl::IsNotFound(info.status())) {
    return absl::UnavailableError(absl::StrCat(who, " reported layer ", layer.digest(), " (",
                                               layer.size(), " bytes), but farm-cache lacks it"));
  }
  if (absl::IsInvalidArgument(info.status())) {
    return absl::PermissionDeniedError(absl::StrCat(
        who, "'s layer ", layer.digest(), " does not decompress: ", info.status().message()));
  }
  if (!info.ok()) {
    return common::Annotate(info.status(), absl::StrCat("checking the diff_id of layer ",
                                                        layer.digest(), " from ", who));
  }
  if (info->compression != *declared) {
    return absl::PermissionDeniedError(absl::StrCat(
        who, " reported layer ", layer.digest(), " as ", oci::CompressionName(*declared),
        " (media type \"", layer.media_type(), "\"), but its bytes are ",
        oci::CompressionName(info->compression), ": result refused, nothing cached"));
  }
  if (info->diff_id.OciString() != layer.diff_id()) {
    return absl::PermissionDeniedError(absl::StrCat(
        who, " reported diff_id ", layer.diff_id(), " for layer ", layer.digest(),
        ", but its content is ", info->diff_id.OciString(), ": result refused, nothing cached"));
  }
  return r;
}

}  // namespace farm::scheduler::server
