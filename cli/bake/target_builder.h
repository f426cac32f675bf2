// How farm bake builds one target of its graph (graph.h), whatever the graph around it does:
// Graph::BuildAll calls Build from a thread per target, once the targets it reads as contexts
// are built. The strategies:
//   InProcessBuilder   (in_process_builder.h) every target in this process, sharing one step
//                      executor, the steps in flight and the hashed contexts
//   FarmSubmitBuilder  (farm_submit_builder.h) each target as a `farm submit` to a farm
//
//   bake::FarmSubmitBuilder builder(graph.get(), options);
//   graph->BuildAll(&builder, /*cancel=*/nullptr);
#ifndef FARM_CLI_BAKE_TARGET_BUILDER_H_
#define FARM_CLI_BAKE_TARGET_BUILDER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "cli/bake/graph.h"

namespace farm::cli::bake {

// farm bake's flags that hold for every target (no_cache and pull unless its definition says).
struct BuildDefaults {
  std::string cache_scope = "main";  // the action-cache scope written (and read first)
  bool no_cache = false;
  bool pull = false;
  bool push = false;
  bool quiet = false;  // no progress lines
};

class TargetBuilder {
 public:
  using Ptr = std::unique_ptr<TargetBuilder>;
  virtual ~TargetBuilder() = default;

  // Builds `run` (its dependencies are built), setting its image_id and step counts, and
  // context_ready once its context is no longer needed by it alone. Returns why it failed
  // (CANCELLED when it was stopped). Called for every target at once, from their own threads;
  // `run` is this call's alone until it returns.
  virtual absl::Status Build(TargetRun* run) = 0;

  // Whether a target sharing its context directory with an earlier one must wait for that
  // one's context_ready (each build sends its context itself: the first uploads it once).
  virtual bool StaggersSharedContexts() const { return false; }
};

}  // namespace farm::cli::bake

#endif  // FARM_CLI_BAKE_TARGET_BUILDER_H_
