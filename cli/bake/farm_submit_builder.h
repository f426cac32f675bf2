// Builds farm bake's targets on a farm: each target is a `farm submit` child process of the
// farm binary, as the user would run it (the context upload skips what farm-cache has, and
// the per-directory stat cache makes rehashing a shared context cheap). Its output is relayed
// to stderr with the target's prefix, and its steps are counted from it. Targets sharing a
// context directory go after the first of them has submitted, so it is uploaded once.
//
//   bake::FarmSubmitBuilder::Options o;
//   o.scheduler = "farm.example:7070";
//   bake::FarmSubmitBuilder builder(graph.get(), std::move(o));
//   graph->BuildAll(&builder, /*cancel=*/nullptr);
#ifndef FARM_CLI_BAKE_FARM_SUBMIT_BUILDER_H_
#define FARM_CLI_BAKE_FARM_SUBMIT_BUILDER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "cli/bake/graph.h"
#include "cli/bake/target_builder.h"

namespace farm::cli::bake {

class FarmSubmitBuilder : public TargetBuilder {
 public:
  struct Options {
    BuildDefaults defaults;
    std::string scheduler;  // farm-scheduler's HOST:PORT
    bool load = false;      // bring every image back (farm submit --load)
    std::vector<std::string> insecure_registries;
    // farm bake's security flags (--tls-ca FILE, --token-file=FILE, ...), passed on as given.
    std::vector<std::string> security_args;
    std::string program = "/proc/self/exe";  // the farm binary
    // When notified (another target failed, or a signal), running children get SIGTERM
    // (farm submit then cancels its build on the farm). May be null.
    const absl::Notification* cancel = nullptr;
  };

  // `graph` must outlive the builder.
  FarmSubmitBuilder(const Graph* graph, Options options)
      : graph_(graph), options_(std::move(options)) {}

  // Thread-safe. Runs `farm submit` for `run` and waits for it; UNKNOWN when it fails (its
  // lines, already relayed, say why).
  absl::Status Build(TargetRun* run) override;
  bool StaggersSharedContexts() const override { return true; }

  // The command line (argv, "farm" first) that submits `run`, its image ID written to
  // `iidfile` and its Dockerfile read from `dockerfile`. INTERNAL for a directory context
  // the graph does not list.
  absl::StatusOr<std::vector<std::string>> SubmitArgs(const TargetRun& run,
                                                      const std::string& iidfile,
                                                      const std::string& dockerfile) const;

  // The security flags of a farm command line (--tls, --insecure, --tls-ca, --tls-cert,
  // --tls-key, --token-file, with their values), as given: for Options::security_args.
  static std::vector<std::string> SecurityArgs(const std::vector<std::string>& command_line);

 private:
  const Graph* graph_;
  Options options_;
};

// Counts the steps of a build from its plain progress lines, as farm submit prints them: a
// vertex's first line names it ("#3 [2/5] RUN make"), a later "#3 DONE 1.2s" or "#3 CACHED"
// ends it. Only vertices named "[...]" count, and not "[internal] ..." ones.
class StepCounter {
 public:
  void OnLine(const std::string& line);
  int steps_run() const { return steps_run_; }
  int steps_cached() const { return steps_cached_; }
  // How many vertices have been named. More than two: the build was submitted (farm submit's
  // own come first), so its context is in farm-cache.
  size_t vertices() const { return names_.size(); }

 private:
  std::map<std::string, std::string> names_;  // "#3" → "[2/5] RUN make"
  int steps_run_ = 0, steps_cached_ = 0;
};

}  // namespace farm::cli::bake

#endif  // FARM_CLI_BAKE_FARM_SUBMIT_BUILDER_H_
