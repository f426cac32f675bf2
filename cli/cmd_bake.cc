// farm bake: many Dockerfiles as one graph. Reads buildx's bake JSON / Compose files
// (cli/bake/files.h), resolves the targets into a graph (cli/bake/graph.h) and builds it with one
// of two strategies (cli/bake/target_builder.h): every target in this process at once against
// one set of stores, one step executor and one table of steps in flight (InProcessBuilder), or,
// with --scheduler, each target on a farm as `farm submit` would send it (FarmSubmitBuilder).
// This file keeps the flags and the wiring.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "cli/bake/definition.h"
#include "cli/bake/farm_submit_builder.h"
#include "cli/bake/files.h"
#include "cli/bake/graph.h"
#include "cli/bake/in_process_builder.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/progress.h"
#include "cli/remote.h"
#include "common/flags.h"

namespace farm::cli {

namespace {

struct BakeFlags {
  std::vector<std::string> files;
  std::string progress = "auto";
  std::string scheduler;
  auth::ClientAuthOptions security;
  std::vector<std::string> insecure;
  bake::BuildDefaults defaults;  // but quiet, which --progress says
  int64_t max_parallel = 0;
  bool print = false;
  bool load = false;  // --scheduler: bring every target's image back (farm submit --load)
};

int Fatal(const absl::Status& s) {
  std::cerr << "ERROR: " << s.message() << "\n";
  return 1;
}

// SIGINT/SIGTERM cancel the bake: the handler writes to a pipe, a thread turns that into the
// notification (nothing else is async-signal-safe).
int g_bake_signal_pipe[2] = {-1, -1};
void OnBakeSignal(int) {
  char c = 1;
  ssize_t w = write(g_bake_signal_pipe[1], &c, 1);
  (void)w;
}

std::thread WatchSignals(absl::Notification* cancel) {
  if (pipe2(g_bake_signal_pipe, O_CLOEXEC) != 0) return std::thread();
  signal(SIGINT, OnBakeSignal);
  signal(SIGTERM, OnBakeSignal);
  return std::thread([cancel] {
    char c;
    while (read(g_bake_signal_pipe[0], &c, 1) == 1) {
      if (c == 1 && !cancel->HasBeenNotified()) cancel->Notify();
      if (c == 0) break;
    }
  });
}

void StopWatchingSignals(std::thread& t) {
  if (!t.joinable()) return;
  char stop = 0;
  ssize_t w = write(g_bake_signal_pipe[1], &stop, 1);
  (void)w;
  t.join();
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

// The strategy: a farm with --scheduler, else this process (which SIGINT then cancels).
absl::StatusOr<bake::TargetBuilder::Ptr> MakeBuilder(const BakeFlags& f, const Args& args,
                                                     const bake::Graph* graph,
                                                     const absl::Notification* cancel) {
  if (!f.scheduler.empty()) {
    bake::FarmSubmitBuilder::Options o;
    o.defaults = f.defaults;
    o.scheduler = f.scheduler;
    o.load = f.load;
    o.insecure_registries = f.insecure;
    o.security_args = bake::FarmSubmitBuilder::SecurityArgs(args);
    o.cancel = cancel;
    return std::make_unique<bake::FarmSubmitBuilder>(graph, std::move(o));
  }
  bake::InProcessBuilder::Options o;
  o.defaults = f.defaults;
  o.registry = RegistryOptionsFrom(f.insecure);
  o.max_parallel = static_cast<int>(f.max_parallel);
  o.cancel = cancel;
  return bake::InProcessBuilder::Create(graph, std::move(o));
}

int Bake(BakeFlags f, const Args& args, const std::vector<std::string>& names) {
  absl::StatusOr<std::vector<std::string>> files = bake::FindFiles(".", f.files);
  if (!files.ok()) return Fatal(files.status());
  absl::StatusOr<bake::Definition> def = bake::LoadFiles(*files, bake::ProcessEnv());
  if (!def.ok()) return Fatal(def.status());
  for (const std::string& w : def->warnings) std::cerr << "WARNING: " << w << "\n";
  absl::StatusOr<bake::Resolved> resolved = bake::Resolve(*def, names);
  if (!resolved.ok()) return Fatal(resolved.status());
  if (f.print) {
    std::cout << bake::PrintJson(*resolved) << std::endl;
    return 0;
  }
  absl::StatusOr<ProgressMode> mode = ParseProgressMode(f.progress);
  if (!mode.ok()) return Fatal(mode.status());
  // Several builds at once: one plain stream (tty redrawing is not offered), each line
  // prefixed with its target.
  f.defaults.quiet = *mode == ProgressMode::kQuiet;
  bake::Graph::Options graph_options;
  graph_options.check_host_platforms = f.scheduler.empty();
  absl::StatusOr<std::unique_ptr<bake::Graph>> graph =
      bake::Graph::Create(*resolved, graph_options);
  if (!graph.ok()) return Fatal(graph.status());
  absl::Notification cancel;
  absl::StatusOr<bake::TargetBuilder::Ptr> builder = MakeBuilder(f, args, graph->get(), &cancel);
  if (!builder.ok()) return Fatal(builder.status());
  bool local = f.scheduler.empty();
  std::thread signals = local ? WatchSignals(&cancel) : std::thread();
  absl::Time start = absl::Now();
  // (on a farm, a terminal's Ctrl-C reaches the farm submit children itself)
  (*graph)->BuildAll(builder->get(), &cancel);
  StopWatchingSignals(signals);
  return bake::ReportSummary(**graph, absl::Now() - start, f.defaults.quiet, std::cout, std::cerr);
}

}  // namespace

int RunBake(const Args& args) {
  common::FlagSet fs("farm bake [OPTIONS] [TARGET...]",
                     "Build the targets of buildx bake files (docker-bake.json, compose.yaml) as "
                     "one graph:\nshared steps run once, contexts are hashed once, independent "
                     "targets run at once.");
  BakeFlags f;
  fs.Repeated("file", 'f', &f.files, "Bake file (default: buildx's lookup in this directory)",
              "stringArray");
  fs.Bool("print", 0, &f.print, "Print the resolved definition (JSON) and build nothing");
  fs.String("progress", 0, &f.progress, "Progress output: auto, plain or quiet", "string");
  fs.Bool("no-cache", 0, &f.defaults.no_cache, "Run every step (results are still recorded)");
  fs.Bool("pull", 0, &f.defaults.pull, "Always pull base images");
  fs.Bool("push", 0, &f.defaults.push, "Push every target's tags");
  fs.Bool("load", 0, &f.load,
          "With --scheduler: bring every target's image into the local store (embedded builds "
          "store them locally anyway)");
  fs.String("cache-scope", 0, &f.defaults.cache_scope,
            "Action-cache scope written (and read first)", "string");
  fs.Repeated("insecure-registry", 0, &f.insecure, "Registry reached over plain HTTP",
              "stringArray");
  fs.Int("max-parallel", 0, &f.max_parallel, "Steps running at once per target (0: one per core)");
  fs.String("scheduler", 0, &f.scheduler,
            "Bake on a farm: farm-scheduler's HOST:PORT (each target as farm submit)", "string");
  SecurityFlags(fs, &f.security);
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "bake", &positional, &exit_code)) return exit_code;
  return Bake(std::move(f), args, positional);
}

}  // namespace farm::cli
