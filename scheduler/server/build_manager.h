// BuildManager: farm-scheduler's builds. It accepts submissions (bounded queue, idempotent by
// client request id), admits a limited number at a time (round robin over tenants, then by
// priority and age), runs each one (plan against the context in farm-cache, the build engine
// with steps dispatched to workers, image assembly, tags, push), and keeps every build's state
// and progress events durable in RocksDB so that:
//   - a client can (re)attach to a build's event stream from any sequence number (events are
//     replayed, then live);
//   - after a scheduler restart, queued builds stay queued and running builds are run again
//     (finished steps are action-cache hits; steps still running on workers are adopted by
//     the dispatcher through their keys), their streams continuing with higher seqs.
//
//   scheduler::server::BuildManager::Options o;
//   o.state_dir = "/var/lib/farm-scheduler";
//   o.cas = grpc_blob_store; o.ac = grpc_action_cache;
//   o.executors = [&](const BuildSpec& b) { return remote_executor_for(b); };
//   ASSIGN_OR_RETURN(auto mgr, BuildManager::Create(std::move(o)));
//   ASSIGN_OR_RETURN(std::string id, mgr->Submit(request));
//   auto sub = mgr->Subscribe(id, 0, on_event, on_end);
//
// It ties together the pieces beside it: Admission (which queued build runs next, the limits),
// BuildLog (the RocksDB records of builds and events), EventFanout (each build's numbered
// events and their subscribers) and BuildRunner (one build through scheduler/pipeline). What
// stays here is each build's life: its state changes, its thread, cancel and shutdown.
#ifndef FARM_SCHEDULER_SERVER_BUILD_MANAGER_H_
#define FARM_SCHEDULER_SERVER_BUILD_MANAGER_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/secret_key.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"
#include "executor/step_executor.h"
#include "farm/v1/scheduler.pb.h"
#include "scheduler/server/build_spec.h"

namespace farm::scheduler::server {

class BuildManager {
 public:
  struct Options {
    std::string state_dir;                   // created if missing; holds builds/ and images/
    std::shared_ptr<cache::BlobStore> cas;   // farm-cache
    std::shared_ptr<cache::ActionCache> ac;  // farm-cache's action cache
    // Makes the step executor a build runs its misses on (a RemoteStepExecutor on the farm).
    std::function<std::shared_ptr<executor::StepExecutor>(const BuildSpec&)> executors;
    int max_active_builds = 32;
    int max_queued_builds = 10000;
    int max_queued_builds_per_tenant = 0;  // 0 = only the global limit
    // Output kept per step (beyond: one notice, the rest dropped); 0 = unlimited.
    int64_t max_step_log_bytes = 0;
    // Timeout of RUN steps that do not set one; 0 = none.
    int64_t default_step_timeout_seconds = 0;
    std::vector<std::string> insecure_registries;
    // Entitlements this farm permits to builds that ask for them (executor/entitlements.h);
    // a RUN needing another fails at plan time. (Per tenant once tenants have identities.)
    std::set<std::string> permitted_entitlements;
    // Registry credentials (BuildRunner::Options has the rules).
    std::string docker_config_dir;
    std::map<std::string, std::string> tenant_docker_config_dirs;
    bool shared_registry_push = true;
    // Keys secret values' digests in step keys (BuildRunner::Options::secret_key).
    std::shared_ptr<const auth::SecretKey> secret_key;
    std::string cache_address;  // advertised to clients (GetSchedulerInfo)
    // Finished builds whose events are kept (older ones keep only their BuildInfo).
    int keep_events_of_builds = 1000;
    std::string version = "0.1.0";
    // Connected workers, for SchedulerInfo.workers (may be null).
    std::function<int()> worker_count;
    // The farm's workers (the dispatcher's Workers()), to refuse at once a build for a
    // platform none of them runs (PlatformsServed). Null: every platform is accepted (and
    // waits for a worker).
    std::function<std::vector<farm::v1::WorkerInfo>()> workers;
    // One line per build state change (submitted, started, finished, resumed); may be null.
    std::function<void(const std::string&)> log;
    // Called once for each build that ends (succeeded, failed or canceled; not one interrupted
    // by Shutdown) with its final BuildInfo, after it is persisted, from the build's thread or
    // the Cancel caller's, without the manager's locks: farm-scheduler's build metrics. May be
    // null.
    std::function<void(const farm::v1::BuildInfo&)> on_finished;
  };

  static absl::StatusOr<std::unique_ptr<BuildManager>> Create(Options options);
  ~BuildManager();  // Shutdown()

  // Stops admitting builds, stops the running ones (they stay RUNNING on disk and resume when
  // a manager opens the state again: this is not cancellation), ends every subscription with
  // UNAVAILABLE and waits for the build threads. Idempotent.
  void Shutdown();
  // The first half of Shutdown: stops admitting and marks running builds as interrupted, so
  // that steps failing from now on (the dispatcher shutting down) do not fail their builds.
  // farm-scheduler calls it before stopping the dispatcher, then Shutdown.
  void StopAdmitting();

  // Starts a build. With a client_request_id already seen, returns that build's id.
  // RESOURCE_EXHAUSTED when max_queued_builds are waiting; INVALID_ARGUMENT for a request
  // without a Dockerfile or context.
  absl::StatusOr<std::string> Submit(const farm::v1::SubmitBuildRequest& request);

  // A live view of a build's events: `on_event` gets every event after `after_seq` in order
  // (persisted ones first, then as they happen), `on_end` once at the end: OK after the last
  // event of a finished build, UNAVAILABLE when the manager shuts down first (the build goes
  // on after a restart: reattach). Both are called with the build's lock held (from the
  // manager's threads or from Subscribe itself), never concurrently for one subscription, and
  // must not block or call back into the manager. Destroying the Subscription stops the calls
  // (it waits for one in progress).
  class Subscription {
   public:
    virtual ~Subscription() = default;
  };
  using EventFn = std::function<void(const farm::v1::BuildStreamEvent&)>;
  using EndFn = std::function<void(const absl::Status&)>;
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const std::string& build_id,
                                                          int64_t after_seq, EventFn on_event,
                                                          EndFn on_end);

  absl::StatusOr<farm::v1::BuildInfo> Get(const std::string& build_id);
  // Cancels a queued or running build (its running steps are killed on their workers).
  absl::StatusOr<farm::v1::BuildInfo> Cancel(const std::string& build_id);
  absl::StatusOr<std::vector<farm::v1::BuildInfo>> List(const farm::v1::ListBuildsRequest& r);
  farm::v1::SchedulerInfo Info();

 private:
  struct Impl;
  explicit BuildManager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// OK when every platform in `platforms` is run by one of `workers` (natively or emulated), or
// when there are no workers at all (a farm scaled to zero queues the build until workers
// come). FAILED_PRECONDITION otherwise, naming the platform and what the farm runs.
absl::Status PlatformsServed(const std::vector<farm::v1::WorkerInfo>& workers,
                             const std::vector<std::string>& platforms);

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_BUILD_MANAGER_H_
