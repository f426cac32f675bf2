// farm plan: the whole front end (parse, instructions, planner) over a build context,
// printing the stages, the content-keyed steps and the config changes.
#include <cstdlib>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cli/build_inputs.h"
#include "cli/commands.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "scheduler/image/store_resolver.h"
#include "scheduler/plan/planner.h"
#include "scheduler/plan/print.h"

namespace farm::cli {

int RunPlan(const Args& args) {
  common::FlagSet fs("farm plan [OPTIONS] PATH",
                     "Plan a build without running it: stages, steps with their cache keys,\n"
                     "and the image config changes of every instruction. PATH is the build\n"
                     "context. The JSON form (--format json) is stable; see README.");
  BuildInputFlags in;
  in.Register(&fs);
  std::string format = "text";
  fs.String("format", 0, &format, "Output format: text or json");
  auto pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "farm plan: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (pos->size() != 1) {
    std::cerr << "farm plan: requires exactly 1 argument (the build context)\n";
    return 2;
  }
  if (format != "text" && format != "json") {
    std::cerr << "farm plan: --format must be text or json\n";
    return 2;
  }
  // Base images from the local image store only (no pulls); images it lacks get placeholder
  // keys. If the farm home cannot be opened, every base is a placeholder.
  std::shared_ptr<scheduler::image::StoreResolver> resolver;
  absl::StatusOr<LocalStores> stores = OpenLocalStores();
  if (stores.ok()) {
    scheduler::image::StoreResolverOptions ro;
    ro.pull_policy = scheduler::image::PullPolicy::kNever;
    absl::StatusOr<std::shared_ptr<scheduler::image::StoreResolver>> r =
        scheduler::image::StoreResolver::Create(stores->blobs, stores->images, ro);
    if (r.ok()) resolver = *r;
  }
  in.allow_unresolved = true;
  absl::StatusOr<PreparedBuild> prepared = PrepareBuild(in, (*pos)[0], resolver.get());
  if (!prepared.ok()) {
    std::cerr << "farm plan: " << prepared.status().message() << "\n";
    return 1;
  }
  std::cout << (format == "json" ? scheduler::plan::PlanToJson(prepared->plan)
                                 : scheduler::plan::PlanToText(prepared->plan));
  return 0;
}

}  // namespace farm::cli
