// farm build: the embedded default. The front end, the engine, a local step executor, the
// CAS/action cache and the image store, all in this process under $FARM_HOME; no server.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "auth/secret_key.h"
#include "cli/build_flags.h"
#include "cli/build_outputs.h"
#include "cli/build_progress.h"
#include "cli/build_records.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/progress.h"
#include "cli/stores.h"
#include "common/farm_home.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "executor/secrets.h"
#include "scheduler/pipeline/contexts.h"
#include "scheduler/pipeline/pipeline.h"
#include "worker/emulation.h"
#include "worker/local_step_executor.h"
#include "worker/sandbox_settings.h"

namespace farm::cli {

namespace {

// FARM_TIMING=1: how long each phase of the build took, on stderr (for performance work).
class PhaseTimer {
 public:
  PhaseTimer() : on_(getenv("FARM_TIMING") != nullptr), last_(absl::Now()) {}
  void Mark(const char* phase) {
    if (!on_) return;
    absl::Time now = absl::Now();
    std::cerr << "timing: " << phase << " " << absl::FormatDuration(now - last_) << "\n";
    last_ = now;
  }

 private:
  bool on_;
  absl::Time last_;
};

// SIGINT/SIGTERM cancel the build: the handler writes to a pipe, a thread turns that into a
// notification (nothing else is async-signal-safe).
int g_signal_pipe[2] = {-1, -1};
void OnSignal(int) {
  char c = 1;
  ssize_t r = write(g_signal_pipe[1], &c, 1);
  (void)r;
}

// farm build's flags: the shared ones and those of a build in this process.
struct LocalBuildFlags : BuildFlags {
  std::vector<std::string> ssh;
  std::vector<std::string> outputs;
  int64_t max_parallel = 0;
};

class Build {
 public:
  explicit Build(LocalBuildFlags f) : f_(std::move(f)) {}

  int Run(const std::string& context_arg) {
    int rc = RunImpl(context_arg);
    progress_.Finish();
    return rc;
  }

 private:
  int RunImpl(const std::string& context_arg) {
    absl::StatusOr<cli::ProgressMode> mode =
        cli::ParseProgressMode(f_.quiet ? "quiet" : f_.progress);
    if (!mode.ok()) return progress_.Fatal(mode.status());
    if (!f_.in.platform.empty()) {
      // "linux/amd64,linux/arm64": one image per platform, assembled into an index. Another
      // architecture's RUN steps need QEMU registered with binfmt_misc: say so now.
      absl::StatusOr<std::vector<std::string>> want =
          scheduler::pipeline::ParsePlatformList(f_.in.platform);
      if (!want.ok()) return progress_.Fatal(common::Annotate(want.status(), "--platform"));
      for (const std::string& p : *want) {
        absl::Status can = worker::CheckCanRun(p);
        if (!can.ok())
          return progress_.Fatal(common::Annotate(can, absl::StrCat("--platform ", p)));
      }
      platforms_ = *std::move(want);
      if (platforms_.size() == 1) f_.in.platform = platforms_[0];
    }
    absl::StatusOr<CheckedBuildFlags> checked = CheckBuildFlags(f_);
    if (!checked.ok()) return progress_.Fatal(checked.status());
    checked_ = *std::move(checked);
    absl::StatusOr<std::map<std::string, BuildContextArg>> named = f_.in.BuildContexts();
    if (!named.ok()) return progress_.Fatal(named.status());
    named_ = *std::move(named);
    const std::vector<oci::Reference>& tags = checked_.tags;
    const std::map<std::string, std::string>& labels = checked_.labels;
    const std::map<std::string, std::string>& secrets = checked_.secrets;
    std::vector<OutputSpec> outputs;
    for (const std::string& o : f_.outputs) {
      absl::StatusOr<OutputSpec> spec = ParseOutputSpec(o);
      if (!spec.ok()) return progress_.Fatal(spec.status());
      outputs.push_back(*spec);
    }
    std::map<std::string, std::string> agents;
    for (const std::string& s : f_.ssh) {
      size_t eq = s.find('=');
      std::string id = s.substr(0, eq);
      std::string sock = eq == std::string::npos ? "" : s.substr(eq + 1);
      if (sock.empty()) {
        const char* env = getenv("SSH_AUTH_SOCK");
        if (env == nullptr) {
          return progress_.Fatal(absl::InvalidArgumentError(
              absl::StrCat("--ssh ", s, ": no socket given and SSH_AUTH_SOCK is not set")));
        }
        sock = env;
      }
      agents[id] = sock;
    }

    // The context: a directory, or a tar on stdin ("-").
    absl::StatusOr<BuildSource> source = OpenBuildSource(context_arg, &f_.in);
    if (!source.ok()) return progress_.Fatal(source.status());
    const std::string& context_dir = source->context_dir;
    if (source->tar_dir) tar_context_ = context_dir;
    const std::string* stdin_df = source->stdin_dockerfile ? &*source->stdin_dockerfile : nullptr;
    const std::string& dockerfile_path = source->dockerfile_path;
    dockerfile_text_ = source->dockerfile_text;
    progress_.Start(ProgressPrinter::Create(*mode, 2, dockerfile_text_, source->dockerfile_name));

    // Stores (waits for another farm process using the same home). The contexts are hashed
    // while the databases open (each takes tens of milliseconds), once the home is ours: a
    // build waiting for the lock hashes what the user has when it starts, not before.
    absl::StatusOr<std::string> home = common::FarmHome();
    if (!home.ok()) return progress_.Fatal(home.status());
    // Whatever happens next, the hashing threads stop before `source` (a stdin tar's
    // directory) goes.
    absl::Cleanup stop_hashing = [this] {
      context_.reset();
      named_dirs_.clear();
    };
    absl::StatusOr<LocalStores> stores = OpenLocalStores(
        *home, [&] { MakeContexts(*home, context_dir, stdin_df ? "" : dockerfile_path); });
    if (!stores.ok()) return progress_.Fatal(stores.status());
    stores_ = &*stores;
    // The operator's sandbox settings for this machine (entitlements it permits, limits).
    sandbox_conf_ = common::JoinPath(stores_->home, "sandbox.conf");
    absl::StatusOr<worker::SandboxSettings> settings = worker::ReadSandboxConfig(sandbox_conf_);
    if (!settings.ok()) return progress_.Fatal(settings.status());
    sandbox_ = *std::move(settings);

    // Cancellation.
    absl::Notification cancel;
    std::atomic<bool> done{false};
    std::thread signal_thread;
    if (pipe2(g_signal_pipe, O_CLOEXEC) == 0) {
      signal(SIGINT, OnSignal);
      signal(SIGTERM, OnSignal);
      signal_thread = std::thread([&] {
        char c;
        while (read(g_signal_pipe[0], &c, 1) == 1) {
          if (c == 1 && !cancel.HasBeenNotified()) cancel.Notify();
          if (c == 0) break;
        }
      });
    }
    int rc = BuildWithStores(context_dir, dockerfile_path, stdin_df, tags, labels, secrets, agents,
                             outputs, cancel);
    done = true;
    if (signal_thread.joinable()) {
      char stop = 0;
      ssize_t w = write(g_signal_pipe[1], &stop, 1);
      (void)w;
      signal_thread.join();
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
    }
    return rc;
  }

  int BuildWithStores(const std::string& context_dir, const std::string& dockerfile_path,
                      const std::string* stdin_df, const std::vector<oci::Reference>& tags,
                      const std::map<std::string, std::string>& labels,
                      const std::map<std::string, std::string>& secrets,
                      const std::map<std::string, std::string>& agents,
                      const std::vector<OutputSpec>& outputs, absl::Notification& cancel) {
    LocalStores& st = *stores_;
    timer_.Mark("open stores");
    farm::v1::BuildRecord record;
    record.set_id(NewBuildId());
    record.set_started_unix_micros(absl::ToUnixMicros(absl::Now()));
    record.set_dockerfile(stdin_df ? "-" : Absolute(dockerfile_path));
    record.set_context(Absolute(context_dir));
    record.set_target(f_.in.target);
    absl::StatusOr<std::unique_ptr<FileBuildRecords>> records =
        FileBuildRecords::Create(common::JoinPath(st.home, "builds"));
    if (!records.ok()) return progress_.Fatal(records.status());

    // The executor (RUN steps start the farm-sandbox runner beside this binary), made when the
    // first step must run: it reads the contexts' files through overlays on the CAS.
    std::shared_ptr<worker::LocalStepExecutor> local_executor;
    scheduler::pipeline::Deps deps;
    deps.cas = st.blobs;
    deps.ac = st.action_cache;
    deps.images = st.images;
    deps.executor = [&]() -> absl::StatusOr<std::shared_ptr<executor::StepExecutor>> {
      timer_.Mark("parse, hash the context, resolve bases, plan");
      worker::LocalStepExecutor::Options wo;
      wo.state_dir = common::JoinPath(st.home, "worker");
      wo.cas = context_->snapshot().Overlay(st.blobs);
      for (const auto& [unused, c] : named_dirs_) wo.cas = c->snapshot().Overlay(wo.cas);
      wo.secrets = std::make_shared<executor::MapSecretProvider>(secrets, agents);
      wo.policy = sandbox_.policy;
      wo.limits = sandbox_.limits;
      wo.store_layers_behind = true;  // the engine records a step once its layer is stored
      // The process exits right after the build: the firewall table goes without being waited
      // for (the next build's executor waits for its removal).
      wo.policy.network.teardown_behind = true;
      ASSIGN_OR_RETURN(local_executor, worker::LocalStepExecutor::Create(std::move(wo)));
      timer_.Mark("open the executor");
      return std::shared_ptr<executor::StepExecutor>(local_executor);
    };

    scheduler::pipeline::Request req;
    req.dockerfile = dockerfile_text_;
    req.dockerfile_name = stdin_df ? "<stdin>" : dockerfile_path;
    req.context = context_.get();
    absl::StatusOr<std::map<std::string, std::string>> build_args = f_.in.BuildArgs();
    if (!build_args.ok()) return progress_.Fatal(build_args.status());
    req.plan.build_args = *build_args;
    req.plan.target = f_.in.target;
    req.plan.platform = f_.in.platform;
    for (const auto& [name, arg] : named_) {
      if (!arg.image.empty()) req.plan.named_contexts[name].image = arg.image;
    }
    for (const auto& [name, c] : named_dirs_) req.named_contexts[name] = c.get();
    if (platforms_.size() > 1) req.platforms = platforms_;
    req.plan.layer_options = checked_.layer_options;
    req.plan.layer_options.set_normalize_permissions(f_.in.normalize_permissions);
    req.plan.default_network = f_.network;
    req.plan.check_entitlements = true;
    req.plan.allowed_entitlements = checked_.allow;
    req.plan.permitted_entitlements = sandbox_.policy.entitlements;
    req.plan.permitted_by =
        absl::StrCat("this host (", sandbox_conf_, ": allow-entitlement = NAME)");
    if (!secrets.empty()) {
      // Secret values enter step keys only as HMACs under this home's key.
      absl::StatusOr<std::unique_ptr<auth::SecretKey>> key =
          auth::SecretKey::LoadOrCreate(common::JoinPath(st.home, "secret.key"));
      if (!key.ok()) return progress_.Fatal(key.status());
      req.plan.secret_digests = scheduler::plan::SecretDigests(**key, secrets);
    }
    req.resolve.pull_policy =
        f_.pull ? scheduler::image::PullPolicy::kAlways : scheduler::image::PullPolicy::kMissing;
    req.resolve.registry = RegistryOptionsFrom(f_.insecure);
    req.engine.cache_read_scopes = {f_.cache_scope};
    for (const std::string& s : f_.cache_from_scopes) req.engine.cache_read_scopes.push_back(s);
    req.engine.cache_write_scope = f_.cache_scope;
    req.engine.no_cache = f_.no_cache;
    req.engine.source_date_epoch = checked_.source_date_epoch;
    req.engine.format = f_.format == "docker" ? scheduler::image::ManifestFormat::kDocker
                                              : scheduler::image::ManifestFormat::kOci;
    req.engine.labels = labels;
    req.engine.max_parallel = static_cast<int>(f_.max_parallel);
    req.tags = tags;
    if (!outputs.empty()) {
      req.export_outputs = [&](const scheduler::pipeline::Exported& e,
                               const std::function<void(const std::string&)>& log) {
        for (const OutputSpec& o : outputs) {
          if (o.type == "local" && local_executor == nullptr) {
            // (a fully cached build never made the executor; its layer store unpacks)
            RETURN_IF_ERROR(deps.executor().status());
          }
          RETURN_IF_ERROR(ExportImage(o, *st.blobs, *e.image, *e.tags, *e.layers,
                                      local_executor ? local_executor->layer_store() : nullptr));
          if (o.type != "image") log(absl::StrCat("exporting ", o.type, " to ", o.dest, " done"));
        }
        return absl::OkStatus();
      };
    }
    req.push = f_.push;
    req.push_registry = RegistryOptionsFrom(f_.insecure);

    scheduler::engine::EventSink sink = [this](const farm::v1::BuildEvent& e) {
      progress_.Event(e);
    };
    scheduler::pipeline::Result r = scheduler::pipeline::Run(deps, req, sink, &cancel);
    timer_.Mark("run the steps, assemble and export");
    for (const scheduler::pipeline::PlatformBuild& b : r.builds) {
      RecordSteps(*b.plan,
                  b.output ? b.output->steps : std::vector<scheduler::engine::StepOutcome>(),
                  &record);
    }
    if (!r.status.ok()) return Finish(&record, **records, r.status);

    std::vector<std::string> names;
    for (const oci::Reference& t : tags) names.push_back(t.String());
    // A multi-platform image's ID is its index's digest, as with Docker's containerd store.
    const farm::v1::BuildOutcome& out = r.outcome;
    record.set_image_id(out.image_id());
    record.set_manifest_digest(out.manifest_digest());
    for (const std::string& n : names) record.add_tags(n);
    if (!f_.iidfile.empty()) {
      absl::Status w = common::WriteFileAtomic(f_.iidfile, out.image_id());
      if (!w.ok()) return Finish(&record, **records, w);
    }
    if (!f_.metadata_file.empty()) {
      absl::Status w = common::WriteFileAtomic(
          f_.metadata_file,
          BuildMetadataJson(out.image_id(), out.manifest_digest(), out.manifest_media_type(),
                            out.manifest_size(), names, record.id()));
      if (!w.ok()) return Finish(&record, **records, w);
    }
    Finish(&record, **records, absl::OkStatus());
    timer_.Mark("write the build record");
    if (f_.quiet) std::cout << out.image_id() << std::endl;
    return 0;
  }

  // The main context (hashed in place, with a stat cache per context directory; a tar on stdin
  // has none) and the named directory contexts (--build-context: their own .dockerignore and
  // stat cache), read by the in-process worker where they are: nothing is copied. Their
  // hashing starts now.
  void MakeContexts(const std::string& home, const std::string& context_dir,
                    const std::string& dockerfile_path) {
    scheduler::context::SnapshotOptions so;
    so.normalize_permissions = f_.in.normalize_permissions;
    if (tar_context_.empty()) so.stat_cache = ContextStatCachePath(home, context_dir);
    context_ =
        std::make_unique<scheduler::pipeline::LocalContext>(context_dir, dockerfile_path, so);
    context_->Prefetch();
    for (const auto& [name, arg] : named_) {
      if (!arg.image.empty()) continue;
      scheduler::context::SnapshotOptions nso;
      nso.normalize_permissions = f_.in.normalize_permissions;
      nso.stat_cache = ContextStatCachePath(home, arg.dir);
      auto& c = named_dirs_[name];
      c = std::make_unique<scheduler::pipeline::LocalContext>(arg.dir, "", nso);
      c->Prefetch();
    }
  }

  // Writes the build record; returns the exit status for `status` (the pipeline has shown the
  // outcome already).
  int Finish(farm::v1::BuildRecord* record, BuildRecords& records, const absl::Status& status) {
    record->set_finished_unix_micros(absl::ToUnixMicros(absl::Now()));
    record->set_ok(status.ok());
    if (!status.ok()) record->set_error(std::string(status.message()));
    absl::Status w = records.Put(*record);
    if (!w.ok()) std::cerr << "warning: keeping the build record: " << w.message() << "\n";
    return status.ok() ? 0 : 1;
  }

  static std::string Absolute(const std::string& p) {
    if (p.empty() || p[0] == '/') return p;
    char buf[4096];
    if (getcwd(buf, sizeof(buf)) == nullptr) return p;
    return common::CleanPath(common::JoinPath(buf, p));
  }
  static std::string Basename(const std::string& p) { return p.substr(p.rfind('/') + 1); }

  LocalBuildFlags f_;
  std::vector<std::string> platforms_;            // --platform's list ("" → the host's)
  std::map<std::string, BuildContextArg> named_;  // --build-context
  CheckedBuildFlags checked_;
  PhaseTimer timer_;
  std::string tar_context_;  // set when the context came as a tar on stdin
  std::string dockerfile_text_;
  BuildProgress progress_;
  LocalStores* stores_ = nullptr;
  std::string sandbox_conf_;
  worker::SandboxSettings sandbox_;
  std::unique_ptr<scheduler::pipeline::LocalContext> context_;
  std::map<std::string, std::unique_ptr<scheduler::pipeline::LocalContext>> named_dirs_;
};

}  // namespace

int RunBuild(const Args& args) {
  common::FlagSet fs("farm build [OPTIONS] PATH | -",
                     "Build an image from a Dockerfile, in this process (no server needed).\n"
                     "PATH is the build context; - reads it as a tar from stdin.");
  LocalBuildFlags f;
  f.Register(&fs);
  fs.Repeated("ssh", 0, &f.ssh, "SSH agent socket to expose to the build (default|<id>[=socket])",
              "stringArray");
  fs.Repeated("output", 'o', &f.outputs,
              "Output destination (type=oci|docker|local,dest=PATH); type=image is the default",
              "stringArray");
  fs.Int("max-parallel", 0, &f.max_parallel, "Steps running at once (0: one per core)");
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "build", &positional, &exit_code)) return exit_code;
  if (positional.size() != 1) {
    std::cerr << "\"farm build\" requires exactly 1 argument.\nSee 'farm build --help'.\n\n"
              << "Usage:  farm build [OPTIONS] PATH | -\n";
    return 2;
  }
  return Build(std::move(f)).Run(positional[0]);
}

}  // namespace farm::cli
