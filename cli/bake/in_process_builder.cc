#include "cli/bake/in_process_builder.h"

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/build_outputs.h"
#include "cli/progress.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/platform.h"
#include "scheduler/pipeline/pipeline.h"
#include "worker/sandbox_settings.h"

namespace farm::cli::bake {

namespace {

// A context loaded once and shared by every target that reads it: its Load is a no-op.
class SharedContext : public scheduler::pipeline::Context {
 public:
  explicit SharedContext(const scheduler::pipeline::LocalContext* c) : c_(c) {}
  absl::Status Load(const std::function<void(const std::string&)>& log) override {
    return absl::OkStatus();
  }
  const worker::copy::SourceTree& tree() const override { return c_->tree(); }
  farm::v1::ContextRoot root() const override { return c_->root(); }

 private:
  const scheduler::pipeline::LocalContext* c_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<InProcessBuilder>> InProcessBuilder::Create(const Graph* graph,
                                                                           Options options) {
  ASSIGN_OR_RETURN(LocalStores stores, OpenLocalStores());
  ASSIGN_OR_RETURN(worker::SandboxSettings settings,
                   worker::ReadSandboxConfig(common::JoinPath(stores.home, "sandbox.conf")));
  std::unique_ptr<InProcessBuilder> b(
      new InProcessBuilder(graph, std::move(options), std::move(stores)));
  const std::string& home = b->stores_.home;

  // Each distinct context, hashed once (with its stat cache).
  cache::BlobStore::Ptr cas = b->stores_.blobs;
  for (const ContextDir& c : graph->contexts()) {
    absl::Time start = absl::Now();
    scheduler::context::SnapshotOptions so;
    so.stat_cache = ContextStatCachePath(home, c.dir);
    auto ctx = std::make_unique<scheduler::pipeline::LocalContext>(c.dir, c.ignore_owner, so);
    absl::Status loaded = ctx->Load([](const std::string&) {});
    if (!loaded.ok()) return common::Annotate(loaded, "loading context " + c.dir);
    if (!b->options_.defaults.quiet) {
      std::cerr << "[bake] context " << c.dir << " hashed ("
                << absl::FormatDuration(absl::Now() - start) << ")\n";
    }
    // The executor reads every context's files where they are, through overlays.
    cas = ctx->snapshot().Overlay(cas);
    b->contexts_[c.key] = std::move(ctx);
  }
  worker::LocalStepExecutor::Options wo;
  wo.state_dir = common::JoinPath(home, "worker");
  wo.cas = cas;
  wo.policy = settings.policy;
  wo.limits = settings.limits;
  wo.store_layers_behind = true;  // each engine records its steps once their layers are stored
  wo.policy.network.teardown_behind = true;  // farm bake exits after its builds
  ASSIGN_OR_RETURN(std::unique_ptr<worker::LocalStepExecutor> exec,
                   worker::LocalStepExecutor::Create(std::move(wo)));
  b->executor_ = std::move(exec);
  b->inflight_ = std::make_shared<scheduler::engine::InflightSteps>();
  return b;
}

absl::Status InProcessBuilder::Build(TargetRun* r) {
  const BuildDefaults& d = options_.defaults;
  std::string dockerfile_name =
      r->dockerfile_path.empty() ? "dockerfile-inline" : r->dockerfile_path;
  std::unique_ptr<ProgressPrinter> printer =
      ProgressPrinter::Create(d.quiet ? ProgressMode::kQuiet : ProgressMode::kPlain, 2,
                              r->dockerfile_text, dockerfile_name);
  printer->SetLinePrefix(absl::StrCat("[", r->def.name, "] "));
  SharedContext context(contexts_.at(r->context_key).get());

  scheduler::pipeline::Deps deps;
  deps.cas = stores_.blobs;
  deps.ac = stores_.action_cache;
  deps.images = stores_.images;
  deps.executor = [this]() -> absl::StatusOr<std::shared_ptr<executor::StepExecutor>> {
    return std::shared_ptr<executor::StepExecutor>(executor_);
  };
  deps.inflight = inflight_;
  scheduler::pipeline::Request req;
  req.dockerfile = r->dockerfile_text;
  req.dockerfile_name = dockerfile_name;
  req.context = &context;
  req.plan.build_args = r->def.args;
  req.plan.target = r->def.target.value_or("");
  req.plan.platform = oci::Platform::Host().String();
  if (r->platforms.size() == 1) req.plan.platform = r->platforms[0];
  if (r->platforms.size() > 1) req.platforms = r->platforms;
  for (const auto& [name, key] : r->named) {
    const scheduler::pipeline::LocalContext& c = *contexts_.at(key);
    scheduler::plan::NamedContext nc;
    nc.tree = &c.tree();
    nc.root = c.root();
    req.plan.named_contexts[name] = nc;
  }
  for (const auto& [name, ref] : r->images) req.plan.named_contexts[name].image = ref;
  for (const auto& [name, other] : r->targets) {
    req.plan.named_contexts[name].image = Graph::ContextTag(graph_->run(other)).String();
  }
  bool pull = r->def.pull.value_or(d.pull);
  req.resolve.pull_policy =
      pull ? scheduler::image::PullPolicy::kAlways : scheduler::image::PullPolicy::kMissing;
  req.resolve.registry = options_.registry;
  req.engine.cache_read_scopes = ReadScopes(r->def, d.cache_scope, std::cerr);
  req.engine.cache_write_scope = d.cache_scope;
  req.engine.no_cache = r->def.no_cache.value_or(d.no_cache);
  req.engine.labels = r->def.labels;
  req.engine.max_parallel = options_.max_parallel;
  req.tags = r->tags;
  if (graph_->IsContextOfAnother(r->def.name)) req.tags.push_back(Graph::ContextTag(*r));
  if (!r->outputs.empty()) {
    req.export_outputs = [this, r](const scheduler::pipeline::Exported& e,
                                   const std::function<void(const std::string&)>& log) {
      for (const OutputSpec& o : r->outputs) {
        RETURN_IF_ERROR(
            ExportImage(o, *stores_.blobs, *e.image, *e.tags, *e.layers, executor_->layer_store()));
        if (o.type != "image") log(absl::StrCat("exporting ", o.type, " to ", o.dest, " done"));
      }
      return absl::OkStatus();
    };
  }
  req.push = r->push || d.push;
  req.push_registry = options_.registry;
  ProgressPrinter* p = printer.get();
  scheduler::pipeline::Result res = scheduler::pipeline::Run(
      deps, req, [p](const farm::v1::BuildEvent& e) { p->OnEvent(e); }, options_.cancel);
  printer->Finish();
  if (!res.status.ok()) return res.status;
  r->image_id = res.outcome.image_id();
  r->steps_cached = res.outcome.cached_steps();
  r->steps_run = res.outcome.steps() - res.outcome.cached_steps();
  return absl::OkStatus();
}

}  // namespace farm::cli::bake
