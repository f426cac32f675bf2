// farm build: the embedded default. The front end, the engine, a local step executor, the
// CAS/action cache and the image store, all in this process under $FARM_HOME; no server.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "cli/build_flags.h"
#include "cli/build_inputs.h"
#include "cli/build_outputs.h"
#include "cli/build_progress.h"
#include "cli/build_records.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/progress.h"
#include "cli/stores.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "executor/secrets.h"
#include "scheduler/engine/engine.h"
#include "scheduler/image/store_resolver.h"
#include "scheduler/image/transfer.h"
#include "scheduler/registry/client.h"
#include "worker/local_step_executor.h"

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
    if (f_.in.platform != "linux/amd64" && f_.in.platform != oci::Platform::Host().String()) {
      return progress_.Fatal(absl::InvalidArgumentError(
          absl::StrCat("--platform ", f_.in.platform, ": this machine builds ",
                       oci::Platform::Host().String(), " only (no emulation is installed)")));
    }
    absl::StatusOr<CheckedBuildFlags> checked = CheckBuildFlags(f_);
    if (!checked.ok()) return progress_.Fatal(checked.status());
    checked_ = *std::move(checked);
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
    std::string dockerfile_text = stdin_df != nullptr ? *stdin_df : "";
    if (stdin_df == nullptr) {
      absl::StatusOr<std::string> text = common::ReadFile(dockerfile_path);
      if (text.ok()) dockerfile_text = *text;
    }
    progress_.Start(
        ProgressPrinter::Create(*mode, 2, dockerfile_text, stdin_df ? "<stdin>" : dockerfile_path));

    // Stores (waits for another farm process using the same home).
    absl::StatusOr<LocalStores> stores = OpenLocalStores();
    if (!stores.ok()) return progress_.Fatal(stores.status());
    stores_ = &*stores;

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
    int64_t build_start = absl::ToUnixMicros(absl::Now());
    farm::v1::BuildRecord record;
    record.set_id(cli::NewBuildId());
    record.set_started_unix_micros(build_start);
    record.set_dockerfile(stdin_df ? "-" : Absolute(dockerfile_path));
    record.set_context(Absolute(context_dir));
    record.set_target(f_.in.target);
    absl::StatusOr<std::unique_ptr<cli::FileBuildRecords>> records =
        FileBuildRecords::Create(common::JoinPath(st.home, "builds"));
    if (!records.ok()) return progress_.Fatal(records.status());

    farm::v1::LayerOptions layer_options = checked_.layer_options;
    std::optional<int64_t> epoch = checked_.source_date_epoch;

    int next_vertex = 1;
    int v_def = next_vertex++;
    int64_t t0 = absl::ToUnixMicros(absl::Now());
    progress_.Vertex(v_def, "[internal] load build definition from " + Basename(dockerfile_path),
                     farm::v1::VertexUpdate::STARTED);

    // Base images: resolved (pulled when needed) during planning, each shown as a vertex.
    scheduler::image::StoreResolverOptions ro;
    ro.pull_policy =
        f_.pull ? scheduler::image::PullPolicy::kAlways : scheduler::image::PullPolicy::kMissing;
    ro.registry = RegistryOptionsFrom(f_.insecure);
    int v_meta = 0;
    std::map<std::string, std::string> pull_status;
    ro.progress = [this, &v_meta, &pull_status](const scheduler::image::Progress& p) {
      // One line per change of a layer's status, not per byte.
      if (v_meta == 0 || pull_status[p.id] == p.status) return;
      pull_status[p.id] = p.status;
      progress_.Log(v_meta, absl::StrCat(p.id, ": ", p.status));
    };
    absl::StatusOr<std::shared_ptr<scheduler::image::StoreResolver>> store_resolver =
        scheduler::image::StoreResolver::Create(st.blobs, st.images, ro);
    if (!store_resolver.ok()) return progress_.Fatal(store_resolver.status());
    VertexResolver resolver(this, store_resolver->get(), &next_vertex, &v_meta);

    f_.in.network = f_.network;
    // The context's stat cache, one per context directory (a tar on stdin has none).
    std::string stat_cache;
    if (tar_context_.empty()) {
      std::string abs_context = Absolute(context_dir);
      absl::Status made = common::MakeDirs(common::JoinPath(st.home, "contexts"), 0700);
      if (made.ok()) {
        stat_cache = common::JoinPath(
            st.home, absl::StrCat("contexts/", common::Sha256Hex(abs_context).substr(0, 32)));
      }
    }
    absl::StatusOr<PreparedBuild> prepared =
        PrepareBuild(f_.in, context_dir, &resolver, layer_options, stdin_df, stat_cache);
    if (!prepared.ok()) {
      farm::v1::BuildEvent e;
      e.mutable_vertex()->set_id(v_def);
      e.mutable_vertex()->set_state(farm::v1::VertexUpdate::FAILED);
      e.mutable_vertex()->set_error(std::string(prepared.status().message()));
      progress_.Event(e);
      return Finish(&record, **records, prepared.status());
    }
    progress_.Vertex(v_def, "", farm::v1::VertexUpdate::DONE, absl::ToUnixMicros(absl::Now()) - t0);
    timer_.Mark("parse, hash the context, resolve bases, plan");
    for (const std::string& w : prepared->plan.warnings) {
      farm::v1::BuildEvent e;
      e.set_warning(w);
      progress_.Event(e);
    }

    // The context: the in-process worker reads it where it is (an overlay on the CAS serves
    // the snapshot's files from disk, checked against their digests), nothing is copied.
    int v_ctx = next_vertex++;
    progress_.Vertex(v_ctx, "[internal] load build context", farm::v1::VertexUpdate::STARTED);
    progress_.Log(v_ctx,
                  absl::StrCat("context: ", prepared->context->file_count(), " files, ",
                               common::HumanSize(prepared->context->total_bytes()), ", ",
                               prepared->context->files_hashed(), " read (the others unchanged)"));
    progress_.Vertex(v_ctx, "", farm::v1::VertexUpdate::DONE, 0);
    std::shared_ptr<cache::BlobStore> worker_cas = prepared->context->Overlay(st.blobs);

    // The executor (the sandbox runner is this same binary, re-executed).
    worker::LocalStepExecutor::Options wo;
    wo.state_dir = common::JoinPath(st.home, "worker");
    wo.cas = worker_cas;
    wo.secrets = std::make_shared<executor::MapSecretProvider>(secrets, agents);
    absl::StatusOr<std::unique_ptr<worker::LocalStepExecutor>> exec =
        worker::LocalStepExecutor::Create(std::move(wo));
    if (!exec.ok()) return Finish(&record, **records, exec.status());
    std::shared_ptr<worker::LocalStepExecutor> executor = *std::move(exec);
    timer_.Mark("open the executor");

    scheduler::engine::EngineDeps deps{st.blobs, st.action_cache, executor};
    scheduler::engine::BuildRequest req;
    req.plan = &prepared->plan;
    req.dockerfile = stdin_df ? "<stdin>" : dockerfile_path;
    req.cache_read_scopes = {f_.cache_scope};
    for (const std::string& s : f_.cache_from_scopes) req.cache_read_scopes.push_back(s);
    req.cache_write_scope = f_.cache_scope;
    req.no_cache = f_.no_cache;
    req.source_date_epoch = epoch;
    req.format = f_.format == "docker" ? scheduler::image::ManifestFormat::kDocker
                                       : scheduler::image::ManifestFormat::kOci;
    req.labels = labels;
    req.max_parallel = static_cast<int>(f_.max_parallel);
    req.first_vertex_id = next_vertex;
    scheduler::engine::EventSink sink = [this](const farm::v1::BuildEvent& e) {
      progress_.Event(e);
    };
    absl::StatusOr<scheduler::engine::BuildOutput> out =
        scheduler::engine::RunBuild(deps, req, sink, &cancel);
    if (!out.ok()) {
      return Finish(&record, **records, out.status(), &prepared->plan);
    }
    cli::RecordSteps(prepared->plan, out->steps, &record);
    timer_.Mark("run the steps and assemble");

    // Export: the image store (and names), then the outputs asked for.
    int v_exp = req.first_vertex_id;
    for (const scheduler::plan::Stage& stage : prepared->plan.stages) {
      if (stage.base_kind == scheduler::plan::Stage::BaseKind::kImage) ++v_exp;
      for (const scheduler::plan::Step& step : stage.steps) v_exp += step.key.empty() ? 0 : 1;
    }
    int64_t t2 = absl::ToUnixMicros(absl::Now());
    progress_.Vertex(v_exp, "exporting to image", farm::v1::VertexUpdate::STARTED);
    absl::StatusOr<scheduler::image::ImageRecord> rec =
        scheduler::image::DescribeImage(*st.blobs, out->image.manifest, out->image.layers);
    absl::Status s = rec.status();
    if (s.ok()) s = st.images->Put(*rec);
    if (s.ok()) {
      progress_.Log(v_exp, absl::StrCat("writing image ", out->image.config.digest, " done"));
      for (const oci::Reference& t : tags) {
        absl::StatusOr<std::string> prev = st.images->SetReference(t, rec->digest);
        if (!prev.ok()) {
          s = prev.status();
          break;
        }
        progress_.Log(v_exp, absl::StrCat("naming to ", t.String(), " done"));
      }
    }
    for (const OutputSpec& o : outputs) {
      if (!s.ok()) break;
      s = ExportImage(o, *st.blobs, *rec, tags, out->image.layers, executor->layer_store());
      if (s.ok() && o.type != "image") {
        progress_.Log(v_exp, absl::StrCat("exporting ", o.type, " to ", o.dest, " done"));
      }
    }
    if (s.ok() && f_.push) s = Push(*rec, tags, v_exp);
    if (!s.ok()) {
      progress_.Vertex(v_exp, "", farm::v1::VertexUpdate::FAILED);
      return Finish(&record, **records, s, &prepared->plan);
    }
    progress_.Vertex(v_exp, "", farm::v1::VertexUpdate::DONE, absl::ToUnixMicros(absl::Now()) - t2);
    timer_.Mark("store and export the image");

    std::vector<std::string> names;
    for (const oci::Reference& t : tags) names.push_back(t.String());
    record.set_image_id(out->image.config.digest);
    record.set_manifest_digest(out->image.manifest.digest);
    for (const std::string& n : names) record.add_tags(n);
    if (!f_.iidfile.empty()) {
      absl::Status w = common::WriteFileAtomic(f_.iidfile, out->image.config.digest);
      if (!w.ok()) return Finish(&record, **records, w, &prepared->plan);
    }
    if (!f_.metadata_file.empty()) {
      absl::Status w = common::WriteFileAtomic(
          f_.metadata_file, BuildMetadataJson(out->image.config.digest, out->image.manifest.digest,
                                              out->image.manifest.media_type,
                                              out->image.manifest.size, names, record.id()));
      if (!w.ok()) return Finish(&record, **records, w, &prepared->plan);
    }
    farm::v1::BuildEvent outcome;
    farm::v1::BuildOutcome* oc = outcome.mutable_outcome();
    oc->set_ok(true);
    oc->set_image_id(out->image.config.digest);
    oc->set_manifest_digest(out->image.manifest.digest);
    oc->set_manifest_size(out->image.manifest.size);
    oc->set_manifest_media_type(out->image.manifest.media_type);
    for (const std::string& n : names) oc->add_tags(n);
    oc->set_steps(out->steps_total);
    oc->set_cached_steps(out->steps_cached);
    progress_.Event(outcome);
    Finish(&record, **records, absl::OkStatus(), nullptr);
    timer_.Mark("write the build record");
    if (f_.quiet) std::cout << out->image.config.digest << std::endl;
    return 0;
  }

  absl::Status Push(const scheduler::image::ImageRecord& rec,
                    const std::vector<oci::Reference>& tags, int vertex) {
    scheduler::registry::ClientPool pool(RegistryOptionsFrom(f_.insecure));
    for (const oci::Reference& t : tags) {
      ASSIGN_OR_RETURN(scheduler::registry::Client * client, pool.Get(t.domain()));
      scheduler::image::PushOptions po;
      std::map<std::string, std::string> seen;
      po.progress = [this, vertex, &seen](const scheduler::image::Progress& p) {
        if (seen[p.id] == p.status) return;
        seen[p.id] = p.status;
        progress_.Log(vertex, absl::StrCat(p.id, ": ", p.status));
      };
      ASSIGN_OR_RETURN(scheduler::image::PushResult r,
                       scheduler::image::PushImage(*client, *stores_->blobs, rec, t, po));
      progress_.Log(vertex,
                    absl::StrCat("pushing ", t.String(), ": ", r.uploaded, " uploaded, ", r.mounted,
                                 " mounted, ", r.existed, " already there, digest ", r.digest));
    }
    return absl::OkStatus();
  }

  // Writes the build record; returns the exit status for `status`.
  int Finish(farm::v1::BuildRecord* record, cli::BuildRecords& records, const absl::Status& status,
             const scheduler::plan::Plan* plan = nullptr) {
    record->set_finished_unix_micros(absl::ToUnixMicros(absl::Now()));
    record->set_ok(status.ok());
    if (!status.ok()) {
      record->set_error(std::string(status.message()));
      if (plan != nullptr && record->steps_size() == 0) cli::RecordSteps(*plan, {}, record);
    }
    absl::Status w = records.Put(*record);
    if (!w.ok()) std::cerr << "warning: keeping the build record: " << w.message() << "\n";
    if (status.ok()) return 0;
    farm::v1::BuildEvent e;
    e.mutable_outcome()->set_ok(false);
    e.mutable_outcome()->set_error(absl::IsCancelled(status)
                                       ? "canceled"
                                       : absl::StrCat("failed to build: ", status.message()));
    progress_.Event(e);
    return 1;
  }

  // Shows each base-image resolution as "[internal] load metadata for ...".
  class VertexResolver : public scheduler::image::BaseImageResolver {
   public:
    VertexResolver(Build* b, scheduler::image::BaseImageResolver* inner, int* next, int* current)
        : b_(b), inner_(inner), next_(next), current_(current) {}
    absl::StatusOr<scheduler::image::ResolvedImage> Resolve(const std::string& ref,
                                                            const std::string& platform) override {
      int id = (*next_)++;
      *current_ = id;
      int64_t t = absl::ToUnixMicros(absl::Now());
      b_->progress_.Vertex(id, "[internal] load metadata for " + ref,
                           farm::v1::VertexUpdate::STARTED);
      absl::StatusOr<scheduler::image::ResolvedImage> r = inner_->Resolve(ref, platform);
      b_->progress_.Vertex(id, "",
                           r.ok() ? farm::v1::VertexUpdate::DONE : farm::v1::VertexUpdate::FAILED,
                           absl::ToUnixMicros(absl::Now()) - t);
      *current_ = 0;
      return r;
    }

   private:
    Build* b_;
    scheduler::image::BaseImageResolver* inner_;
    int* next_;
    int* current_;
  };

  static std::string Absolute(const std::string& p) {
    if (p.empty() || p[0] == '/') return p;
    char buf[4096];
    if (getcwd(buf, sizeof(buf)) == nullptr) return p;
    return common::CleanPath(common::JoinPath(buf, p));
  }
  static std::string Basename(const std::string& p) { return p.substr(p.rfind('/') + 1); }

  LocalBuildFlags f_;
  CheckedBuildFlags checked_;
  PhaseTimer timer_;
  std::string tar_context_;  // set when the context came as a tar on stdin
  BuildProgress progress_;
  LocalStores* stores_ = nullptr;
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
