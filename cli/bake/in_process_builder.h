// Builds farm bake's targets in this process, all at once, against one set of local stores
// ($FARM_HOME), one step executor and one table of steps in flight (scheduler/engine): a step
// several targets share runs once, and each context directory of the graph is hashed once,
// when the builder is created, then read in place by every target that names it.
//
//   bake::InProcessBuilder::Options o;
//   o.cancel = &cancel;  // SIGINT, or Graph::BuildAll on a failure
//   ASSIGN_OR_RETURN(std::unique_ptr<bake::InProcessBuilder> builder,
//                    bake::InProcessBuilder::Create(graph.get(), std::move(o)));
//   graph->BuildAll(builder.get(), &cancel);
#ifndef FARM_CLI_BAKE_IN_PROCESS_BUILDER_H_
#define FARM_CLI_BAKE_IN_PROCESS_BUILDER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "cli/bake/graph.h"
#include "cli/bake/target_builder.h"
#include "cli/stores.h"
#include "scheduler/engine/engine.h"
#include "scheduler/pipeline/contexts.h"
#include "scheduler/registry/client.h"
#include "worker/local_step_executor.h"

namespace farm::cli::bake {

class InProcessBuilder : public TargetBuilder {
 public:
  struct Options {
    BuildDefaults defaults;
    scheduler::registry::RegistryOptions registry;  // for pulls and pushes
    int max_parallel = 0;                           // steps at once per target (0: one per core)
    const absl::Notification* cancel = nullptr;     // stops every build (nullable)
  };

  // Opens the local stores (waiting for $FARM_HOME's lock) and the sandbox settings, hashes
  // every context directory of `graph` (saying so on stderr unless quiet) and makes the step
  // executor. `graph` must outlive the builder. Errors name the context that failed to load.
  static absl::StatusOr<std::unique_ptr<InProcessBuilder>> Create(const Graph* graph,
                                                                  Options options);

  // Thread-safe. Progress goes to stderr, each line prefixed with "[target] ".
  absl::Status Build(TargetRun* run) override;

 private:
  InProcessBuilder(const Graph* graph, Options options, LocalStores stores)
      : graph_(graph), options_(std::move(options)), stores_(std::move(stores)) {}

  const Graph* graph_;
  Options options_;
  LocalStores stores_;  // closed (its lock released) after everything below
  // ContextDir key → the loaded context.
  std::map<std::string, std::unique_ptr<scheduler::pipeline::LocalContext>> contexts_;
  std::shared_ptr<worker::LocalStepExecutor> executor_;
  std::shared_ptr<scheduler::engine::InflightSteps> inflight_;
};

}  // namespace farm::cli::bake

#endif  // FARM_CLI_BAKE_IN_PROCESS_BUILDER_H_
