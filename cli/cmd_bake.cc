// farm bake: many Dockerfiles as one graph. Reads buildx's bake JSON / Compose files
// (cli/bake), then builds every target in this process at once against one set of stores,
// one step executor and one InflightSteps (scheduler/engine): a step several targets share runs
// once, each distinct context directory is hashed once, independent targets run in parallel.
// A target named as another's context ("target:base") is built first and read as an image.
// With --scheduler the targets go to a farm instead, each as `farm submit` would send it.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "cli/bake/definition.h"
#include "cli/bake/files.h"
#include "cli/build_outputs.h"
#include "cli/build_records.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/progress.h"
#include "cli/remote.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "scheduler/engine/engine.h"
#include "scheduler/pipeline/contexts.h"
#include "scheduler/pipeline/pipeline.h"
#include "worker/emulation.h"
#include "worker/local_step_executor.h"
#include "worker/sandbox_settings.h"

namespace farm::cli {

namespace {

struct BakeFlags {
  std::vector<std::string> files;
  std::string progress = "auto";
  std::string scheduler;
  auth::ClientAuthOptions security;
  std::vector<std::string> insecure;
  std::string cache_scope = "main";
  int64_t max_parallel = 0;
  bool print = false, no_cache = false, pull = false, push = false;
  bool load = false;  // --scheduler: bring every target's image back (farm submit --load)
};

std::string Absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return common::CleanPath(p);
  char buf[4096];
  if (getcwd(buf, sizeof(buf)) == nullptr) return p;
  return common::CleanPath(common::JoinPath(buf, p));
}

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

// What one target needs and what came of it.
struct TargetRun {
  bake::Target t;
  std::string context_dir;      // absolute
  std::string dockerfile_path;  // absolute ("" for dockerfile-inline)
  std::string dockerfile_text;
  std::string context_key;                     // into Baker::contexts_
  std::map<std::string, std::string> named;    // context name → key into contexts_ (directories)
  std::map<std::string, std::string> images;   // context name → image reference
  std::map<std::string, std::string> targets;  // context name → target name
  std::vector<oci::Reference> tags;
  std::vector<OutputSpec> outputs;
  bool push = false;
  std::vector<std::string> platforms;  // normalized; empty: the host's
  // Outcome.
  absl::Notification done;
  absl::Notification uploaded;  // --scheduler: its context is in farm-cache (or it failed)
  absl::Status status;
  std::string image_id;
  int steps_run = 0, steps_cached = 0;
  absl::Duration took;
};

class Baker {
 public:
  explicit Baker(BakeFlags f) : f_(std::move(f)) {}

  int Run(const std::vector<std::string>& names) {
    absl::StatusOr<std::vector<std::string>> files = bake::FindFiles(".", f_.files);
    if (!files.ok()) return Fatal(files.status());
    absl::StatusOr<bake::Definition> def = bake::LoadFiles(*files, bake::ProcessEnv());
    if (!def.ok()) return Fatal(def.status());
    for (const std::string& w : def->warnings) std::cerr << "WARNING: " << w << "\n";
    absl::StatusOr<bake::Resolved> resolved = bake::Resolve(*def, names);
    if (!resolved.ok()) return Fatal(resolved.status());
    if (f_.print) {
      std::cout << bake::PrintJson(*resolved) << std::endl;
      return 0;
    }
    absl::StatusOr<ProgressMode> mode = ParseProgressMode(f_.progress);
    if (!mode.ok()) return Fatal(mode.status());
    // Several builds at once: one plain stream, each line prefixed with its target.
    mode_ = *mode == ProgressMode::kQuiet ? ProgressMode::kQuiet : ProgressMode::kPlain;
    for (const bake::Target& t : resolved->targets) {
      auto run = std::make_unique<TargetRun>();
      run->t = t;
      absl::Status s = Prepare(run.get());
      if (!s.ok()) return Fatal(common::Annotate(s, absl::StrCat("target \"", t.name, "\"")));
      by_name_[t.name] = run.get();
      runs_.push_back(std::move(run));
    }
    if (!f_.scheduler.empty()) return RunOnFarm();
    return RunHere();
  }

 private:
  static int Fatal(const absl::Status& s) {
    std::cerr << "ERROR: " << s.message() << "\n";
    return 1;
  }

  absl::Status Prepare(TargetRun* r) {
    const bake::Target& t = r->t;
    r->context_dir = Absolute(t.context.value_or("."));
    if (!common::PathExists(r->context_dir)) {
      return absl::NotFoundError(absl::StrCat("context ", *t.context, " does not exist"));
    }
    if (t.dockerfile_inline) {
      r->dockerfile_text = *t.dockerfile_inline;
    } else {
      std::string df = t.dockerfile.value_or("Dockerfile");
      r->dockerfile_path = df[0] == '/' ? df : common::JoinPath(r->context_dir, df);
      ASSIGN_OR_RETURN(r->dockerfile_text, common::ReadFile(r->dockerfile_path));
    }
    r->context_key = ContextKey(r->context_dir, r->dockerfile_path);
    for (const auto& [name, value] : t.contexts) {
      ASSIGN_OR_RETURN(bake::ContextSource src, bake::ParseContextSource(value));
      switch (src.kind) {
        case bake::ContextSource::Kind::kImage:
          r->images[name] = src.value;
          break;
        case bake::ContextSource::Kind::kTarget:
          r->targets[name] = src.value;
          break;
        case bake::ContextSource::Kind::kPath: {
          std::string dir = Absolute(src.value);
          if (!common::PathExists(dir)) {
            return absl::NotFoundError(
                absl::StrCat("contexts.", name, ": ", src.value, " does not exist"));
          }
          r->named[name] = ContextKey(dir, "");
          break;
        }
      }
    }
    for (const std::string& tag : t.tags.value_or(std::vector<std::string>{})) {
      ASSIGN_OR_RETURN(oci::Reference ref, oci::Reference::ParseWithDefaultTag(tag));
      r->tags.push_back(std::move(ref));
    }
    for (const std::string& o : t.output.value_or(std::vector<std::string>{})) {
      if (o == "type=registry" || absl::StartsWith(o, "type=registry,")) {
        r->push = true;
        continue;
      }
      ASSIGN_OR_RETURN(OutputSpec spec, ParseOutputSpec(o));
      r->outputs.push_back(spec);
    }
    if (t.platforms && !t.platforms->empty()) {
      absl::StatusOr<std::vector<std::string>> platforms =
          scheduler::pipeline::ParsePlatformList(absl::StrJoin(*t.platforms, ","));
      if (!platforms.ok()) {
        return common::Annotate(platforms.status(), absl::StrCat("target ", t.name, ": platforms"));
      }
      for (const std::string& p : *platforms) {
        absl::Status can = worker::CheckCanRun(p);
        if (!can.ok() && f_.scheduler.empty()) {
          return common::Annotate(can, absl::StrCat("target ", t.name, ": platform ", p));
        }
      }
      r->platforms = *std::move(platforms);
    }
    return absl::OkStatus();
  }

  // One entry per distinct (directory, ignore file) pair.
  std::string ContextKey(const std::string& dir, const std::string& dockerfile_path) {
    std::string ignore_owner;
    if (!dockerfile_path.empty() && common::PathExists(dockerfile_path + ".dockerignore")) {
      ignore_owner = dockerfile_path;
    }
    std::string key = absl::StrCat(dir, "\n", ignore_owner);
    if (!contexts_.count(key)) {
      contexts_[key] = nullptr;
      context_order_.push_back({key, dir, ignore_owner});
    }
    return key;
  }

  // Cache scopes from bake's cache-from: "scope=X" (or "type=farm,scope=X") and bare words.
  std::vector<std::string> ReadScopes(const bake::Target& t) {
    std::vector<std::string> scopes = {f_.cache_scope};
    for (const std::string& c : t.cache_from.value_or(std::vector<std::string>{})) {
      std::string scope;
      if (!absl::StrContains(c, '=')) {
        scope = c;
      } else {
        for (absl::string_view kv : absl::StrSplit(c, ',')) {
          if (absl::ConsumePrefix(&kv, "scope=")) scope = std::string(kv);
        }
      }
      if (scope.empty()) {
        std::cerr << "WARNING: target " << t.name << ": cache-from " << c
                  << " ignored (farm reads action-cache scopes: scope=NAME)\n";
      } else if (std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) {
        scopes.push_back(scope);
      }
    }
    return scopes;
  }

  int RunHere() {
    absl::StatusOr<LocalStores> stores = OpenLocalStores();
    if (!stores.ok()) return Fatal(stores.status());
    st_ = &*stores;
    absl::StatusOr<worker::SandboxSettings> settings =
        worker::ReadSandboxConfig(common::JoinPath(st_->home, "sandbox.conf"));
    if (!settings.ok()) return Fatal(settings.status());

    // Each distinct context, hashed once (with its stat cache).
    absl::Status made = common::MakeDirs(common::JoinPath(st_->home, "contexts"), 0700);
    cache::BlobStore::Ptr cas = st_->blobs;
    for (const ContextEntry& c : context_order_) {
      absl::Time start = absl::Now();
      scheduler::context::SnapshotOptions so;
      if (made.ok()) {
        so.stat_cache = common::JoinPath(
            st_->home, absl::StrCat("contexts/", common::Sha256Hex(c.dir).substr(0, 32)));
      }
      auto ctx = std::make_unique<scheduler::pipeline::LocalContext>(c.dir, c.ignore_owner, so);
      absl::Status loaded = ctx->Load([](const std::string&) {});
      if (!loaded.ok()) return Fatal(common::Annotate(loaded, "loading context " + c.dir));
      if (mode_ != ProgressMode::kQuiet) {
        std::cerr << "[bake] context " << c.dir << " hashed ("
                  << absl::FormatDuration(absl::Now() - start) << ")\n";
      }
      // The executor reads every context's files where they are, through overlays.
      cas = ctx->snapshot().Overlay(cas);
      contexts_[c.key] = std::move(ctx);
    }
    worker::LocalStepExecutor::Options wo;
    wo.state_dir = common::JoinPath(st_->home, "worker");
    wo.cas = cas;
    wo.policy = settings->policy;
    wo.limits = settings->limits;
    absl::StatusOr<std::unique_ptr<worker::LocalStepExecutor>> exec =
        worker::LocalStepExecutor::Create(std::move(wo));
    if (!exec.ok()) return Fatal(exec.status());
    executor_ = std::shared_ptr<worker::LocalStepExecutor>(*std::move(exec));
    inflight_ = std::make_shared<scheduler::engine::InflightSteps>();

    absl::Notification cancel;
    std::thread signals = WatchSignals(&cancel);
    absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (auto& r : runs_) {
      threads.emplace_back([this, r = r.get(), &cancel] {
        absl::Time t0 = absl::Now();
        r->status = BuildOne(r, cancel);
        r->took = absl::Now() - t0;
        // buildx stops the others when one fails.
        if (!r->status.ok() && !cancel.HasBeenNotified()) cancel.Notify();
        r->done.Notify();
      });
    }
    for (std::thread& t : threads) t.join();
    StopWatchingSignals(signals);
    return Summary(absl::Now() - start);
  }

  absl::Status BuildOne(TargetRun* r, absl::Notification& cancel) {
    // Targets this one reads as contexts come first.
    for (const auto& [name, other] : r->targets) {
      TargetRun* o = by_name_.at(other);
      o->done.WaitForNotification();
      if (!o->status.ok()) {
        return absl::CancelledError(
            absl::StrCat("target \"", other, "\" (context ", name, ") failed"));
      }
    }
    std::unique_ptr<ProgressPrinter> printer = ProgressPrinter::Create(
        mode_, 2, r->dockerfile_text,
        r->dockerfile_path.empty() ? "dockerfile-inline" : r->dockerfile_path);
    printer->SetLinePrefix(absl::StrCat("[", r->t.name, "] "));
    SharedContext context(contexts_.at(r->context_key).get());

    scheduler::pipeline::Deps deps;
    deps.cas = st_->blobs;
    deps.ac = st_->action_cache;
    deps.images = st_->images;
    deps.executor = [this]() -> absl::StatusOr<std::shared_ptr<executor::StepExecutor>> {
      return std::shared_ptr<executor::StepExecutor>(executor_);
    };
    deps.inflight = inflight_;
    scheduler::pipeline::Request req;
    req.dockerfile = r->dockerfile_text;
    req.dockerfile_name = r->dockerfile_path.empty() ? "dockerfile-inline" : r->dockerfile_path;
    req.context = &context;
    req.plan.build_args = r->t.args;
    req.plan.target = r->t.target.value_or("");
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
      req.plan.named_contexts[name].image = ContextTag(*by_name_.at(other)).String();
    }
    bool pull = r->t.pull.value_or(f_.pull);
    req.resolve.pull_policy =
        pull ? scheduler::image::PullPolicy::kAlways : scheduler::image::PullPolicy::kMissing;
    req.resolve.registry = RegistryOptionsFrom(f_.insecure);
    req.engine.cache_read_scopes = ReadScopes(r->t);
    req.engine.cache_write_scope = f_.cache_scope;
    req.engine.no_cache = r->t.no_cache.value_or(f_.no_cache);
    req.engine.labels = r->t.labels;
    req.engine.max_parallel = static_cast<int>(f_.max_parallel);
    req.tags = r->tags;
    if (IsContextOfAnother(r->t.name)) req.tags.push_back(ContextTag(*r));
    if (!r->outputs.empty()) {
      req.export_outputs = [this, r](const scheduler::pipeline::Exported& e,
                                     const std::function<void(const std::string&)>& log) {
        for (const OutputSpec& o : r->outputs) {
          RETURN_IF_ERROR(
              ExportImage(o, *st_->blobs, *e.image, *e.tags, *e.layers, executor_->layer_store()));
          if (o.type != "image") log(absl::StrCat("exporting ", o.type, " to ", o.dest, " done"));
        }
        return absl::OkStatus();
      };
    }
    req.push = r->push || f_.push;
    req.push_registry = RegistryOptionsFrom(f_.insecure);
    ProgressPrinter* p = printer.get();
    scheduler::pipeline::Result res = scheduler::pipeline::Run(
        deps, req, [p](const farm::v1::BuildEvent& e) { p->OnEvent(e); }, &cancel);
    printer->Finish();
    if (!res.status.ok()) return res.status;
    r->image_id = res.outcome.image_id();
    r->steps_cached = res.outcome.cached_steps();
    r->steps_run = res.outcome.steps() - res.outcome.cached_steps();
    return absl::OkStatus();
  }

  bool IsContextOfAnother(const std::string& name) const {
    for (const auto& r : runs_) {
      for (const auto& [unused, other] : r->targets) {
        if (other == name) return true;
      }
    }
    return false;
  }

  // How a target used as another's context is found in the image store: its own first tag,
  // else a local name of bake's.
  static oci::Reference ContextTag(const TargetRun& r) {
    if (!r.tags.empty()) return r.tags[0];
    return *oci::Reference::ParseWithDefaultTag(absl::StrCat("farm-bake/", r.t.name, ":latest"));
  }

  int Summary(absl::Duration total) {
    int failed = 0;
    std::string out = absl::StrFormat("\n%-20s %-19s %5s %6s %9s\n", "TARGET", "IMAGE ID", "RUN",
                                      "CACHED", "TIME");
    for (const auto& r : runs_) {
      std::string id = r->image_id.empty() ? "" : r->image_id.substr(7, 12);
      if (!r->status.ok()) {
        ++failed;
        id = absl::IsCancelled(r->status) ? "(canceled)" : "(failed)";
      }
      absl::StrAppend(&out,
                      absl::StrFormat("%-20s %-19s %5d %6d %8.1fs\n", r->t.name, id, r->steps_run,
                                      r->steps_cached, absl::ToDoubleSeconds(r->took)));
    }
    absl::StrAppend(&out, absl::StrFormat("%d target(s) in %.1fs\n", runs_.size(),
                                          absl::ToDoubleSeconds(total)));
    if (mode_ != ProgressMode::kQuiet || failed > 0) std::cerr << out;
    for (const auto& r : runs_) {
      if (!r->status.ok() && !absl::IsCancelled(r->status)) {
        std::cerr << "ERROR: target \"" << r->t.name << "\": " << r->status.message() << "\n";
      }
    }
    if (mode_ == ProgressMode::kQuiet) {
      for (const auto& r : runs_) {
        if (r->status.ok()) std::cout << r->t.name << " " << r->image_id << "\n";
      }
    }
    return failed == 0 ? 0 : 1;
  }

  // On a farm: each target is a `farm submit` of this binary (its context upload skips what
  // farm-cache has, and the per-directory stat cache makes rehashing a shared context cheap);
  // they run at once, their lines prefixed with the target.
  int RunOnFarm() {
    absl::Time start = absl::Now();
    // Targets sharing a context go after the first of them, so it is uploaded once.
    std::map<std::string, TargetRun*> first_of_context;
    std::vector<std::thread> threads;
    for (auto& r : runs_) {
      TargetRun* first = nullptr;
      auto it = first_of_context.find(r->context_key);
      if (it == first_of_context.end()) {
        first_of_context[r->context_key] = r.get();
      } else {
        first = it->second;
      }
      threads.emplace_back([this, r = r.get(), first] {
        if (first != nullptr) first->uploaded.WaitForNotification();
        absl::Time t0 = absl::Now();
        // Targets this one reads as contexts come first (their images are in the farm's
        // store under ContextTag).
        for (const auto& [name, other] : r->targets) {
          TargetRun* o = by_name_.at(other);
          o->done.WaitForNotification();
          if (!o->status.ok() && r->status.ok()) {
            r->status = absl::CancelledError(
                absl::StrCat("target \"", other, "\" (context ", name, ") failed"));
          }
        }
        if (r->status.ok()) r->status = SubmitOne(r);
        r->took = absl::Now() - t0;
        if (!r->uploaded.HasBeenNotified()) r->uploaded.Notify();
        r->done.Notify();
      });
    }
    for (std::thread& t : threads) t.join();
    return Summary(absl::Now() - start);
  }

  absl::Status SubmitOne(TargetRun* r);

 public:
  // The security flags given to farm bake, passed on to each farm submit as they were.
  void SetSecurityArgs(const std::vector<std::string>& args) {
    static const char* kFlags[] = {"--tls-ca", "--tls-cert", "--tls-key", "--token-file"};
    for (size_t i = 0; i < args.size(); ++i) {
      for (const char* fl : kFlags) {
        if (args[i] == fl && i + 1 < args.size()) {
          security_args_.insert(security_args_.end(), {args[i], args[i + 1]});
        } else if (absl::StartsWith(args[i], std::string(fl) + "=")) {
          security_args_.push_back(args[i]);
        }
      }
      if (args[i] == "--tls" || args[i] == "--insecure") security_args_.push_back(args[i]);
    }
  }

 private:
  std::vector<std::string> security_args_;

  std::thread WatchSignals(absl::Notification* cancel);
  void StopWatchingSignals(std::thread& t);

  struct ContextEntry {
    std::string key, dir, ignore_owner;
  };

  BakeFlags f_;
  ProgressMode mode_ = ProgressMode::kPlain;
  std::vector<std::unique_ptr<TargetRun>> runs_;
  std::map<std::string, TargetRun*> by_name_;
  std::map<std::string, std::unique_ptr<scheduler::pipeline::LocalContext>> contexts_;
  std::vector<ContextEntry> context_order_;
  LocalStores* st_ = nullptr;
  std::shared_ptr<worker::LocalStepExecutor> executor_;
  std::shared_ptr<scheduler::engine::InflightSteps> inflight_;
};

// SIGINT/SIGTERM cancel the bake: the handler writes to a pipe, a thread turns that into the
// notification (nothing else is async-signal-safe).
int g_bake_signal_pipe[2] = {-1, -1};
void OnBakeSignal(int) {
  char c = 1;
  ssize_t w = write(g_bake_signal_pipe[1], &c, 1);
  (void)w;
}

std::thread Baker::WatchSignals(absl::Notification* cancel) {
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

void Baker::StopWatchingSignals(std::thread& t) {
  if (!t.joinable()) return;
  char stop = 0;
  ssize_t w = write(g_bake_signal_pipe[1], &stop, 1);
  (void)w;
  t.join();
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

absl::Status Baker::SubmitOne(TargetRun* r) {
  ASSIGN_OR_RETURN(common::TempDir tmp, common::TempDir::Create("farm-bake"));
  std::string iid = common::JoinPath(tmp.path(), "iid");
  std::string dockerfile = r->dockerfile_path;
  if (dockerfile.empty()) {
    // dockerfile-inline: the text goes as a file of its own (outside the context, as -f may).
    dockerfile = common::JoinPath(tmp.path(), "Dockerfile");
    RETURN_IF_ERROR(common::WriteFileAtomic(dockerfile, r->dockerfile_text));
  }
  std::vector<std::string> args = {
      "farm", "submit",      "--progress", "plain", "--iidfile",
      iid,    "--scheduler", f_.scheduler, "-f",    dockerfile};
  for (const auto& [k, v] : r->t.args) args.insert(args.end(), {"--build-arg", k + "=" + v});
  for (const auto& [k, v] : r->t.labels) args.insert(args.end(), {"--label", k + "=" + v});
  for (const oci::Reference& t : r->tags) args.insert(args.end(), {"-t", t.String()});
  if (IsContextOfAnother(r->t.name) && r->tags.empty()) {
    args.insert(args.end(), {"-t", ContextTag(*r).String()});
  }
  for (const auto& [name, key] : r->named) {
    const ContextEntry* e = nullptr;
    for (const ContextEntry& c : context_order_) {
      if (c.key == key) e = &c;
    }
    if (e == nullptr) return absl::InternalError(absl::StrCat("context ", name, " was not listed"));
    args.insert(args.end(), {"--build-context", absl::StrCat(name, "=", e->dir)});
  }
  for (const auto& [name, ref] : r->images) {
    args.insert(args.end(), {"--build-context", absl::StrCat(name, "=docker-image://", ref)});
  }
  for (const auto& [name, other] : r->targets) {
    args.insert(args.end(), {"--build-context", absl::StrCat(name, "=docker-image://",
                                                             ContextTag(*by_name_.at(other)).String())});
  }
  if (r->t.target) args.insert(args.end(), {"--target", *r->t.target});
  if (!r->platforms.empty()) args.insert(args.end(), {"--platform", absl::StrJoin(r->platforms, ",")});
  if (r->t.no_cache.value_or(f_.no_cache)) args.push_back("--no-cache");
  if (r->t.pull.value_or(f_.pull)) args.push_back("--pull");
  if (r->push || f_.push) args.push_back("--push");
  bool loads = false;
  for (const OutputSpec& o : r->outputs) loads |= o.type == "image";
  if (f_.load && !loads) args.push_back("--load");
  for (const OutputSpec& o : r->outputs) {
    args.insert(
        args.end(),
        {"-o", o.type == "image" ? "type=image" : absl::StrCat("type=", o.type, ",dest=", o.dest)});
  }
  for (const std::string& s : ReadScopes(r->t)) {
    if (s != f_.cache_scope) args.insert(args.end(), {"--cache-from-scope", s});
  }
  args.insert(args.end(), {"--cache-scope", f_.cache_scope});
  for (const std::string& i : f_.insecure) args.insert(args.end(), {"--insecure-registry", i});
  for (const std::string& a : security_args_) args.push_back(a);
  args.push_back(r->context_dir);

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  close(out[1]);
  // Relay its lines with the target's prefix, counting steps as they finish.
  std::map<std::string, std::string> names;  // "#3" → "[2/5] RUN make"
  std::string prefix = absl::StrCat("[", r->t.name, "] ");
  std::string buf;
  char chunk[4096];
  auto line_done = [&](const std::string& line) {
    if (mode_ != ProgressMode::kQuiet) {
      std::string w = prefix + line + "\n";
      ssize_t n = write(2, w.data(), w.size());
      (void)n;
    }
    if (line.empty() || line[0] != '#') return;
    size_t sp = line.find(' ');
    if (sp == std::string::npos) return;
    std::string id = line.substr(0, sp), rest = line.substr(sp + 1);
    if (!names.count(id)) {
      names[id] = rest;
      return;
    }
    bool step = absl::StartsWith(names[id], "[") && !absl::StartsWith(names[id], "[internal]");
    if (step && rest == "CACHED") ++r->steps_cached;
    if (step && absl::StartsWith(rest, "DONE")) ++r->steps_run;
  };
  for (;;) {
    ssize_t n = read(out[0], chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      line_done(buf.substr(0, nl));
      buf.erase(0, nl + 1);
    }
    // Once the build is submitted its context is in farm-cache.
    if (!r->uploaded.HasBeenNotified() && names.size() > 2) r->uploaded.Notify();
  }
  if (!buf.empty()) line_done(buf);
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::UnknownError("farm submit failed (see its lines above)");
  }
  absl::StatusOr<std::string> id = common::ReadFile(iid);
  if (id.ok()) r->image_id = *id;
  return absl::OkStatus();
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
  fs.Bool("no-cache", 0, &f.no_cache, "Run every step (results are still recorded)");
  fs.Bool("pull", 0, &f.pull, "Always pull base images");
  fs.Bool("push", 0, &f.push, "Push every target's tags");
  fs.Bool("load", 0, &f.load,
          "With --scheduler: bring every target's image into the local store (embedded builds "
          "store them locally anyway)");
  fs.String("cache-scope", 0, &f.cache_scope, "Action-cache scope written (and read first)",
            "string");
  fs.Repeated("insecure-registry", 0, &f.insecure, "Registry reached over plain HTTP",
              "stringArray");
  fs.Int("max-parallel", 0, &f.max_parallel, "Steps running at once per target (0: one per core)");
  fs.String("scheduler", 0, &f.scheduler,
            "Bake on a farm: farm-scheduler's HOST:PORT (each target as farm submit)", "string");
  SecurityFlags(fs, &f.security);
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "bake", &positional, &exit_code)) return exit_code;
  Baker b(std::move(f));
  b.SetSecurityArgs(args);
  return b.Run(positional);
}

}  // namespace farm::cli
