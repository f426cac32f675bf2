// The build pipeline: one build from Dockerfile text to a stored, tagged (and pushed) image,
// used by `farm build` (everything in one process) and by farm-scheduler (steps on remote
// workers). The drivers keep only wiring: stores, an executor, a context, an event sink.
//
//   front end      parse → typed instructions → load the context → plan (base images are
//                  resolved while planning: pulled when missing)
//   engine         action-cache lookups, misses on the executor, assembly (scheduler/engine)
//   export         describe the image, store it, tag it, extra outputs, push
//
// Every progress event of a build is made here or in the engine, through one EventWriter:
//   #1 [internal] load build definition from <name>   parse and plan (failures of the front end)
//   #2 [internal] load build context                  the context (inside #1)
//   #n [internal] load metadata for <ref>             one per base image (inside #1)
//   ... the steps (the engine) ...
//   #m exporting to image
// and, last, the build's outcome (ok with the image, "failed to build: ..." or "canceled").
//
//   pipeline::Deps deps{cas, ac, images, [&] { return executor; }};
//   pipeline::Request req;
//   req.dockerfile = text; req.dockerfile_name = "Dockerfile"; req.context = &context;
//   req.tags = {ref};
//   pipeline::Result r = pipeline::Run(deps, req, sink, &cancel);
//   if (!r.status.ok()) ...;  r.image.digest, r.outcome
#ifndef FARM_SCHEDULER_PIPELINE_PIPELINE_H_
#define FARM_SCHEDULER_PIPELINE_PIPELINE_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"
#include "executor/step_executor.h"
#include "farm/v1/build.pb.h"
#include "oci/reference.h"
#include "scheduler/engine/engine.h"
#include "scheduler/engine/events.h"
#include "scheduler/image/store.h"
#include "scheduler/image/store_resolver.h"
#include "scheduler/plan/planner.h"
#include "scheduler/registry/client.h"
#include "worker/copy/source_tree.h"

namespace farm::scheduler::pipeline {

// The build context as the front end reads it: the files COPY/ADD select (their keys are
// computed from this tree) and its Merkle root (what remote workers read). Implementations:
// a local directory hashed in place (LocalContext), a root already in farm-cache (CasContext).
class Context {
 public:
  virtual ~Context() = default;
  // Makes the context ready (hashes a directory, checks a root is in the CAS). Called once,
  // under "[internal] load build context"; `log` lines show there.
  virtual absl::Status Load(const std::function<void(const std::string&)>& log) = 0;
  // Valid after Load.
  virtual const worker::copy::SourceTree& tree() const = 0;
  virtual farm::v1::ContextRoot root() const = 0;
};

struct Deps {
  std::shared_ptr<cache::BlobStore> cas;  // blobs: layers, configs, manifests, pulls
  std::shared_ptr<cache::ActionCache> ac;
  image::ImageStore::Ptr images;  // where the image and its tags are recorded, FROM resolves
  // The executor the build's misses run on; made once the context is loaded (a local
  // executor reads context files through it).
  std::function<absl::StatusOr<std::shared_ptr<executor::StepExecutor>>()> executor;
  // Steps in flight, shared with the other builds of this process (farm bake); null: the
  // build's own (see engine::InflightSteps).
  std::shared_ptr<engine::InflightSteps> inflight;
};

// What the export vertex hands an extra output (an OCI/docker archive, a local directory).
struct Exported {
  const image::ImageRecord* image = nullptr;
  const std::vector<oci::Reference>* tags = nullptr;
  const std::vector<farm::v1::Layer>* layers = nullptr;  // the image's chain, bottom to top
};

struct Request {
  std::string dockerfile;       // the Dockerfile's text
  std::string dockerfile_name;  // in vertex names and error blocks: "Dockerfile", a path, "<stdin>"
  Context* context = nullptr;
  // Named contexts that are directories (--build-context NAME=DIR, bake's contexts), loaded
  // with the main one; their trees and roots go into plan.named_contexts. (Image named
  // contexts are set in plan.named_contexts directly.)
  std::map<std::string, Context*> named_contexts;
  // Planner options; the pipeline fills in resolver and context.
  plan::PlanOptions plan;
  // A multi-platform build: two or more distinct target platforms ("linux/amd64"), each
  // planned and built (in parallel, sharing steps whose keys agree, such as a
  // `FROM --platform=$BUILDPLATFORM` stage), assembled into one index (an OCI image index, a
  // Docker manifest list for engine.format kDocker). Empty or one: plan.platform / that one.
  std::vector<std::string> platforms;
  // How FROM images are resolved (pull policy, registry policy); progress is the pipeline's.
  image::StoreResolverOptions resolve;
  // Engine options; the pipeline fills in plan, dockerfile and first_vertex_id.
  engine::BuildRequest engine;
  // Called once the plan is made (e.g. to record how many steps the build has).
  std::function<void(const plan::Plan&)> on_planned;
  std::vector<oci::Reference> tags;
  // Extra outputs, run inside "exporting to image" after tagging; `log` shows under it.
  std::function<absl::Status(const Exported&, const std::function<void(const std::string&)>& log)>
      export_outputs;
  bool push = false;
  registry::RegistryOptions push_registry;
  int first_vertex_id = 1;
};

// One target platform's part of a build.
struct PlatformBuild {
  std::string platform;                       // normalized, "linux/arm64"
  std::unique_ptr<plan::Plan> plan;           // outcomes point into it
  std::optional<engine::BuildOutput> output;  // when its steps all finished
};

struct Result {
  absl::Status status;  // OK, or why the build failed (CANCELLED if canceled)
  // One per target platform, in the request's order; empty if the front end failed.
  std::vector<PlatformBuild> builds;
  image::ImageRecord image;        // when status is OK (an index for several platforms)
  farm::v1::BuildOutcome outcome;  // as emitted

  // The first platform's plan and output (the only ones of a single-platform build); null
  // when there is none.
  const plan::Plan* plan() const { return builds.empty() ? nullptr : builds[0].plan.get(); }
  const engine::BuildOutput* output() const {
    return builds.empty() || !builds[0].output ? nullptr : &*builds[0].output;
  }
};

// The platforms of a --platform value ("linux/amd64,linux/arm64"), normalized, in order.
// INVALID_ARGUMENT for an unparsable or repeated platform, naming it, for more than
// kMaxPlatforms platforms or a text longer than kMaxPlatformListBytes (a client's request).
inline constexpr size_t kMaxPlatforms = 16;
inline constexpr size_t kMaxPlatformListBytes = 1024;
absl::StatusOr<std::vector<std::string>> ParsePlatformList(const std::string& text);

// Runs one build. `sink` gets every event (from several threads, never two at once).
// `cancel` (nullable) stops it: running steps are killed, the result is CANCELLED.
Result Run(const Deps& deps, const Request& request, const engine::EventSink& sink,
           const absl::Notification* cancel);

}  // namespace farm::scheduler::pipeline

#endif  // FARM_SCHEDULER_PIPELINE_PIPELINE_H_
