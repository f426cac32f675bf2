#include "scheduler/pipeline/pipeline.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"
#include "scheduler/image/export_layers.h"
#include "scheduler/image/transfer.h"

namespace farm::scheduler::pipeline {

namespace {

// A StepExecutor made by `make` on the first Execute (once; a failure is returned to every
// caller, as the executor's error for that step).
class LazyExecutor final : public executor::StepExecutor {
 public:
  using Factory = std::function<absl::StatusOr<std::shared_ptr<executor::StepExecutor>>()>;
  explicit LazyExecutor(Factory make) : make_(std::move(make)) {}

  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override {
    std::shared_ptr<executor::StepExecutor> inner;
    {
      absl::MutexLock l(&mu_);
      if (!made_) {
        made_ = true;
        absl::StatusOr<std::shared_ptr<executor::StepExecutor>> e = make_();
        if (e.ok()) {
          inner_ = *std::move(e);
        } else {
          error_ = e.status();
        }
      }
      if (!error_.ok()) return error_;
      inner = inner_;
    }
    return inner->Execute(request, log, cancel);
  }

 private:
  Factory make_;
  absl::Mutex mu_;
  bool made_ ABSL_GUARDED_BY(mu_) = false;
  std::shared_ptr<executor::StepExecutor> inner_ ABSL_GUARDED_BY(mu_);
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

std::string Basename(const std::string& p) { return p.substr(p.rfind('/') + 1); }

// Logs a transfer's progress: one line per change of a layer's status, not per byte.
class TransferLog {
 public:
  explicit TransferLog(std::function<void(const std::string&)> log) : log_(std::move(log)) {}
  void operator()(const image::Progress& p) {
    absl::MutexLock l(&mu_);
    std::string& last = status_[p.id];
    if (last == p.status) return;
    last = p.status;
    log_(absl::StrCat(p.id, ": ", p.status));
  }

 private:
  std::function<void(const std::string&)> log_;
  absl::Mutex mu_;
  std::map<std::string, std::string> status_ ABSL_GUARDED_BY(mu_);
};

// Shows each base-image resolution as "[internal] load metadata for REF", with the pull's
// progress as its log.
class VertexResolver : public image::BaseImageResolver {
 public:
  VertexResolver(engine::EventWriter* events, int* next_vertex)
      : events_(events), next_(next_vertex) {}

  absl::Status Init(const Deps& deps, image::StoreResolverOptions options) {
    options.progress = [this](const image::Progress& p) {
      if (current_ != nullptr) (*current_)(p);
    };
    ASSIGN_OR_RETURN(inner_,
                     image::StoreResolver::Create(deps.cas, deps.images, std::move(options)));
    return absl::OkStatus();
  }

  absl::StatusOr<image::ResolvedImage> Resolve(const std::string& ref,
                                               const std::string& platform) override {
    engine::EventWriter::Span v = events_->Start((*next_)++, "[internal] load metadata for " + ref);
    TransferLog log([&v](const std::string& line) { v.Log(line); });
    current_ = &log;
    absl::StatusOr<image::ResolvedImage> r = inner_->Resolve(ref, platform);
    current_ = nullptr;
    if (r.ok()) {
      v.Done();
    } else {
      v.Fail(r.status().message());
    }
    return r;
  }

 private:
  engine::EventWriter* events_;
  int* next_;
  std::shared_ptr<image::StoreResolver> inner_;
  TransferLog* current_ = nullptr;  // the pull being logged (planning resolves one at a time)
};

// Counts the step vertices that finished, for the outcome of a build that failed.
class CountingSink {
 public:
  explicit CountingSink(engine::EventSink next) : next_(std::move(next)) {}
  void operator()(const farm::v1::BuildEvent& e) {
    if (e.has_vertex() && !e.vertex().key().empty()) {
      if (e.vertex().state() == farm::v1::VertexUpdate::CACHED) {
        ++cached_;
        ++done_;
      } else if (e.vertex().state() == farm::v1::VertexUpdate::DONE) {
        ++done_;
      }
    }
    if (next_) next_(e);
  }
  int done() const { return done_; }
  int cached() const { return cached_; }

 private:
  engine::EventSink next_;
  int done_ = 0;  // the writer serializes calls
  int cached_ = 0;
};

class Pipeline {
 public:
  Pipeline(const Deps& deps, const Request& req, const engine::EventSink& sink,
           const absl::Notification* cancel)
      : deps_(deps),
        req_(req),
        counts_(std::make_shared<CountingSink>(sink)),
        events_([c = counts_](const farm::v1::BuildEvent& e) { (*c)(e); }),
        cancel_(cancel) {}

  Result Run() {
    Result r;
    r.status = RunImpl(&r);
    farm::v1::BuildOutcome& o = r.outcome;
    if (r.status.ok()) {
      o.set_ok(true);
    } else {
      o.Clear();
      o.set_ok(false);
      o.set_error(absl::IsCancelled(r.status)
                      ? "canceled"
                      : absl::StrCat("failed to build: ", r.status.message()));
      o.set_steps(counts_->done());
      o.set_cached_steps(counts_->cached());
    }
    events_.Outcome(o);
    return r;
  }

 private:
  absl::Status RunImpl(Result* r) {
    int next_vertex = req_.first_vertex_id;
    ASSIGN_OR_RETURN(std::unique_ptr<plan::Plan> plan, FrontEnd(&next_vertex));
    r->plan = std::move(plan);
    if (req_.on_planned) req_.on_planned(*r->plan);
    for (const std::string& w : r->plan->warnings) events_.Warn(w);

    // Made when the first step has to run: a fully cached build never opens it (for farm
    // build that is the sandbox's state, cgroups and network: ~20 ms of a 110 ms no-op).
    auto executor = std::make_shared<LazyExecutor>(deps_.executor);
    engine::EngineDeps engine_deps{deps_.cas, deps_.ac, std::move(executor), deps_.inflight};
    engine::BuildRequest br = req_.engine;
    br.plan = r->plan.get();
    br.dockerfile = req_.dockerfile_name;
    br.first_vertex_id = next_vertex;
    engine::EventSink sink = [this](const farm::v1::BuildEvent& e) { events_.Emit(e); };
    absl::StatusOr<engine::BuildOutput> out = engine::RunBuild(engine_deps, br, sink, cancel_);
    if (!out.ok()) return out.status();
    r->output = *std::move(out);
    return Export(*r->output, r);
  }

  // Parse, load the context, plan: "[internal] load build definition from NAME".
  absl::StatusOr<std::unique_ptr<plan::Plan>> FrontEnd(int* next_vertex) {
    engine::EventWriter::Span def =
        events_.Start((*next_vertex)++,
                      "[internal] load build definition from " + Basename(req_.dockerfile_name));
    absl::StatusOr<std::unique_ptr<plan::Plan>> p = Plan(next_vertex);
    if (p.ok()) {
      def.Done();
    } else {
      def.Fail(p.status().message());
    }
    return p;
  }

  absl::StatusOr<std::unique_ptr<plan::Plan>> Plan(int* next_vertex) {
    ASSIGN_OR_RETURN(dockerfile::SyntaxTree tree,
                     dockerfile::Parse(req_.dockerfile, req_.dockerfile_name));
    ASSIGN_OR_RETURN(dockerfile::Dockerfile df, dockerfile::BuildInstructions(tree));
    if (req_.context == nullptr) return absl::InvalidArgumentError("no build context");
    {
      engine::EventWriter::Span ctx =
          events_.Start((*next_vertex)++, "[internal] load build context");
      absl::Status loaded = req_.context->Load([&ctx](const std::string& l) { ctx.Log(l); });
      if (!loaded.ok()) {
        ctx.Fail(loaded.message());
        return common::Annotate(loaded, "loading the build context");
      }
      ctx.Done();
    }
    VertexResolver resolver(&events_, next_vertex);
    RETURN_IF_ERROR(resolver.Init(deps_, req_.resolve));
    plan::PlanOptions po = req_.plan;
    po.resolver = &resolver;
    po.context = &req_.context->tree();
    po.context_root = req_.context->root();
    ASSIGN_OR_RETURN(plan::Plan p, plan::MakePlan(df, po));
    return std::make_unique<plan::Plan>(std::move(p));
  }

  // "exporting to image": describe, store, tag, extra outputs, push.
  absl::Status Export(const engine::BuildOutput& out, Result* r) {
    engine::EventWriter::Span v = events_.Start(out.next_vertex_id, "exporting to image");
    absl::Status s = ExportImpl(out, &v, r);
    if (s.ok()) {
      v.Done();
    } else {
      v.Fail(s.message());
    }
    return s;
  }

  absl::Status ExportImpl(const engine::BuildOutput& out, engine::EventWriter::Span* v, Result* r) {
    ASSIGN_OR_RETURN(r->image,
                     image::DescribeImage(*deps_.cas, out.image.manifest, out.image.layers));
    RETURN_IF_ERROR(deps_.images->Put(r->image));
    v->Log(absl::StrCat("writing image ", out.image.config.digest, " done"));
    for (const oci::Reference& t : req_.tags) {
      ASSIGN_OR_RETURN(std::string previous, deps_.images->SetReference(t, r->image.digest));
      (void)previous;
      v->Log(absl::StrCat("naming to ", t.String(), " done"));
    }
    auto log = [v](const std::string& line) { v->Log(line); };
    if (req_.export_outputs) {
      Exported e{&r->image, &req_.tags, &out.image.layers};
      RETURN_IF_ERROR(req_.export_outputs(e, log));
    }
    if (req_.push) RETURN_IF_ERROR(Push(r->image, log));

    farm::v1::BuildOutcome& o = r->outcome;
    o.set_image_id(out.image.config.digest);
    o.set_manifest_digest(out.image.manifest.digest);
    o.set_manifest_size(out.image.manifest.size);
    o.set_manifest_media_type(out.image.manifest.media_type);
    for (const oci::Reference& t : req_.tags) o.add_tags(t.String());
    o.set_steps(out.steps_total);
    o.set_cached_steps(out.steps_cached);
    return absl::OkStatus();
  }

  absl::Status Push(const image::ImageRecord& built,
                    const std::function<void(const std::string&)>& log) {
    // Layers kept uncompressed are gzip-compressed now, once (remembered in the action cache).
    image::LayerExportOptions eo;
    eo.memo = deps_.ac.get();
    ASSIGN_OR_RETURN(image::ImageRecord rec, image::CompressLayersForExport(*deps_.cas, built, eo));
    registry::ClientPool pool(req_.push_registry);
    for (const oci::Reference& t : req_.tags) {
      ASSIGN_OR_RETURN(registry::Client * client, pool.Get(t.domain()));
      image::PushOptions po;
      auto progress = std::make_shared<TransferLog>(log);
      po.progress = [progress](const image::Progress& p) { (*progress)(p); };
      ASSIGN_OR_RETURN(image::PushResult pr, image::PushImage(*client, *deps_.cas, rec, t, po));
      log(absl::StrCat("pushing ", t.String(), ": ", pr.uploaded, " uploaded, ", pr.mounted,
                       " mounted, ", pr.existed, " already there, digest ", pr.digest));
    }
    return absl::OkStatus();
  }

  const Deps& deps_;
  const Request& req_;
  std::shared_ptr<CountingSink> counts_;
  engine::EventWriter events_;
  const absl::Notification* cancel_;
};

}  // namespace

Result Run(const Deps& deps, const Request& request, const engine::EventSink& sink,
           const absl::Notification* cancel) {
  Pipeline p(deps, request, sink, cancel);
  return p.Run();
}

}  // namespace farm::scheduler::pipeline
