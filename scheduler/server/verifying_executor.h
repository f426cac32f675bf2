// VerifyingExecutor: a StepExecutor decorator for farm-scheduler. The engine records a step's
// result in the action cache as soon as the executor returns it; on the farm that result comes
// from a worker, so before it is believed the layer it names must be in farm-cache (where every
// blob was hashed on upload: present means its content matches its digest). A result naming a
// missing blob is UNAVAILABLE (the worker's upload was lost) instead of a poisoned cache entry.
//
// The layer's diff_id (its uncompressed digest, which goes into image configs and ChainIDs) is
// checked too: the layer is read back from farm-cache and hashed uncompressed (gzip/zstd as its
// media type says), once per layer digest (remembered for the process's life, bounded). A
// worker that claims a diff_id its layer does not have gets PERMISSION_DENIED and nothing is
// written to the action cache. Cost: one read of each new layer from farm-cache and its
// decompression on the scheduler (~300 MB/s per core for gzip with ISA-L).
//
//   auto exec = std::make_shared<VerifyingExecutor>(remote_executor, cas);
#ifndef FARM_SCHEDULER_SERVER_VERIFYING_EXECUTOR_H_
#define FARM_SCHEDULER_SERVER_VERIFYING_EXECUTOR_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
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

 private:
  // OK if the stored layer's uncompressed content hashes to `layer.diff_id()`.
  absl::Status CheckDiffId(const farm::v1::Layer& layer, const common::Digest& digest);

  std::shared_ptr<executor::StepExecutor> inner_;
  std::shared_ptr<cache::BlobStore> cas_;
  absl::Mutex mu_;
  // "digest diff_id" pairs already verified.
  absl::flat_hash_set<std::string> verified_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_VERIFYING_EXECUTOR_H_
