// farm bake's target graph: the resolved targets (definition.h) made ready to build, and the
// bookkeeping every way of building them shares. Each target becomes a TargetRun: its context
// directory and Dockerfile found, its named contexts sorted into directories, images and other
// targets, its tags, outputs and platforms parsed. The graph knows the distinct context
// directories (so each is hashed or uploaded once), the targets others read as a context
// ("target:base", built first and read as an image), runs every target at once in dependency
// order through a TargetBuilder (target_builder.h), and prints the summary table.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<bake::Graph> graph, bake::Graph::Create(resolved, {}));
//   graph->BuildAll(builder.get(), &cancel);
//   return bake::ReportSummary(*graph, took, quiet, std::cout, std::cerr);  // the exit code
#ifndef FARM_CLI_BAKE_GRAPH_H_
#define FARM_CLI_BAKE_GRAPH_H_

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "cli/bake/definition.h"
#include "cli/build_outputs.h"
#include "oci/reference.h"

namespace farm::cli::bake {

class TargetBuilder;

// A context directory as it is read: `dir` filtered by the ignore file `ignore_owner` chooses
// (scheduler::pipeline::LocalContext: "<ignore_owner>.dockerignore", else dir/.dockerignore).
struct ContextDir {
  std::string key;           // what TargetRun::context_key and TargetRun::named hold
  std::string dir;           // absolute
  std::string ignore_owner;  // a Dockerfile path, or ""
};

// What one target needs and what came of it.
struct TargetRun {
  Target def;
  std::string context_dir;      // absolute
  std::string dockerfile_path;  // absolute ("" for dockerfile-inline)
  std::string dockerfile_text;
  std::string context_key;                     // a ContextDir's key
  std::map<std::string, std::string> named;    // context name → ContextDir key (directories)
  std::map<std::string, std::string> images;   // context name → image reference
  std::map<std::string, std::string> targets;  // context name → target name
  std::vector<oci::Reference> tags;
  std::vector<OutputSpec> outputs;
  bool push = false;                   // an output of type=registry
  std::vector<std::string> platforms;  // normalized; empty: the host's
  // The first target with the same context_key, when it is not this one.
  const TargetRun* shares_context_with = nullptr;

  // Outcome, written by the thread that builds it (Graph::BuildAll).
  absl::Notification done;
  // Its context is where the builder reads it (for a farm: in farm-cache), or it is done.
  absl::Notification context_ready;
  absl::Status status;
  std::string image_id;
  int steps_run = 0, steps_cached = 0;
  absl::Duration took;
};

class Graph {
 public:
  struct Options {
    // Refuse platforms this host cannot run, natively or emulated (false when the targets
    // are built elsewhere).
    bool check_host_platforms = true;
  };

  // The targets of `resolved`, in its order (dependencies first), relative paths taken from
  // the working directory. NOT_FOUND for a context directory or Dockerfile that does not
  // exist; INVALID_ARGUMENT for a bad context value, tag, output or platform;
  // FAILED_PRECONDITION for a platform this host cannot run. Messages name the target.
  static absl::StatusOr<std::unique_ptr<Graph>> Create(const Resolved& resolved,
                                                       const Options& options);

  // Every target, in build order.
  const std::vector<std::unique_ptr<TargetRun>>& runs() const { return runs_; }
  // The target named `name`, which the graph has (Resolve adds every target a context names).
  TargetRun& run(const std::string& name) const { return *by_name_.at(name); }
  // Each distinct context directory, in the order targets first name it.
  const std::vector<ContextDir>& contexts() const { return contexts_; }
  // nullptr for a key no target holds.
  const ContextDir* FindContext(const std::string& key) const;
  // Whether another target reads `name` as a named context.
  bool IsContextOfAnother(const std::string& name) const;

  // How a target used as another's context is found in the image store: its own first tag,
  // else a local name of bake's ("farm-bake/NAME:latest").
  static oci::Reference ContextTag(const TargetRun& run);

  // Builds every target at once, one thread each, and returns when all are done. A target
  // starts after the targets it reads as contexts; if one of them failed it is not built and
  // ends CANCELLED. When `builder` staggers shared contexts, a target sharing its context
  // with an earlier one waits for that one's context_ready first (not counted in its time).
  // A failure notifies `cancel` (nullable) so that the builder stops the others, as buildx
  // does. Fills each run's status, took, done and context_ready.
  void BuildAll(TargetBuilder* builder, absl::Notification* cancel);

 private:
  Graph() = default;
  absl::Status Prepare(const Options& options, TargetRun* run);
  // The key of (dir, ignore file of dockerfile_path), listed in contexts_ the first time.
  std::string ContextKey(const std::string& dir, const std::string& dockerfile_path);
  // OK once every target `run` reads as a context is done and built; CANCELLED if one failed.
  absl::Status WaitForContextTargets(const TargetRun& run) const;

  std::vector<std::unique_ptr<TargetRun>> runs_;
  std::map<std::string, TargetRun*> by_name_;
  std::vector<ContextDir> contexts_;
};

// The action-cache scopes a target reads: `write_scope` first, then those its cache-from
// entries name ("scope=X", "type=farm,scope=X" or a bare word), each once. An entry naming no
// scope is ignored with a warning line on `warnings`.
std::vector<std::string> ReadScopes(const Target& target, const std::string& write_scope,
                                    std::ostream& warnings);

// The table farm bake ends with: a row per target (name, short image ID or "(failed)" /
// "(canceled)", steps run and cached, time) and a line with the count and `total`.
std::string SummaryTable(const Graph& graph, absl::Duration total);

// Reports how the bake went and returns its exit code (0, or 1 when a target failed): the
// table on `err` unless `quiet` and every target succeeded, then "ERROR: target ..." for each
// failure that is not a cancellation; when `quiet`, "NAME IMAGE_ID" on `out` for each target
// built.
int ReportSummary(const Graph& graph, absl::Duration total, bool quiet, std::ostream& out,
                  std::ostream& err);

}  // namespace farm::cli::bake

#endif  // FARM_CLI_BAKE_GRAPH_H_
