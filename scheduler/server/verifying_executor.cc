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
  RETURN_IF_ERROR(CheckDiffId(layer, *d));
  return r;
}

absl::Status VerifyingExecutor::CheckDiffId(const farm::v1::Layer& layer,
                                            const common::Digest& digest) {
  std::string pair = absl::StrCat(layer.digest(), " ", layer.diff_id());
  {
    absl::MutexLock l(&mu_);
    if (verified_.contains(pair)) return absl::OkStatus();
  }
  absl::StatusOr<oci::Compression> compression = oci::LayerCompression(layer.media_type());
  if (!compression.ok()) {
    return absl::PermissionDeniedError(absl::StrCat("the worker reported layer ", layer.digest(),
                                                    " with media type \"", layer.media_type(),
                                                    "\": ", compression.status().message()));
  }
  absl::StatusOr<std::unique_ptr<cache::BlobReader>> reader = cas_->OpenRead(digest, 0, 0);
  if (!reader.ok()) {
    return common::Annotate(reader.status(), absl::StrCat("reading layer ", layer.digest(),
                                                          " back to check its diff_id"));
  }
  oci::LayerDigester digester(*compression, /*hash_stored=*/false);
  while (true) {
    absl::StatusOr<absl::string_view> chunk = (*reader)->Next();
    if (!chunk.ok()) {
      return common::Annotate(chunk.status(), absl::StrCat("reading layer ", layer.digest()));
    }
    if (chunk->empty()) break;
    if (absl::Status s = digester.Update(*chunk); !s.ok()) {
      return absl::PermissionDeniedError(absl::StrCat("the worker's layer ", layer.digest(),
                                                      " does not decompress: ", s.message()));
    }
  }
  absl::StatusOr<oci::LayerDigests> got = digester.Finish();
  if (!got.ok()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the worker's layer ", layer.digest(), " does not decompress: ", got.status().message()));
  }
  std::string actual = absl::StrCat("sha256:", got->diff_id.hash);
  if (actual != layer.diff_id()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the worker reported diff_id ", layer.diff_id(), " for layer ", layer.digest(),
                     ", but its content is ", actual, ": result refused, nothing cached"));
  }
  absl::MutexLock l(&mu_);
  if (verified_.size() >= 100000) verified_.clear();  // bounded; a miss only costs a re-read
  verified_.insert(std::move(pair));
  return absl::OkStatus();
}

}  // namespace farm::scheduler::server
