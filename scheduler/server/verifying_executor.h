// VerifyingExecutor: a StepExecutor decorator for farm-scheduler. The engine records a step's
// result in the action cache as soon as the executor returns it; on the farm that result comes
// from a worker, so before it is believed the layer it names must be in farm-cache (where every
// blob was hashed on upload: present means its content matches its digest). A result naming a
// missing blob is UNAVAILABLE (the worker's upload was lost) instead of a poisoned cache entry.
//
// The layer's diff_id (its uncompressed digest, which goes into image configs and ChainIDs) is
// checked too, without reading the layer: BlobStore::GetLayerInfo asks farm-cache
// (farm.v1.LayerInfo), which worked out every gzip/zstd blob's diff_id while it received and
// verified the upload. The compression farm-cache saw must be the one the layer's media type
// declares and the diff_id the one the worker claims; otherwise PERMISSION_DENIED and nothing
// is written to the action cache. One small RPC per result, which also answers "is it there".
//
//   auto exec = std::make_shared<VerifyingExecutor>(remote_executor, cas);
#ifndef FARM_SCHEDULER_SERVER_VERIFYING_EXECUTOR_H_
#define FARM_SCHEDULER_SERVER_VERIFYING_EXECUTOR_H_

#include <memory>
#include <string>

#include "cache/blob_store.h"
#include "executor/step_executor.h"

namespace farm::scheduler::server {

class VerifyingExecutor final : public executor::StepExecutor {
 public:
  VerifyingExecutor(std::shared_ptr<executor::StepExecutor> inner,
                    std::shared_ptr<cache::BlobStore> cas)
      : inner_(std::move(inner)), cas_(std::move(cas)) {}

  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override;
  absl::Status Sync() override { return inner_->Sync(); }

 private:
  std::shared_ptr<executor::StepExecutor> inner_;
  std::shared_ptr<cache::BlobStore> cas_;
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_VERIFYING_EXECUTOR_H_
