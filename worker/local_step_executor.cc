#include "worker/local_step_executor.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iostream>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/platform.h"
#include "worker/copy/copy_op.h"
#include "worker/copy/layer_tree.h"
#include "worker/copy/trees.h"
#include "worker/emulation.h"
#include "worker/layer/layer_io.h"
#include "worker/layerstore/stack_view.h"
#include "worker/run_command.h"
#include "worker/run_mounts.h"
#include "worker/run_request.h"
#include "worker/sandbox/attach.h"
#include "worker/sandbox/sandbox.h"
#include "worker/step_layers.h"
#include "worker/user/user_db.h"

namespace farm::worker {
namespace {

int64_t MicrosSince(absl::Time start) { return absl::ToInt64Microseconds(absl::Now() - start); }

std::string Base(const std::string& path) {
  size_t s = path.rfind('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* de = readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  return out;
}

oci::Compression ToCompression(farm::v1::LayerOptions::Compression c) {
  switch (c) {
    case farm::v1::LayerOptions::ZSTD:
      return oci::Compression::kZstd;
    case farm::v1::LayerOptions::UNCOMPRESSED:
      return oci::Compression::kNone;
    default:
      return oci::Compression::kGzip;
  }
}

void SetLayer(const layer::WrittenLayer& l, farm::v1::Layer* out) {
  out->set_digest(l.blob.OciString());
  out->set_size(l.blob.size_bytes);
  out->set_diff_id(l.diff_id.OciString());
  out->set_media_type(l.media_type);
  out->set_uncompressed_size(l.diff_id.size_bytes);
}

// The cgroups of every RUN: the configured limits, the policy's default pids limit (dropped,
// with a line on stderr, where cgroups cannot provide it), and the device rules (always).
absl::StatusOr<std::vector<farm::v1::SandboxCgroup>> PlanSandboxCgroups(
    const LocalStepExecutor::Options& options) {
  sandbox::CgroupLimits limits = options.limits;
  limits.devices = true;
  bool default_pids = limits.pids == 0 && options.policy.default_pids_limit > 0;
  if (default_pids) limits.pids = options.policy.default_pids_limit;
  absl::StatusOr<std::vector<farm::v1::SandboxCgroup>> plan =
      sandbox::PlanCgroups(limits, sandbox::CgroupEnv());
  if (plan.ok() || !default_pids) return plan;
  std::string warning =
      absl::StrCat("warning: steps run without the default pids limit (",
                   options.policy.default_pids_limit, "): ", plan.status().message());
  if (options.log) {
    options.log(warning);
  } else {
    std::cerr << "farm: " << warning << "\n";
  }
  limits.pids = 0;
  return sandbox::PlanCgroups(limits, sandbox::CgroupEnv());
}

}  // namespace

LocalStepExecutor::LocalStepExecutor(Options options, std::unique_ptr<layerstore::LayerStore> store,
                                     std::vector<farm::v1::SandboxCgroup> cgroups)
    : options_(std::move(options)),
      store_(std::move(store)),
      cgroups_(std::move(cgroups)),
      cache_mounts_(options_.state_dir + "/cache-mounts"),
      behind_(options_.cas) {}

absl::StatusOr<std::unique_ptr<LocalStepExecutor>> LocalStepExecutor::Create(Options options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("worker: no state directory");
  if (options.cas == nullptr) return absl::InvalidArgumentError("worker: no CAS");
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "the worker must run as root (it uses namespaces, overlayfs and chown to run steps)");
  }
  if (options.policy.rootless && options.policy.subids.count == 0) {
    return absl::FailedPreconditionError(
        "rootless-steps needs a subordinate id range: give subid-range START:COUNT or "
        "subid-user NAME");
  }
  RETURN_IF_ERROR(common::MakeDirs(options.state_dir, 0700));
  // The layer store's lock makes this process the state directory's only user: take it before
  // wiping anything.
  layerstore::LayerStore::Options so;
  so.dir = options.state_dir + "/layers";
  so.budget_bytes = options.layer_store_max_bytes;
  so.cas = options.cas;
  so.unpack_limits.max_uncompressed_bytes = options.policy.extract_max_bytes;
  ASSIGN_OR_RETURN(auto store, layerstore::LayerStore::Create(std::move(so)));
  for (const char* sub : {"run", "tmp", "cache-mounts"}) {
    std::string dir = absl::StrCat(options.state_dir, "/", sub);
    RETURN_IF_ERROR(common::MakeDirs(dir, 0700));
    if (std::string(sub) != "cache-mounts") {
      // Leftovers of a crash (their mounts died with their namespaces).
      for (const std::string& n : ListDir(dir)) RETURN_IF_ERROR(common::RemoveAll(dir + "/" + n));
    }
  }
  ASSIGN_OR_RETURN(std::vector<farm::v1::SandboxCgroup> cgroups, PlanSandboxCgroups(options));
  if (!options.fetcher) {
    copy::FetchOptions fo;
    fo.policy = std::make_shared<network::DestinationPolicy>(options.policy.network.deny,
                                                             options.policy.network.allow);
    fo.max_bytes = options.policy.add_max_bytes;
    fo.timeout = options.policy.add_timeout;
    options.fetcher = copy::CurlFetcher(fo);
  }
  auto exec = std::unique_ptr<LocalStepExecutor>(
      new LocalStepExecutor(std::move(options), std::move(store), std::move(cgroups)));
  // What only RUN needs is made while the first steps (usually COPYs) run: the steps'
  // isolated network (an nftables table: 10-20 ms) and the seccomp filter (~15 ms).
  exec->prepare_ = std::thread([e = exec.get()] {
    sandbox::PrepareSandbox();
    absl::StatusOr<std::unique_ptr<network::StepNetwork>> net =
        std::unique_ptr<network::StepNetwork>();
    if (e->options_.policy.isolate_network) {
      network::StepNetworkOptions no = e->options_.policy.network;
      no.resolv_conf = e->options_.resolv_conf;  // the resolvers steps would otherwise get
      net = network::StepNetwork::Create(std::move(no), e->options_.state_dir);
    }
    e->network_ = std::move(net);
    e->network_ready_.Notify();
  });
  return exec;
}

LocalStepExecutor::~LocalStepExecutor() {
  if (prepare_.joinable()) prepare_.join();
}

absl::StatusOr<network::StepNetwork*> LocalStepExecutor::Network() {
  network_ready_.WaitForNotification();
  if (!network_.ok()) return common::Annotate(network_.status(), "the steps' network");
  return network_->get();
}

absl::StatusOr<std::string> LocalStepExecutor::NewRunDir() {
  std::random_device rd;
  std::string dir = absl::StrCat(options_.state_dir, "/run/", counter_++, "-", rd() % 1000000);
  RETURN_IF_ERROR(common::MakeDirs(dir, 0700));
  return dir;
}

// Removes a run directory when the step is done (its upperdir may have moved to the store).
struct LocalStepExecutor::RunDir {
  std::string path;
  ~RunDir() {
    if (!path.empty()) common::RemoveAll(path).IgnoreError();
  }
};

absl::StatusOr<farm::v1::StepResult> LocalStepExecutor::Execute(
    const farm::v1::StepRequest& request, const executor::LogSink& log,
    const absl::Notification* cancel) {
  return Execute(request, log, cancel, CallOptions{});
}

absl::StatusOr<farm::v1::StepResult> LocalStepExecutor::Execute(
    const farm::v1::StepRequest& request, const executor::LogSink& log,
    const absl::Notification* cancel, const CallOptions& call) {
  executor::SecretProvider* secrets =
      call.secrets != nullptr ? call.secrets.get() : options_.secrets.get();
  // No step name in the errors: the caller adds it (StepExecutor's contract).
  if (request.op_case() == farm::v1::StepRequest::OP_NOT_SET) {
    return absl::InvalidArgumentError("step has no operation (run, copy or mkdir)");
  }
  auto parents = LayerDescs(request.parents());
  if (!parents.ok()) return parents.status();
  if (cancel != nullptr && cancel->HasBeenNotified()) return absl::CancelledError("cancelled");
  const absl::Time parents_start = absl::Now();
  auto stack = store_->AcquireStack(*parents);
  if (!stack.ok()) return common::Annotate(stack.status(), "preparing the parent layers");
  const int64_t parents_micros = MicrosSince(parents_start);
  absl::StatusOr<farm::v1::StepResult> result;
  switch (request.op_case()) {
    case farm::v1::StepRequest::kRun:
      result = ExecuteRun(request, **stack, log, cancel, secrets);
      break;
    case farm::v1::StepRequest::kCopy:
      result = ExecuteCopy(request, **stack, cancel);
      break;
    case farm::v1::StepRequest::kMkdir:
      result = ExecuteMkdir(request, **stack);
      break;
    default:
      break;
  }
  if (result.ok()) result->set_parents_micros(parents_micros);
  return result;
}

SandboxHost LocalStepExecutor::Host() const {
  return SandboxHost{cgroups_, options_.resolv_conf, options_.hosts};
}

absl::Status LocalStepExecutor::FinishLayer(const std::string& dir,
                                            const farm::v1::LayerOptions& output,
                                            farm::v1::StepResult* result) {
  absl::Time start = absl::Now();
  layer::WriteOptions w;
  w.compression.compression = ToCompression(output.compression());
  w.compression.level = output.level();
  w.compression.threads = options_.compression_threads;
  if (output.has_source_date_epoch()) w.source_date_epoch = output.source_date_epoch();
  w.normalize_tree = true;
  w.spool_dir = options_.state_dir + "/tmp";
  w.store = !options_.store_layers_behind;
  // Uncompressed and stored behind the build: only hashed now, and archived again from the
  // adopted tree by the writer thread (no spool file written, nothing written at all when the
  // CAS has the layer already).
  const bool from_tree =
      options_.store_layers_behind && w.compression.compression == oci::Compression::kNone;
  w.spool = !from_tree;
  ASSIGN_OR_RETURN(layer::WrittenLayer l, layer::WriteLayerFromDir(dir, w, options_.cas.get()));
  if (l.spool_fd >= 0) {
    behind_.Add(l.blob, l.spool_fd);
    result->set_store_pending(true);
  }
  if (from_tree && !l.empty) {
    int64_t bytes = l.stats.file_bytes + 512 * l.stats.entries;
    RETURN_IF_ERROR(common::Annotate(store_->Adopt(dir, l.diff_id, bytes), "keeping the layer"));
    layerstore::LayerDesc desc{l.blob, l.diff_id};
    layerstore::LayerStore* store = store_.get();
    std::shared_ptr<cache::BlobStore> cas = options_.cas;
    behind_.Add(l.blob, [store, cas, desc, w]() -> absl::Status {
      // Leased while it is read (farm build has no layer budget; a worker could evict it).
      ASSIGN_OR_RETURN(std::unique_ptr<layerstore::Stack> stack, store->AcquireStack({desc}));
      return layer::StoreLayerFromDir(stack->lower_dirs()[0], desc.blob, w, cas.get());
    });
    result->set_store_pending(true);
    SetLayer(l, result->mutable_layer());
    result->set_layer_micros(MicrosSince(start));
    return absl::OkStatus();
  }
  if (!l.empty) {
    SetLayer(l, result->mutable_layer());
    // Keep the tree as this layer's unpacked form: the next step stacks it without unpacking.
    int64_t bytes = l.stats.file_bytes + 512 * l.stats.entries;
    absl::Status adopted = store_->Adopt(dir, l.diff_id, bytes);
    if (!adopted.ok()) common::RemoveAll(dir).IgnoreError();  // it will be unpacked when needed
  }
  result->set_layer_micros(MicrosSince(start));
  result->set_upload_micros(absl::ToInt64Microseconds(l.upload_time));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// RUN

absl::StatusOr<farm::v1::StepResult> LocalStepExecutor::ExecuteRun(
    const farm::v1::StepRequest& request, const layerstore::Stack& stack,
    const executor::LogSink& log, const absl::Notification* cancel,
    executor::SecretProvider* secrets) {
  const farm::v1::RunOp& run = request.run();
  const farm::v1::ExecEnv& env = request.env();
  if (run.args().empty()) return absl::InvalidArgumentError("RUN without a command");
  // Another architecture runs through QEMU registered with binfmt_misc, or not at all.
  RETURN_IF_ERROR(CheckCanRun(env.platform()));
  // 1. The run directory (removed when this returns; the upperdir may have moved into the
  // layer store by then) and the sandbox's request: overlay, command, environment, options.
  ASSIGN_OR_RETURN(std::string dir, NewRunDir());
  RunDir cleanup{dir};
  ASSIGN_OR_RETURN(RunDirs dirs, RunDirs::Create(dir));
  ASSIGN_OR_RETURN(farm::v1::SandboxRequest req,
                   RunSandboxRequest(run, env, stack.base_dir(), stack.lower_names(), dirs, Host(),
                                     absl::StrCat("farm-", getpid(), "-", Base(dir))));
  ASSIGN_OR_RETURN(network::StepNetwork * net, Network());
  RETURN_IF_ERROR(ApplyRunSandbox(options_.policy, net, run.network(), run.security(), true, &req));

  // 2. Its mounts (what they hold stays until the sandbox has exited) and inline files.
  RunMounts mounts({store_.get(), options_.cas, &cache_mounts_, secrets});
  for (int i = 0; i < run.mounts_size(); ++i) {
    RETURN_IF_ERROR(mounts.Add(run.mounts(i), i, req.cwd(), dir, cancel, &req));
  }
  RETURN_IF_ERROR(AddInlineFiles(run, dir, &req));
  if (cancel != nullptr && cancel->HasBeenNotified()) return absl::CancelledError("RUN cancelled");

  // 3. The command, its output streamed to `log`, killed on `cancel`.
  ASSIGN_OR_RETURN(
      RunOutcome outcome,
      RunCommand(req, log, cancel, {run.timeout_seconds(), options_.limits.memory_bytes}));
  if (!outcome.make_layer) return outcome.result;

  // 4. What it wrote, minus the mount points, becomes the layer.
  RemoveMountStubs(req.upper_dir(), outcome.sandbox.stubs());
  RETURN_IF_ERROR(common::Annotate(FinishLayer(req.upper_dir(), request.output(), &outcome.result),
                                   "creating the layer"));
  return outcome.result;
}

// ---------------------------------------------------------------------------------------
// COPY / ADD

absl::StatusOr<farm::v1::StepResult> LocalStepExecutor::ExecuteCopy(
    const farm::v1::StepRequest& request, const layerstore::Stack& stack,
    const absl::Notification* cancel) {
  const farm::v1::CopyOp& op = request.copy();
  ASSIGN_OR_RETURN(std::string dir, NewRunDir());
  RunDir cleanup{dir};
  std::string out = dir + "/layer", scratch = dir + "/scratch";
  RETURN_IF_ERROR(common::MakeDirs(out, 0755));
  RETURN_IF_ERROR(common::MakeDirs(scratch, 0700));

  std::unique_ptr<copy::SourceTree> source;
  std::unique_ptr<layerstore::Stack> source_stack;
  bool context = true;
  if (op.source().has_context()) {
    ASSIGN_OR_RETURN(common::Digest root, common::Digest::ParseOci(op.source().context().digest(),
                                                                   op.source().context().size()));
    source = std::make_unique<copy::CasTree>(options_.cas, root);
  } else if (op.source().has_layers()) {
    ASSIGN_OR_RETURN(std::vector<layerstore::LayerDesc> descs,
                     LayerDescs(op.source().layers().layers()));
    ASSIGN_OR_RETURN(source_stack, store_->AcquireStack(descs));
    source = std::make_unique<copy::StackTree>(layerstore::StackView(source_stack->lower_dirs()));
    context = false;
  }
  layerstore::StackView image(stack.lower_dirs());
  copy::CopyInputs in;
  in.op = &op;
  in.env = &request.env();
  in.output = &request.output();
  in.source = source.get();
  in.source_is_context = context;
  in.image = &image;
  in.out_dir = out;
  in.scratch_dir = scratch;
  in.fetch = options_.fetcher;
  in.cancel = cancel;
  in.max_extract_bytes = options_.policy.extract_max_bytes;
  in.file_pool = store_->files();
  RETURN_IF_ERROR(copy::BuildCopyLayer(in));
  farm::v1::StepResult result;
  RETURN_IF_ERROR(
      common::Annotate(FinishLayer(out, request.output(), &result), "creating the layer"));
  return result;
}

// ---------------------------------------------------------------------------------------
// WORKDIR

absl::StatusOr<farm::v1::StepResult> LocalStepExecutor::ExecuteMkdir(
    const farm::v1::StepRequest& request, const layerstore::Stack& stack) {
  const std::string& path = request.mkdir().path();
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("WORKDIR \"", path, "\" is not absolute"));
  }
  layerstore::StackView image(stack.lower_dirs());
  ASSIGN_OR_RETURN(layerstore::StackView::Resolved r, image.Resolve(path, true));
  farm::v1::StepResult result;
  if (r.exists) {
    if (!S_ISDIR(r.st.st_mode)) {
      std::string real = absl::StrCat("/", r.path);
      return absl::FailedPreconditionError(
          absl::StrCat(path, real == path ? "" : absl::StrCat(" (", real, ")"),
                       " exists and is not a directory"));
    }
    return result;  // nothing to create: no layer
  }
  auto read = [&](const char* file) -> std::optional<std::string> {
    auto f = image.Resolve(file, true);
    if (!f.ok() || !f->exists) return std::nullopt;
    auto text = image.ReadFile(f->path, 16 << 20);
    return text.ok() ? std::optional<std::string>(*text) : std::nullopt;
  };
  ASSIGN_OR_RETURN(
      user::ResolvedUser u,
      user::ResolveUser(request.env().user(), read("/etc/passwd"), read("/etc/group")));
  ASSIGN_OR_RETURN(std::string dir, NewRunDir());
  RunDir cleanup{dir};
  std::string out = dir + "/layer";
  RETURN_IF_ERROR(common::MakeDirs(out, 0755));
  copy::LayerTree tree(out, &image);
  int64_t mtime =
      request.output().has_source_date_epoch() ? request.output().source_date_epoch() : 0;
  RETURN_IF_ERROR(tree.EnsureDir(r.path, copy::Attrs{0755, u.uid, u.gid, mtime}));
  RETURN_IF_ERROR(tree.Finish());
  RETURN_IF_ERROR(
      common::Annotate(FinishLayer(out, request.output(), &result), "creating the layer"));
  return result;
}

// ---------------------------------------------------------------------------------------
// farm run

absl::StatusOr<int> LocalStepExecutor::RunAttached(const RunOptions& o) {
  google::protobuf::RepeatedPtrField<farm::v1::Layer> layers(o.layers.begin(), o.layers.end());
  ASSIGN_OR_RETURN(std::vector<layerstore::LayerDesc> descs, LayerDescs(layers));
  ASSIGN_OR_RETURN(std::unique_ptr<layerstore::Stack> stack, store_->AcquireStack(descs));
  ASSIGN_OR_RETURN(std::string dir, NewRunDir());
  RunDir cleanup{dir};
  ASSIGN_OR_RETURN(RunDirs dirs, RunDirs::Create(dir));
  farm::v1::SandboxRequest req =
      BaseSandboxRequest(stack->base_dir(), stack->lower_names(), dirs, o.env, Host(),
                         absl::StrCat("farm-", getpid(), "-run-", counter_++));
  for (const std::string& a : o.args) req.add_args(a);
  ASSIGN_OR_RETURN(network::StepNetwork * net, Network());
  RETURN_IF_ERROR(ApplyRunSandbox(options_.policy, net, o.network,
                                  o.insecure ? "insecure" : "sandbox", false, &req));
  req.set_interactive(true);
  req.set_tty(o.tty);
  // The command never gets the caller's descriptors: a pseudo-terminal of its own or pipes.
  ASSIGN_OR_RETURN(
      std::unique_ptr<sandbox::Attachment> attached,
      sandbox::Attachment::Create({o.stdin_fd, o.stdout_fd, o.stderr_fd, o.interactive, o.tty}));
  absl::StatusOr<farm::v1::SandboxResult> ran = sandbox::RunSandbox(req, attached->io(), o.cancel);
  attached->Finish();
  ASSIGN_OR_RETURN(farm::v1::SandboxResult sr, std::move(ran));
  if (sr.error_code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(sr.error_code()), sr.error_message());
  }
  if (sr.cancelled()) return absl::CancelledError("cancelled");
  return sr.exit_code();
}

}  // namespace farm::worker
