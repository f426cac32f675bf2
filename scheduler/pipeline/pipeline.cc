#include "scheduler/pipeline/pipeline.h"

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/platform.h"
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

  absl::Status Sync() override {
    std::shared_ptr<executor::StepExecutor> inner;
    {
      absl::MutexLock l(&mu_);
      inner = inner_;
    }
    return inner != nullptr ? inner->Sync() : absl::OkStatus();  // never made: nothing stored
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
  // `label_platforms`: names say which platform they resolve for (a multi-platform build).
  VertexResolver(engine::EventWriter* events, int* next_vertex, bool label_platforms)
      : events_(events), next_(next_vertex), label_(label_platforms) {}

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
    std::string prefix =
        label_ ? absl::StrCat("[", oci::NormalizePlatform(platform), " internal]") : "[internal]";
    engine::EventWriter::Span v =
        events_->Start((*next_)++, absl::StrCat(prefix, " load metadata for ", ref));
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
  bool label_;
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
    std::vector<std::string> platforms = req_.platforms;
    if (platforms.size() <= 1) {
      platforms = {platforms.empty() ? req_.plan.platform : platforms[0]};
      multi_ = false;
    } else {
      multi_ = true;
    }
    RETURN_IF_ERROR(FrontEnd(platforms, &next_vertex, &r->builds));
    for (const PlatformBuild& b : r->builds) {
      if (req_.on_planned) req_.on_planned(*b.plan);
    }
    std::set<std::string> warned;
    for (const PlatformBuild& b : r->builds) {
      for (const std::string& w : b.plan->warnings) {
        if (warned.insert(w).second) events_.Warn(w);
      }
    }

    // Made when the first step has to run: a fully cached build never opens it (for farm
    // build that is the sandbox's state, cgroups and network: ~20 ms of a 110 ms no-op).
    auto executor = std::make_shared<LazyExecutor>(deps_.executor);
    // The platforms' builds share steps in flight: a stage that is the same for every
    // platform (FROM --platform=$BUILDPLATFORM) runs once.
    std::shared_ptr<engine::InflightSteps> inflight = deps_.inflight;
    if (inflight == nullptr && multi_) inflight = std::make_shared<engine::InflightSteps>();
    engine::EngineDeps engine_deps{deps_.cas, deps_.ac, std::move(executor), inflight};
    engine::EventSink sink = [this](const farm::v1::BuildEvent& e) { events_.Emit(e); };
    if (!multi_) {
      engine::BuildRequest br = req_.engine;
      br.plan = r->builds[0].plan.get();
      br.dockerfile = req_.dockerfile_name;
      br.first_vertex_id = next_vertex;
      absl::StatusOr<engine::BuildOutput> out = engine::RunBuild(engine_deps, br, sink, cancel_);
      if (!out.ok()) return out.status();
      r->builds[0].output = *std::move(out);
      return Export(r);
    }

    // Several platforms: one engine each, in parallel. The first failure stops the others.
    absl::Notification stop;
    absl::Mutex mu;
    absl::Status first_error;
    std::vector<std::thread> threads;
    int export_vertex = next_vertex;
    for (PlatformBuild& b : r->builds) {
      engine::BuildRequest br = req_.engine;
      br.plan = b.plan.get();
      br.dockerfile = req_.dockerfile_name;
      br.first_vertex_id = export_vertex;
      br.vertex_label = b.platform;
      export_vertex += engine::VertexCount(*b.plan);
      threads.emplace_back([&, br, out = &b.output] {
        absl::StatusOr<engine::BuildOutput> o = engine::RunBuild(engine_deps, br, sink, &stop);
        if (o.ok()) {
          *out = *std::move(o);
          return;
        }
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = o.status();
        if (!stop.HasBeenNotified()) stop.Notify();
      });
    }
    // The caller's cancel reaches the platforms' engines through `stop`.
    std::atomic<bool> finished{false};
    std::thread watcher;
    if (cancel_ != nullptr) {
      watcher = std::thread([&] {
        while (!finished.load()) {
          if (cancel_->WaitForNotificationWithTimeout(absl::Milliseconds(5))) {
            absl::MutexLock l(&mu);
            if (first_error.ok()) first_error = absl::CancelledError("the build was canceled");
            if (!stop.HasBeenNotified()) stop.Notify();
            return;
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    finished = true;
    if (watcher.joinable()) watcher.join();
    {
      absl::MutexLock l(&mu);
      if (!first_error.ok()) return first_error;
    }
    return Export(r, export_vertex);
  }

  // Parse, load the context, plan each platform: "[internal] load build definition from NAME".
  absl::Status FrontEnd(const std::vector<std::string>& platforms, int* next_vertex,
                        std::vector<PlatformBuild>* builds) {
    engine::EventWriter::Span def =
        events_.Start((*next_vertex)++,
                      "[internal] load build definition from " + Basename(req_.dockerfile_name));
    absl::Status s = Plan(platforms, next_vertex, builds);
    if (s.ok()) {
      def.Done();
    } else {
      builds->clear();
      def.Fail(s.message());
    }
    return s;
  }

  absl::Status Plan(const std::vector<std::string>& platforms, int* next_vertex,
                    std::vector<PlatformBuild>* builds) {
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
      for (const auto& [name, named] : req_.named_contexts) {
        absl::Status l = named->Load(
            [&ctx, n = name](const std::string& line) { ctx.Log(absl::StrCat(n, ": ", line)); });
        if (!l.ok()) {
          ctx.Fail(l.message());
          return common::Annotate(l, absl::StrCat("loading the build context ", name));
        }
      }
      ctx.Done();
    }
    VertexResolver resolver(&events_, next_vertex, multi_);
    RETURN_IF_ERROR(resolver.Init(deps_, req_.resolve));
    for (const std::string& platform : platforms) {
      plan::PlanOptions po = req_.plan;
      po.platform = platform;
      po.resolver = &resolver;
      po.context = &req_.context->tree();
      po.context_root = req_.context->root();
      for (const auto& [name, named] : req_.named_contexts) {
        po.named_contexts[name].tree = &named->tree();
        po.named_contexts[name].root = named->root();
      }
      absl::StatusOr<plan::Plan> p = plan::MakePlan(df, po);
      if (!p.ok()) {
        if (!multi_) return p.status();
        return common::Annotate(p.status(), absl::StrCat("platform ", platform));
      }
      PlatformBuild b;
      b.platform = platform;
      b.plan = std::make_unique<plan::Plan>(*std::move(p));
      builds->push_back(std::move(b));
    }
    return absl::OkStatus();
  }

  // "exporting to image": describe, store, tag, extra outputs, push. `vertex` < 0: the one
  // after the (single) build's steps.
  absl::Status Export(Result* r, int vertex = -1) {
    if (vertex < 0) vertex = r->builds[0].output->next_vertex_id;
    engine::EventWriter::Span v = events_.Start(vertex, "exporting to image");
    absl::Status s = ExportImpl(&v, r);
    if (s.ok()) {
      v.Done();
    } else {
      v.Fail(s.message());
    }
    return s;
  }

  absl::Status ExportImpl(engine::EventWriter::Span* v, Result* r) {
    const engine::BuildOutput& first = *r->builds[0].output;
    std::vector<farm::v1::Layer> all_layers;
    std::vector<image::AssembledImage> images;
    int steps = 0, cached = 0;
    for (const PlatformBuild& b : r->builds) {
      images.push_back(b.output->image);
      all_layers.insert(all_layers.end(), b.output->image.layers.begin(),
                        b.output->image.layers.end());
      steps += b.output->steps_total;
      cached += b.output->steps_cached;
    }
    oci::Descriptor top = first.image.manifest;
    if (multi_) {
      for (const PlatformBuild& b : r->builds) {
        v->Log(absl::StrCat("exporting manifest ", b.output->image.manifest.digest, " (",
                            b.platform, ") done"));
      }
      ASSIGN_OR_RETURN(top, image::AssembleIndex(*deps_.cas, images, req_.engine.format));
      v->Log(absl::StrCat("exporting manifest list ", top.digest, " done"));
    }
    ASSIGN_OR_RETURN(r->image, image::DescribeImage(*deps_.cas, top, all_layers));
    RETURN_IF_ERROR(deps_.images->Put(r->image));
    v->Log(absl::StrCat("writing image ", r->image.Id(), " done"));
    for (const oci::Reference& t : req_.tags) {
      ASSIGN_OR_RETURN(std::string previous, deps_.images->SetReference(t, r->image.digest));
      (void)previous;
      v->Log(absl::StrCat("naming to ", t.String(), " done"));
    }
    auto log = [v](const std::string& line) { v->Log(line); };
    if (req_.export_outputs) {
      Exported e{&r->image, &req_.tags, &first.image.layers};
      RETURN_IF_ERROR(req_.export_outputs(e, log));
    }
    if (req_.push) RETURN_IF_ERROR(Push(r->image, log));

    farm::v1::BuildOutcome& o = r->outcome;
    o.set_image_id(r->image.Id());
    o.set_manifest_digest(top.digest);
    o.set_manifest_size(top.size);
    o.set_manifest_media_type(r->image.media_type);
    for (const oci::Reference& t : req_.tags) o.add_tags(t.String());
    o.set_steps(steps);
    o.set_cached_steps(cached);
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
  bool multi_ = false;  // several target platforms: an index
};

}  // namespace

absl::StatusOr<std::vector<std::string>> ParsePlatformList(const std::string& text) {
  if (text.size() > kMaxPlatformListBytes) {
    return absl::InvalidArgumentError(absl::StrCat("a platform list of ", text.size(),
                                                   " bytes (at most ", kMaxPlatformListBytes, ")"));
  }
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    part = absl::StripAsciiWhitespace(part);
    absl::StatusOr<oci::Platform> p = oci::Platform::Parse(part);
    if (!p.ok()) return common::Annotate(p.status(), absl::StrCat("platform \"", part, "\""));
    std::string n = p->String();
    if (!seen.insert(n).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("platform ", n, " is listed twice in \"", text, "\""));
    }
    out.push_back(std::move(n));
    if (out.size() > kMaxPlatforms) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", kMaxPlatforms, " platforms in one build"));
    }
  }
  return out;
}

Result Run(const Deps& deps, const Request& request, const engine::EventSink& sink,
           const absl::Notification* cancel) {
  Pipeline p(deps, request, sink, cancel);
  return p.Run();
}

}  // namespace farm::scheduler::pipeline
