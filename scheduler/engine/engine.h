// The build engine: runs a plan. For every step it looks the key up in the action cache (the
// scopes given, in order) and on a hit takes the recorded layer without executing anything; a
// miss goes to a StepExecutor (in process for `farm build`, a remote worker through the
// scheduler for the farm), and its result is recorded in the action cache (by the engine, not
// the executor, and only once the layer is in the CAS). Independent stages run at the same
// time; a step wanted twice in one build runs once. The target stage (and every stage it is
// based on) is then assembled into an OCI image in the CAS.
//
//   scheduler::engine::EngineDeps deps{cas, ac, executor};
//   scheduler::engine::BuildRequest req;
//   req.plan = &plan;
//   ASSIGN_OR_RETURN(scheduler::engine::BuildOutput out, scheduler::engine::RunBuild(deps, req,
//   sink, &cancel)); out.image.config.digest   // the image ID
#ifndef FARM_SCHEDULER_ENGINE_ENGINE_H_
#define FARM_SCHEDULER_ENGINE_ENGINE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"
#include "executor/step_executor.h"
#include "farm/v1/build.pb.h"
#include "scheduler/engine/events.h"
#include "scheduler/image/assemble.h"
#include "scheduler/plan/planner.h"

namespace farm::scheduler::engine {

// The steps being executed, by key. One build always dedups its own steps; builds running at
// once in one process (`farm bake`: one RunBuild per target) share one InflightSteps so that a
// step several of them want runs once: the first to claim a key runs it, the others wait for
// its result and show the step CACHED. A key that succeeded stays (later claimants get its
// result without looking again); one that failed is forgotten, so another build may run it.
// Thread-safe.
class InflightSteps {
 public:
  using Result = absl::StatusOr<std::optional<farm::v1::Layer>>;
  struct Entry {
    absl::Notification done;
    Result result;             // valid once done
    int64_t created_unix = 0;  // when the result was made (0: unknown); valid once done
  };
  struct Claim {
    std::shared_ptr<Entry> mine;    // set: the caller runs the step and must call Finish
    std::shared_ptr<Entry> theirs;  // set: someone else runs (or ran) it; wait for done
  };
  Claim Get(const std::string& key);
  // Publishes the result of a step the caller claimed (`mine`).
  void Finish(const std::string& key, const std::shared_ptr<Entry>& mine, Result result);

 private:
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

struct EngineDeps {
  std::shared_ptr<cache::BlobStore> cas;
  std::shared_ptr<cache::ActionCache> ac;
  std::shared_ptr<executor::StepExecutor> executor;
  // Shared with other builds of this process (farm bake); null: the build's own.
  std::shared_ptr<InflightSteps> inflight;
};

struct BuildRequest {
  const plan::Plan* plan = nullptr;
  std::string dockerfile;  // shown in error blocks ("Dockerfile")
  // Action-cache scopes: read through in order, write only the own one.
  std::vector<std::string> cache_read_scopes = {"main"};
  std::string cache_write_scope = "main";
  bool no_cache = false;  // run every step (results are still recorded)
  // Output bytes a step may log: beyond, one notice line and the rest is dropped (the step
  // runs on). 0 = unlimited (BuildKit's default is 2 MiB).
  int64_t max_step_log_bytes = 0;
  // RUN steps without a timeout of their own get this one (seconds); 0 = none.
  int64_t default_step_timeout_seconds = 0;
  std::optional<int64_t> source_date_epoch;
  image::ManifestFormat format = image::ManifestFormat::kOci;
  std::map<std::string, std::string> labels;  // --label: added to the target image's config
  int max_parallel = 0;                       // steps executing at once; 0 = number of cores
  absl::Duration lease_ttl = absl::Hours(1);  // how long hits' blobs stay pinned
  int first_vertex_id = 1;                    // progress ids start here
  // Prefixed to every step vertex's name (a multi-platform build's "linux/arm64": BuildKit's
  // "[linux/arm64 build 2/5] RUN make"). Empty: none.
  std::string vertex_label;
};

// What happened to one keyed step (for build records and `farm why-miss`).
struct StepOutcome {
  const plan::Stage* stage = nullptr;
  const plan::Step* step = nullptr;
  bool cached = false;
  std::optional<farm::v1::Layer> layer;
  int64_t duration_micros = 0;
};

struct BuildOutput {
  image::AssembledImage image;  // the target's
  std::vector<StepOutcome> steps;
  int steps_total = 0;
  int steps_cached = 0;
  int next_vertex_id = 0;  // the first progress id after the build's steps (for export vertices)
};

// Runs `request.plan`. `sink` (may be null) receives progress events from several threads
// (serialized: never two calls at once). `cancel` (may be null) stops the build: running
// steps are killed and CANCELLED is returned. A step that fails is FAILED_PRECONDITION (its
// command failed: the message is BuildKit's "process ... did not complete successfully: exit
// code: N") or the executor's error, annotated with the step.
absl::StatusOr<BuildOutput> RunBuild(const EngineDeps& deps, const BuildRequest& request,
                                     const EventSink& sink, const absl::Notification* cancel);

// The action-cache key of a step: its hex key with the size of its preimage text.
common::Digest ActionKey(const plan::Step& step);

// The serialized ActionResult recorded for a step that made `layer` (or nothing) at
// `created_unix` (seconds).
std::string StepActionResult(const plan::Step& step, const std::optional<farm::v1::Layer>& layer,
                             const std::string& worker, int64_t created_unix);
// What a step's action-cache entry says.
struct CachedStep {
  std::optional<farm::v1::Layer> layer;
  int64_t created_unix = 0;  // 0: not recorded (an entry of an older version)
};
// Reads back what StepActionResult wrote. INVALID_ARGUMENT for an entry Farm did not write.
absl::StatusOr<CachedStep> CachedStepFromActionResult(absl::string_view bytes);

// "[build 2/5] RUN make" (BuildKit's vertex names: the stage's name when the plan has several
// stages, the step's position among the stage's FROM + executed steps). step_index -1 gives
// the FROM's "[build 1/5]".
// `label` (if any) comes first inside the brackets.
std::string VertexName(const plan::Plan& plan, const plan::Stage& stage, int step_index,
                       const std::string& label = "");

// How many progress ids RunBuild uses for `plan` (from first_vertex_id on): one per FROM of an
// image and per keyed step.
int VertexCount(const plan::Plan& plan);

}  // namespace farm::scheduler::engine

#endif  // FARM_SCHEDULER_ENGINE_ENGINE_H_
