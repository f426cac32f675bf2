// farm submit: a build on the farm. The context is hashed here (with the same stat cache as
// `farm build`) and only the blobs farm-cache lacks are uploaded; farm-scheduler plans and
// runs the build on its workers, and its progress streams back, shown exactly as `farm build`
// shows it. The stream survives scheduler restarts and network breaks (it reattaches where it
// stopped); Ctrl-C cancels the build on the farm (twice: stop following, leave it running).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <iostream>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cache/client/grpc_blob_store.h"
#include "cli/build_flags.h"
#include "cli/build_outputs.h"
#include "cli/build_progress.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/image_fetch.h"
#include "cli/progress.h"
#include "cli/remote.h"
#include "cli/stores.h"
#include "common/digest.h"
#include "common/farm_home.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "scheduler/context/context.h"
#include "scheduler/image/store.h"
#include "scheduler/pipeline/pipeline.h"
#include "worker/layerstore/layer_store.h"
#include "worker/sandbox_settings.h"

namespace farm::cli {

namespace {

int g_submit_signal_pipe[2] = {-1, -1};
void OnSubmitSignal(int) {
  char c = 1;
  ssize_t r = write(g_submit_signal_pipe[1], &c, 1);
  (void)r;
}

struct SubmitFlags : BuildFlags {
  std::string scheduler;
  std::string cache;
  std::string tenant;
  auth::ClientAuthOptions security;  // --tls-ca, --token-file, ... (SecurityFlags)
  int64_t priority = 0;
  bool detach = false;
  int64_t reconnect_seconds = 300;
  int64_t upload_parallelism = 8;
  bool load = false;                 // --load: into $FARM_HOME's image store
  std::vector<std::string> outputs;  // -o type=oci|docker|local|image,dest=...
};

std::string ClientName() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  const char* user = getenv("USER");
  return absl::StrCat(user ? user : std::to_string(getuid()), "@", host);
}

class Submit {
 public:
  explicit Submit(SubmitFlags f) : f_(std::move(f)) {}

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
    absl::StatusOr<CheckedBuildFlags> checked = CheckBuildFlags(f_);
    if (!checked.ok()) return progress_.Fatal(checked.status());
    // Checked here so a typo fails before the context is uploaded.
    absl::StatusOr<std::vector<std::string>> platform_list =
        scheduler::pipeline::ParsePlatformList(f_.in.platform);
    if (!platform_list.ok()) {
      return progress_.Fatal(common::Annotate(platform_list.status(), "--platform"));
    }
    const std::string platforms = absl::StrJoin(*platform_list, ",");
    absl::StatusOr<std::map<std::string, BuildContextArg>> named = f_.in.BuildContexts();
    if (!named.ok()) return progress_.Fatal(named.status());
    if (f_.priority < -10 || f_.priority > 10) {
      return progress_.Fatal(
          absl::InvalidArgumentError(absl::StrCat("--priority ", f_.priority, ": want -10 to 10")));
    }
    std::vector<OutputSpec> outputs;
    for (const std::string& o : f_.outputs) {
      absl::StatusOr<OutputSpec> spec = ParseOutputSpec(o);
      if (!spec.ok()) return progress_.Fatal(spec.status());
      outputs.push_back(*spec);
    }
    if (f_.load) outputs.push_back(OutputSpec{"image", "", true, ""});
    if (!outputs.empty() && f_.detach) {
      return progress_.Fatal(absl::InvalidArgumentError(
          "--detach cannot be combined with --load or --output (the image comes back at the end)"));
    }
    absl::StatusOr<std::string> address = SchedulerAddress(f_.scheduler);
    if (!address.ok()) return progress_.Fatal(address.status());

    // The context: a directory, or a tar on stdin ("-").
    absl::StatusOr<BuildSource> source = OpenBuildSource(context_arg, &f_.in);
    if (!source.ok()) return progress_.Fatal(source.status());
    const std::string& context_dir = source->context_dir;
    const std::unique_ptr<common::TempDir>& tar_dir = source->tar_dir;
    bool stdin_dockerfile = source->stdin_dockerfile.has_value();
    const std::string& dockerfile_path = source->dockerfile_path;
    const std::string& dockerfile_text = source->dockerfile_text;
    const std::string& dockerfile_name = source->dockerfile_name;
    progress_.Start(ProgressPrinter::Create(*mode, 2, dockerfile_text, dockerfile_name));

    // The scheduler, and the cache it names (or --cache).
    absl::StatusOr<SchedulerConnection> conn = ConnectScheduler(*address, f_.security);
    if (!conn.ok()) return progress_.Fatal(conn.status());
    conn_ = &*conn;
    std::string cache_address = f_.cache;
    if (cache_address.empty()) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      farm::v1::SchedulerInfo info;
      grpc::Status st = conn->stub->GetSchedulerInfo(&ctx, {}, &info);
      if (!st.ok()) {
        return progress_.Fatal(common::Annotate(
            common::FromGrpcStatus(st),
            absl::StrCat("asking farm-scheduler at ", *address, " for its cache")));
      }
      cache_address = info.cache_address();
      if (cache_address.empty()) {
        return progress_.Fatal(absl::FailedPreconditionError(
            absl::StrCat("farm-scheduler at ", *address,
                         " does not advertise a cache address; pass --cache HOST:PORT")));
      }
    }

    // #1: hash the context (stat cache shared with farm build), upload what the cache lacks.
    const int v_ctx = 1;
    scheduler::engine::EventWriter::Span ctx_vertex =
        progress_.events().Start(v_ctx, "[internal] send build context");
    auto fail_ctx = [&](const absl::Status& s) {
      ctx_vertex.Fail(s.message());
      return progress_.Fatal(s);
    };
    cache::client::GrpcBlobStore::Options co;
    co.security = conn->security;  // the token's scopes decide where it may upload
    co.instance_name = f_.cache_scope.empty() ? "main" : f_.cache_scope;
    absl::StatusOr<std::unique_ptr<cache::client::GrpcBlobStore>> cas =
        cache::client::GrpcBlobStore::Create(cache_address, co);
    if (!cas.ok()) return fail_ctx(cas.status());
    auto log = [&ctx_vertex](const std::string& line) { ctx_vertex.Log(line); };
    absl::StatusOr<farm::v1::ContextRoot> root = SendContext(
        **cas, context_dir, stdin_dockerfile ? "" : dockerfile_path, /*stat_cache=*/!tar_dir,
        "context", [&](const std::string& line) { log(line + " to " + cache_address); });
    if (!root.ok()) {
      return fail_ctx(common::Annotate(root.status(),
                                       absl::StrCat("uploading the context to ", cache_address)));
    }
    // Named contexts: directories hashed and uploaded the same way; images by reference.
    google::protobuf::Map<std::string, farm::v1::NamedContext> named_contexts;
    for (const auto& [name, arg] : *named) {
      if (!arg.image.empty()) {
        named_contexts[name].set_image(arg.image);
        continue;
      }
      absl::StatusOr<farm::v1::ContextRoot> nroot =
          SendContext(**cas, arg.dir, "", /*stat_cache=*/true, "context " + name, log);
      if (!nroot.ok()) {
        return fail_ctx(common::Annotate(nroot.status(), absl::StrCat("--build-context ", name)));
      }
      *named_contexts[name].mutable_context() = *nroot;
    }

    // Submit and follow.
    farm::v1::SubmitBuildRequest req;
    req.set_dockerfile(dockerfile_text);
    req.set_dockerfile_name(dockerfile_name);
    *req.mutable_context() = *root;
    *req.mutable_named_contexts() = named_contexts;
    for (const auto& [k, v] : checked->build_args) (*req.mutable_build_args())[k] = v;
    req.set_target(f_.in.target);
    for (const oci::Reference& t : checked->tags) req.add_tags(t.String());
    for (const auto& [k, v] : checked->labels) (*req.mutable_labels())[k] = v;
    req.set_platform(platforms);
    req.set_no_cache(f_.no_cache);
    req.set_pull(f_.pull);
    req.set_push(f_.push);
    req.set_network(f_.network);
    for (const std::string& e : checked->allow) req.add_allow_entitlements(e);
    req.set_tenant(f_.tenant);
    req.set_priority(static_cast<int32_t>(f_.priority));
    req.set_cache_write_scope(f_.cache_scope);
    req.add_cache_read_scopes(f_.cache_scope);
    for (const std::string& s : f_.cache_from_scopes) req.add_cache_read_scopes(s);
    *req.mutable_layer_options() = checked->layer_options;
    req.set_manifest_format(f_.format);
    for (const std::string& r : f_.insecure) req.add_insecure_registries(r);
    req.set_client_request_id(common::RandomHex(16));
    for (const auto& [k, v] : checked->secrets) (*req.mutable_secrets())[k] = v;
    req.set_client(ClientName());
    req.set_first_vertex_id(v_ctx + 1);

    std::atomic<bool> stop{false};
    std::thread signals = WatchSignals(&stop);
    std::string build_id;
    int64_t last_seq = 0;
    FollowOptions fo;
    fo.reconnect_for = absl::Seconds(f_.reconnect_seconds);
    fo.stop = &stop;
    fo.open_first = [&](grpc::ClientContext* ctx) { return conn->stub->SubmitBuild(ctx, req); };
    fo.on_reconnect = [this](const std::string& w) { progress_.events().Warn(w); };
    auto on_event = [&](const farm::v1::BuildStreamEvent& e) {
      if (e.seq() == 0) {
        {
          absl::MutexLock l(&mu_);
          build_id_ = e.build_id();
        }
        ctx_vertex.Log(absl::StrCat("submitted to ", *address, " as build ", e.build_id()));
        ctx_vertex.Done();
        if (f_.detach) stop = true;
        if (cancel_requested_) CancelOnFarm();
        return;
      }
      if (e.has_event()) {
        if (e.event().has_vertex()) max_vertex_ = std::max(max_vertex_, e.event().vertex().id());
        progress_.Event(e.event());
      }
    };
    absl::StatusOr<farm::v1::BuildOutcome> outcome =
        FollowBuild(*conn, &build_id, &last_seq, on_event, fo);
    StopWatchingSignals(signals);
    if (f_.detach && !build_id.empty()) {
      progress_.Finish();
      std::cout << build_id << std::endl;
      return 0;
    }
    if (!outcome.ok()) {
      if (absl::IsCancelled(outcome.status()) && !build_id.empty()) {
        progress_.Finish();
        std::cerr << "stopped following build " << build_id
                  << (cancel_requested_ ? " (cancel requested)" : " (it keeps running)")
                  << "; follow it again with: farm logs -f " << build_id << "\n";
        return 130;
      }
      return progress_.Fatal(outcome.status());
    }
    if (!outcome->ok()) return 1;
    if (!outputs.empty()) {
      absl::Status brought = BringBack(**cas, *outcome, checked->tags, outputs);
      if (!brought.ok()) return progress_.Fatal(brought);
    }
    if (!f_.iidfile.empty()) {
      absl::Status w = common::WriteFileAtomic(f_.iidfile, outcome->image_id());
      if (!w.ok()) return progress_.Fatal(w);
    }
    if (!f_.metadata_file.empty()) {
      std::vector<std::string> names(outcome->tags().begin(), outcome->tags().end());
      absl::Status w = common::WriteFileAtomic(
          f_.metadata_file, BuildMetadataJson(outcome->image_id(), outcome->manifest_digest(),
                                              outcome->manifest_media_type(),
                                              outcome->manifest_size(), names, build_id));
      if (!w.ok()) return progress_.Fatal(w);
    }
    if (f_.quiet) std::cout << outcome->image_id() << std::endl;
    return 0;
  }

  // --load / -o: the image's blobs that $FARM_HOME lacks come from farm-cache (in parallel,
  // verified), then the image is stored and tagged locally and/or exported, as farm build does.
  absl::Status BringBack(cache::BlobStore& remote, const farm::v1::BuildOutcome& outcome,
                         const std::vector<oci::Reference>& tags,
                         const std::vector<OutputSpec>& outputs) {
    const int v_load = max_vertex_ + 1;
    scheduler::engine::EventWriter::Span span =
        progress_.events().Start(v_load, "[internal] load image from the farm");
    auto fail = [&](absl::Status s) {
      span.Fail(s.message());
      return s;
    };
    absl::StatusOr<LocalStores> st = OpenLocalStores();
    if (!st.ok()) return fail(st.status());
    oci::Descriptor top;
    top.digest = outcome.manifest_digest();
    top.media_type = outcome.manifest_media_type();
    top.size = outcome.manifest_size();
    FetchOptions fo;
    fo.parallel = static_cast<int>(f_.upload_parallelism);
    absl::Time last_shown = absl::InfinitePast();
    fo.progress = [&](const FetchStats& s) {
      if (absl::Now() - last_shown < absl::Milliseconds(500)) return;
      last_shown = absl::Now();
      span.Log(absl::StrCat(s.Summary(), " so far"));
    };
    absl::StatusOr<FetchStats> fetched = FetchImage(remote, *st->blobs, top, fo);
    if (!fetched.ok()) {
      return fail(common::Annotate(
          fetched.status(), absl::StrCat("fetching image ", top.digest, " from farm-cache")));
    }
    span.Log(fetched->Summary());
    absl::StatusOr<scheduler::image::ImageRecord> record = DescribeWithSizes(*st->blobs, top);
    if (!record.ok()) return fail(record.status());
    std::unique_ptr<worker::layerstore::LayerStore> layer_store;
    for (const OutputSpec& o : outputs) {
      absl::Status done;
      if (o.type == "image") {
        done = st->images->Put(*record);
        for (const oci::Reference& t : tags) {
          if (!done.ok()) break;
          done = st->images->SetReference(t, record->digest).status();
        }
        if (done.ok()) {
          span.Log(absl::StrCat("loaded ", record->Id(),
                                tags.empty() ? "" : absl::StrCat(" as ", tags[0].String())));
        }
      } else {
        if (o.type == "local" && layer_store == nullptr) {
          absl::StatusOr<std::unique_ptr<worker::layerstore::LayerStore>> ls = OpenLayerStore(*st);
          if (!ls.ok()) return fail(ls.status());
          layer_store = *std::move(ls);
        }
        const std::vector<farm::v1::Layer>& layers = record->manifests.front().layers;
        done = ExportImage(o, *st->blobs, *record, tags, layers, layer_store.get());
        if (done.ok()) span.Log(absl::StrCat("exporting ", o.type, " to ", o.dest, " done"));
      }
      if (!done.ok()) return fail(done);
    }
    span.Done();
    return absl::OkStatus();
  }

  // The image's record with its layers' uncompressed sizes (what `farm run` and `farm images`
  // need): the local store knows each layer's diff_id (worked out as the blob was written).
  static absl::StatusOr<scheduler::image::ImageRecord> DescribeWithSizes(
      cache::BlobStore& cas, const oci::Descriptor& top) {
    ASSIGN_OR_RETURN(scheduler::image::ImageRecord bare, scheduler::image::DescribeImage(cas, top));
    std::vector<farm::v1::Layer> known;
    std::vector<common::Digest> digests;
    for (const scheduler::image::StoredManifest& m : bare.manifests) {
      for (const farm::v1::Layer& l : m.layers) {
        ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(l.digest(), l.size()));
        digests.push_back(d);
        known.push_back(l);
      }
    }
    ASSIGN_OR_RETURN(std::vector<absl::StatusOr<cache::LayerInfo>> infos,
                     cas.GetLayerInfo(digests));
    for (size_t i = 0; i < known.size() && i < infos.size(); ++i) {
      if (!infos[i].ok()) {
        return common::Annotate(infos[i].status(), absl::StrCat("layer ", known[i].digest()));
      }
      if (infos[i]->diff_id.OciString() != known[i].diff_id()) {
        return absl::DataLossError(absl::StrCat("layer ", known[i].digest(), " uncompresses to ",
                                                infos[i]->diff_id.OciString(),
                                                " but the image config says ", known[i].diff_id()));
      }
      known[i].set_uncompressed_size(infos[i]->diff_id.size_bytes);
    }
    return scheduler::image::DescribeImage(cas, top, known);
  }

  // The layer store `farm build` and `farm run` use ($FARM_HOME/worker/layers).
  static absl::StatusOr<std::unique_ptr<worker::layerstore::LayerStore>> OpenLayerStore(
      const LocalStores& st) {
    absl::StatusOr<worker::SandboxSettings> settings =
        worker::ReadSandboxConfig(common::JoinPath(st.home, "sandbox.conf"));
    if (!settings.ok()) return settings.status();
    worker::layerstore::LayerStore::Options so;
    so.dir = common::JoinPath(st.home, "worker/layers");
    so.cas = st.blobs;
    so.unpack_limits.max_uncompressed_bytes = settings->policy.extract_max_bytes;
    return worker::layerstore::LayerStore::Create(std::move(so));
  }

  // Hashes the directory `dir` (its ignore file chosen by `dockerfile_path`, as docker does;
  // with the stat cache unless `stat_cache` is false) and uploads the blobs farm-cache lacks;
  // logs "LABEL: N files, ...; uploaded ..." and returns its root.
  absl::StatusOr<farm::v1::ContextRoot> SendContext(
      cache::BlobStore& cas, const std::string& dir, const std::string& dockerfile_path,
      bool stat_cache, const std::string& label,
      const std::function<void(const std::string&)>& log) {
    ASSIGN_OR_RETURN(std::vector<std::string> ignore,
                     scheduler::context::LoadIgnorePatterns(dir, dockerfile_path));
    scheduler::context::SnapshotOptions so;
    so.normalize_permissions = f_.in.normalize_permissions;
    if (stat_cache) so.stat_cache = StatCachePath(dir);
    ASSIGN_OR_RETURN(std::unique_ptr<scheduler::context::Snapshot> snap,
                     scheduler::context::Snapshot::FromDirectory(dir, ignore, so));
    ASSIGN_OR_RETURN(scheduler::context::Snapshot::UploadStats up,
                     snap->Upload(cas, static_cast<int>(f_.upload_parallelism)));
    log(absl::StrCat(label, ": ", snap->file_count(), " files, ",
                     common::HumanSize(snap->total_bytes()), "; uploaded ", up.blobs_written,
                     " of ", up.blobs_checked, " blobs (", common::HumanSize(up.bytes_written),
                     ")"));
    return snap->root();
  }

  static std::string StatCachePath(const std::string& context_dir) {
    absl::StatusOr<std::string> home = common::FarmHome();
    return home.ok() ? ContextStatCachePath(*home, context_dir) : "";
  }

  // Ctrl-C (or SIGTERM) once: cancel the build on the farm and show how it ends; twice: stop
  // following (the cancel stands).
  std::thread WatchSignals(std::atomic<bool>* stop) {
    if (pipe2(g_submit_signal_pipe, O_CLOEXEC) != 0) return std::thread();
    signal(SIGINT, OnSubmitSignal);
    signal(SIGTERM, OnSubmitSignal);
    return std::thread([this, stop] {
      char c;
      while (read(g_submit_signal_pipe[0], &c, 1) == 1) {
        if (c == 0) break;
        if (cancel_requested_) {
          *stop = true;
          continue;
        }
        cancel_requested_ = true;
        CancelOnFarm();
      }
    });
  }

  void StopWatchingSignals(std::thread& t) {
    if (!t.joinable()) return;
    char stop = 0;
    ssize_t w = write(g_submit_signal_pipe[1], &stop, 1);
    (void)w;
    t.join();
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
  }

  void CancelOnFarm() {
    std::string id;
    {
      absl::MutexLock l(&mu_);
      id = build_id_;
    }
    if (id.empty()) return;  // done when the build id arrives
    progress_.events().Warn(
        absl::StrCat("canceling build ", id, " (Ctrl-C again to stop following it)"));
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    farm::v1::CancelBuildRequest r;
    r.set_build_id(id);
    farm::v1::BuildInfo info;
    grpc::Status st = conn_->stub->CancelBuild(&ctx, r, &info);
    if (!st.ok()) {
      progress_.events().Warn(absl::StrCat("canceling build ", id, ": ", st.error_message()));
    }
  }

  SubmitFlags f_;
  BuildProgress progress_;
  int max_vertex_ = 1;  // the highest vertex id the build's events used
  SchedulerConnection* conn_ = nullptr;
  std::atomic<bool> cancel_requested_{false};
  absl::Mutex mu_;
  std::string build_id_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int RunSubmit(const Args& args) {
  common::FlagSet fs(
      "farm submit [OPTIONS] PATH | -",
      "Build an image on a farm: farm-scheduler runs the build's steps on its workers, sharing\n"
      "farm-cache. The context is hashed here and only what the cache lacks is uploaded.\n"
      "Takes farm build's flags; the image is kept (and tagged) on the scheduler; --load\n"
      "brings it back here, --push publishes it. Ctrl-C cancels the build on the farm.");
  SubmitFlags f;
  f.Register(&fs);
  fs.String("scheduler", 0, &f.scheduler, "farm-scheduler address (default: $FARM_SCHEDULER)",
            "HOST:PORT");
  fs.String("cache", 0, &f.cache,
            "farm-cache address to upload the context to (default: the one the scheduler "
            "advertises)",
            "HOST:PORT");
  fs.String("tenant", 0, &f.tenant,
            "Fair-share group (a team, a repository): each tenant gets its share of the farm "
            "(default: $FARM_TENANT)");
  fs.Int("priority", 0, &f.priority, "Priority within the tenant's share, -10 to 10");
  fs.Bool("detach", 'd', &f.detach,
          "Print the build id once the farm has accepted it and exit (follow it with farm logs)");
  fs.Int("reconnect-timeout", 0, &f.reconnect_seconds,
         "Seconds to keep reattaching to a build whose stream broke (scheduler restart)");
  fs.Int("upload-parallelism", 0, &f.upload_parallelism,
         "Context uploads (and --load/--output fetches) running at once");
  fs.Bool("load", 0, &f.load,
          "Bring the image back into the local image store ($FARM_HOME), tagged: only the blobs "
          "it lacks are fetched from farm-cache (then farm run IMAGE works)");
  fs.Repeated("output", 'o', &f.outputs,
              "Output destination (type=oci|docker|local,dest=PATH; type=image: the local "
              "store, as --load)",
              "stringArray");
  SecurityFlags(fs, &f.security);
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "submit", &positional, &exit_code)) return exit_code;
  if (positional.size() != 1) {
    std::cerr << "\"farm submit\" requires exactly 1 argument.\nSee 'farm submit --help'.\n\n"
              << "Usage:  farm submit [OPTIONS] PATH | -\n";
    return 2;
  }
  if (f.tenant.empty() && getenv("FARM_TENANT") != nullptr) f.tenant = getenv("FARM_TENANT");
  if (f.upload_parallelism < 1 || f.upload_parallelism > 256) {
    std::cerr << "farm submit: --upload-parallelism must be 1 to 256\n";
    return 2;
  }
  if (f.reconnect_seconds < 0) {
    std::cerr << "farm submit: --reconnect-timeout must not be negative\n";
    return 2;
  }
  return Submit(std::move(f)).Run(positional[0]);
}

}  // namespace farm::cli
