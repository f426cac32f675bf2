// BuildRunner: runs one farm-scheduler build through the build pipeline (scheduler/pipeline)
// with farm-scheduler's wiring: the context is a Merkle root the client uploaded to farm-cache,
// base images are pulled into the scheduler's image store, steps run on the executor that
// `executors` makes for the build (a RemoteStepExecutor dispatching to workers). Its job is to
// translate a SubmitBuildRequest into the pipeline's request (cache scopes, registries, tags,
// image options); the build's progress goes to the caller's sink.
//
//   BuildRunner runner(std::move(options));
//   absl::Status s = runner.Run(build_id, stored.request(), secrets,
//                               [&](int steps) { info.set_steps_total(steps); }, sink, &cancel);
//
// Thread-safe: builds run concurrently on one runner.
#ifndef FARM_SCHEDULER_SERVER_BUILD_RUNNER_H_
#define FARM_SCHEDULER_SERVER_BUILD_RUNNER_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "auth/secret_key.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"
#include "executor/step_executor.h"
#include "farm/v1/scheduler.pb.h"
#include "scheduler/engine/events.h"
#include "scheduler/image/store.h"
#include "scheduler/pipeline/pipeline.h"
#include "scheduler/server/build_spec.h"
#include "scheduler/server/tenant_images.h"

namespace farm::scheduler::server {

class BuildRunner {
 public:
  struct Options {
    std::shared_ptr<cache::BlobStore> cas;   // farm-cache: contexts, layers, pulled blobs
    std::shared_ptr<cache::ActionCache> ac;  // farm-cache's action cache
    image::ImageStore::Ptr images;           // the scheduler's images and tags
    // When set, each build uses its tenant's store instead of `images`.
    std::shared_ptr<TenantImages> tenant_images;
    int64_t max_step_log_bytes = 0;            // engine::BuildRequest's
    int64_t default_step_timeout_seconds = 0;  // engine::BuildRequest's
    // Makes the step executor a build runs its misses on.
    std::function<std::shared_ptr<executor::StepExecutor>(const BuildSpec&)> executors;
    std::vector<std::string> insecure_registries;  // added to each request's
    // Registry credentials (a directory with Docker's config.json). A tenant listed in
    // `tenant_docker_config_dirs` pulls and pushes with its own and never the shared one;
    // others pull with `docker_config_dir` ("" = ~/.docker) and push with it only when
    // `shared_registry_push` (else anonymously: the registry decides).
    std::string docker_config_dir;
    std::map<std::string, std::string> tenant_docker_config_dirs;
    bool shared_registry_push = true;
    // Entitlements the farm permits to builds that ask for them (checked at plan time).
    std::set<std::string> permitted_entitlements;
    // Keys the digests of secret values in step keys (plan::PlanOptions::secret_digests);
    // null: an in-memory key (secret-mounting steps then miss after a restart).
    std::shared_ptr<const auth::SecretKey> secret_key;
  };

  explicit BuildRunner(Options options) : options_(WithDefaults(std::move(options))) {}

  // Runs build `build_id` to its end: OK, the build's error, or CANCELLED once `cancel` (may
  // be null) is notified. `secrets` go to the executor only. `on_planned` (may be null) gets
  // the number of steps the plan has (those with a cache key, as the events count them).
  // `sink` gets every event, never two at once.
  absl::Status Run(const std::string& build_id, const farm::v1::SubmitBuildRequest& request,
                   const std::map<std::string, std::string>& secrets,
                   const std::function<void(int steps_total)>& on_planned,
                   const engine::EventSink& sink, const absl::Notification* cancel) const;

  // The executor's view of a build: the cache instance is its write scope ("main" by default).
  static BuildSpec SpecFor(const std::string& build_id, const farm::v1::SubmitBuildRequest& request,
                           const std::map<std::string, std::string>& secrets);
  // The pipeline request for `request`, without its context and on_planned (Run sets them).
  // INVALID_ARGUMENT for a tag that is not a valid reference.
  absl::StatusOr<pipeline::Request> PipelineRequest(const farm::v1::SubmitBuildRequest& request,
                                                    const BuildSpec& spec) const;

 private:
  // Fills what Options leave empty: an in-memory secret key.
  static Options WithDefaults(Options options);

  const Options options_;
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_BUILD_RUNNER_H_
