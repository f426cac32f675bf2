#include "worker/local_step_executor.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <iostream>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/platform.h"
#include "worker/copy/copy_op.h"
#include "worker/copy/layer_tree.h"
#include "worker/copy/materialize.h"
#include "worker/copy/select.h"
#include "worker/copy/trees.h"
#include "worker/layer/layer_io.h"
#include "worker/layerstore/stack_view.h"
#include "worker/sandbox/sandbox.h"
#include "worker/ssh_proxy.h"
#include "worker/user/user_db.h"

namespace farm::worker {
namespace {

constexpr size_t kTailLines = 20;

int64_t MicrosSince(absl::Time start) { return absl::ToInt64Microseconds(absl::Now() - start); }

std::string Base(const std::string& path) {
  size_t s = path.rfind('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

// A source path inside a tree: relative and clean ("" = the root); leaving the root is an error.
absl::StatusOr<std::string> CleanSource(const std::string& path) {
  std::string p = common::CleanPath(absl::StrCat("./", path));
  while (absl::StartsWith(p, "/")) p.erase(0, 1);
  if (p == ".") p.clear();
  if (p == ".." || absl::StartsWith(p, "../")) {
    return absl::InvalidArgumentError(
        absl::StrCat("source \"", path, "\" leaves the build context"));
  }
  return p;
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

// The last lines of a step's output, for its error report.
class Tail {
 public:
  void Add(absl::string_view line) {
    absl::MutexLock lock(&mu_);
    lines_.emplace_back(line);
    if (lines_.size() > kTailLines) lines_.pop_front();
  }
  void CopyTo(farm::v1::StepResult* r) {
    absl::MutexLock lock(&mu_);
    for (const std::string& l : lines_) r->add_output_tail(l);
  }

 private:
  absl::Mutex mu_;
  std::deque<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// Removes from the upperdir what the sandbox created only to mount on, and ancestors that
// overlayfs copied up only because of it, so none of it reaches the layer.
void RemoveStubs(const std::string& upper,
                 const google::protobuf::RepeatedPtrField<farm::v1::SandboxStub>& stubs) {
  std::vector<const farm::v1::SandboxStub*> created, ancestors;
  for (const auto& s : stubs) (s.created() ? created : ancestors).push_back(&s);
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    std::string p = upper + "/" + (*it)->path();
    struct stat st;
    if (lstat(p.c_str(), &st) != 0) continue;
    if ((*it)->is_dir() && S_ISDIR(st.st_mode)) {
      rmdir(p.c_str());  // fails, and keeps it, if the command put something in it
    } else if (!(*it)->is_dir() && S_ISREG(st.st_mode) && st.st_size == 0) {
      unlink(p.c_str());
    }
  }
  std::sort(ancestors.begin(), ancestors.end(),
            [](const auto* a, const auto* b) { return a->path().size() > b->path().size(); });
  for (const farm::v1::SandboxStub* s : ancestors) {
    std::string p = upper + "/" + s->path();
    struct stat st;
    if (lstat(p.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    char opaque[4];
    if (lgetxattr(p.c_str(), "trusted.overlay.opaque", opaque, sizeof(opaque)) >= 0) continue;
    if ((st.st_mode & 07777) != s->mode() || st.st_uid != s->uid() || st.st_gid != s->gid()) {
      continue;  // the command changed it: it belongs to the layer
    }
    if (rmdir(p.c_str()) != 0) {
      // Not empty: the command wrote in it. Undo only our effect on its mtime if nothing else
      // happened since (the entries the command added changed it anyway otherwise).
      continue;
    }
  }
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
  std::cerr << "farm: warning: steps run without the default pids limit ("
            << options.policy.default_pids_limit << "): " << plan.status().message() << "\n";
  limits.pids = 0;
  return sandbox::PlanCgroups(limits, sandbox::CgroupEnv());
}

}  // namespace

LocalStepExecutor::LocalStepExecutor(Options options, std::unique_ptr<layerstore::LayerStore> store,
                                     std::vector<farm::v1::SandboxCgroup> cgroups)
    : options_(std::move(options)),
      store_(std::move(store)),
      cgroups_(std::move(cgroups)),
      cache_mounts_(options_.state_dir + "/cache-mounts") {}

absl::StatusOr<std::unique_ptr<LocalStepExecutor>> LocalStepExecutor::Create(Options options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("worker: no state directory");
  if (options.cas == nullptr) return absl::InvalidArgumentError("worker: no CAS");
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "the worker must run as root (it uses namespaces, overlayfs and chown to run steps)");
  }
  RETURN_IF_ERROR(common::MakeDirs(options.state_dir, 0700));
  // The layer store's lock makes this process the state directory's only user: take it before
  // wiping anything.
  ASSIGN_OR_RETURN(auto store, layerstore::LayerStore::Create({options.state_dir + "/layers",
                                                               options.layer_store_max_bytes,
                                                               options.cas, 0, 0}));
  for (const char* sub : {"run", "tmp", "cache-mounts"}) {
    std::string dir = absl::StrCat(options.state_dir, "/", sub);
    RETURN_IF_ERROR(common::MakeDirs(dir, 0700));
    if (std::string(sub) != "cache-mounts") {
      // Leftovers of a crash (their mounts died with their namespaces).
      for (const std::string& n : ListDir(dir)) RETURN_IF_ERROR(common::RemoveAll(dir + "/" + n));
    }
  }
  ASSIGN_OR_RETURN(std::vector<farm::v1::SandboxCgroup> cgroups, PlanSandboxCgroups(options));
  if (!options.fetcher) options.fetcher = copy::CurlFetcher();
  return std::unique_ptr<LocalStepExecutor>(
      new LocalStepExecutor(std::move(options), std::move(store), std::move(cgroups)));
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

absl::StatusOr<std::vector<layerstore::LayerDesc>> LocalStepExecutor::Descs(
    const google::protobuf::RepeatedPtrField<farm::v1::Layer>& layers) {
  std::vector<layerstore::LayerDesc> out;
  for (int i = 0; i < layers.size(); ++i) {
    const farm::v1::Layer& l = layers[i];
    auto d =
        layerstore::LayerDesc::FromOci(l.digest(), l.size(), l.diff_id(), l.uncompressed_size());
    if (!d.ok()) return common::Annotate(d.status(), absl::StrCat("layer ", i + 1));
    out.push_back(*d);
  }
  return out;
}

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
  std::string what = request.description().empty() ? request.key() : request.description();
  auto annotate = [&](absl::Status s) { return common::Annotate(s, what); };
  if (request.op_case() == farm::v1::StepRequest::OP_NOT_SET) {
    return annotate(absl::InvalidArgumentError("step has no operation (run, copy or mkdir)"));
  }
  auto parents = Descs(request.parents());
  if (!parents.ok()) return annotate(parents.status());
  if (cancel != nullptr && cancel->HasBeenNotified()) return absl::CancelledError(what);
  auto stack = store_->AcquireStack(*parents);
  if (!stack.ok()) return annotate(common::Annotate(stack.status(), "preparing the parent layers"));
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
  if (!result.ok()) return annotate(result.status());
  return result;
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
  ASSIGN_OR_RETURN(layer::WrittenLayer l, layer::WriteLayerFromDir(dir, w, options_.cas.get()));
  if (!l.empty) {
    farm::v1::Layer* out = result->mutable_layer();
    out->set_digest(l.blob.OciString());
    out->set_size(l.blob.size_bytes);
    out->set_diff_id(l.diff_id.OciString());
    out->set_media_type(l.media_type);
    out->set_uncompressed_size(l.diff_id.size_bytes);
    // Keep the tree as this layer's unpacked form: the next step stacks it without unpacking.
    int64_t bytes = l.stats.file_bytes + 512 * l.stats.entries;
    absl::Status adopted = store_->Adopt(dir, l.diff_id, bytes);
    if (!adopted.ok()) common::RemoveAll(dir).IgnoreError();  // it will be unpacked when needed
  }
  result->set_layer_micros(MicrosSince(start));
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
  if (!env.platform().empty() && env.platform() != oci::Platform::Host().String()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run a ", env.platform(), " step on this ",
                     oci::Platform::Host().String(), " worker (no emulation)"));
  }
  ASSIGN_OR_RETURN(std::string dir, NewRunDir());
  RunDir cleanup{dir};

  farm::v1::SandboxRequest req;
  for (const char* sub : {"upper", "work", "rootfs"}) {
    RETURN_IF_ERROR(common::MakeDirs(absl::StrCat(dir, "/", sub), 0755));
  }
  req.set_layer_dir(stack.base_dir());
  for (const std::string& l : stack.lower_names()) req.add_lower_dirs(l);
  req.set_upper_dir(dir + "/upper");
  req.set_work_dir(dir + "/work");
  req.set_rootfs_dir(dir + "/rootfs");
  for (const std::string& a : run.args()) req.add_args(a);
  for (const std::string& e : env.env()) req.add_env(e);
  req.set_user(env.user());
  req.set_cwd(env.workdir().empty() ? "/" : env.workdir());
  req.set_hostname(env.hostname().empty() ? "farm" : env.hostname());
  RETURN_IF_ERROR(ApplyRunSandbox(options_.policy, run.network(), run.security(), true, &req));
  if (run.timeout_seconds() > 0) req.set_timeout_ms(run.timeout_seconds() * 1000);
  for (const auto& cg : cgroups_) *req.add_cgroups() = cg;
  req.set_cgroup_name(absl::StrCat("farm-", getpid(), "-", Base(dir)));
  if (!options_.resolv_conf.empty() && common::PathExists(options_.resolv_conf)) {
    req.set_resolv_conf(options_.resolv_conf);
  }
  if (!options_.hosts.empty() && common::PathExists(options_.hosts)) req.set_hosts(options_.hosts);

  // What the mounts need, alive until the sandbox exits.
  std::vector<std::unique_ptr<layerstore::Stack>> stacks;
  std::vector<std::unique_ptr<CacheMounts::Lease>> caches;
  std::vector<std::unique_ptr<SshAgentProxy>> proxies;
  int ssh_count = 0;
  std::string workdir = req.cwd();
  for (int i = 0; i < run.mounts_size(); ++i) {
    const farm::v1::Mount& m = run.mounts(i);
    std::string target = m.target();
    if (!target.empty() && target[0] != '/') target = absl::StrCat(workdir, "/", target);
    std::string mdir = absl::StrCat(dir, "/mnt", i);
    auto where = [&](absl::Status s) {
      return common::Annotate(s, absl::StrCat("--mount #", i + 1, " (target ", m.target(), ")"));
    };
    // Materializes `source` of `from` for a bind or a cache seed; returns the host path and,
    // for layer sources, the overlay to mount.
    switch (m.type()) {
      case farm::v1::Mount::BIND: {
        if (target.empty()) return where(absl::InvalidArgumentError("bind mount without a target"));
        farm::v1::SandboxMount* sm = req.add_mounts();
        sm->set_target(target);
        sm->set_readonly(m.readonly());
        if (m.from().has_layers()) {
          ASSIGN_OR_RETURN(std::vector<layerstore::LayerDesc> descs,
                           Descs(m.from().layers().layers()));
          auto s = store_->AcquireStack(descs);
          if (!s.ok()) return where(s.status());
          layerstore::StackView view((*s)->lower_dirs());
          auto r = view.Resolve(m.source(), true);
          if (!r.ok()) return where(r.status());
          if (!r->exists) {
            return where(absl::NotFoundError(
                absl::StrCat("source \"", m.source(), "\" not found in the mounted stage")));
          }
          RETURN_IF_ERROR(common::MakeDirs(mdir, 0755));
          sm->set_kind(farm::v1::SandboxMount::OVERLAY);
          sm->set_source(mdir);
          sm->set_subpath(r->path);
          for (const std::string& l : (*s)->lower_names()) sm->add_lower_dirs(l);
          if (!m.readonly()) {
            RETURN_IF_ERROR(common::MakeDirs(mdir + "-upper", 0755));
            RETURN_IF_ERROR(common::MakeDirs(mdir + "-work", 0755));
            sm->set_upper_dir(mdir + "-upper");
            sm->set_work_dir(mdir + "-work");
          }
          stacks.push_back(std::move(*s));
        } else if (m.from().has_context()) {
          auto root =
              common::Digest::ParseOci(m.from().context().digest(), m.from().context().size());
          if (!root.ok()) return where(root.status());
          copy::CasTree tree(options_.cas, *root);
          auto clean = CleanSource(m.source());
          if (!clean.ok()) return where(clean.status());
          auto resolved = copy::ResolvePath(tree, *clean, true);
          if (!resolved.ok()) return where(resolved.status());
          RETURN_IF_ERROR(where(copy::Materialize(tree, *resolved, mdir)));
          sm->set_source(mdir);
        } else {
          return where(
              absl::InvalidArgumentError("bind mount without a source (context or stage)"));
        }
        break;
      }
      case farm::v1::Mount::CACHE: {
        if (target.empty())
          return where(absl::InvalidArgumentError("cache mount without a target"));
        std::string id = m.id().empty() ? target : m.id();
        copy::Attrs attrs{m.mode() != 0 ? m.mode() : 0755, m.uid(), m.gid(), 0};
        std::function<absl::Status(const std::string&)> seed;
        if (m.has_from() && (m.from().has_context() || m.from().has_layers())) {
          const farm::v1::Mount* mp = &m;
          seed = [this, mp](const std::string& into) -> absl::Status {
            std::unique_ptr<copy::SourceTree> tree;
            std::unique_ptr<layerstore::Stack> hold;
            if (mp->from().has_layers()) {
              ASSIGN_OR_RETURN(auto descs, Descs(mp->from().layers().layers()));
              ASSIGN_OR_RETURN(hold, store_->AcquireStack(descs));
              tree = std::make_unique<copy::StackTree>(layerstore::StackView(hold->lower_dirs()));
            } else {
              ASSIGN_OR_RETURN(auto root, common::Digest::ParseOci(mp->from().context().digest(),
                                                                   mp->from().context().size()));
              tree = std::make_unique<copy::CasTree>(options_.cas, root);
            }
            ASSIGN_OR_RETURN(std::string clean, CleanSource(mp->source()));
            ASSIGN_OR_RETURN(std::string path, copy::ResolvePath(*tree, clean, true));
            ASSIGN_OR_RETURN(std::vector<copy::DirEntry> entries, tree->ReadDir(path));
            for (const copy::DirEntry& e : entries) {
              RETURN_IF_ERROR(copy::Materialize(*tree, path.empty() ? e.name : path + "/" + e.name,
                                                into + "/" + e.name));
            }
            return absl::OkStatus();
          };
        }
        auto lease = cache_mounts_.Acquire(id, m.sharing(), attrs, seed, cancel);
        if (!lease.ok()) return where(lease.status());
        farm::v1::SandboxMount* sm = req.add_mounts();
        sm->set_source((*lease)->path());
        sm->set_target(target);
        sm->set_readonly(m.readonly());
        caches.push_back(std::move(*lease));
        break;
      }
      case farm::v1::Mount::TMPFS: {
        if (target.empty())
          return where(absl::InvalidArgumentError("tmpfs mount without a target"));
        farm::v1::SandboxMount* sm = req.add_mounts();
        sm->set_kind(farm::v1::SandboxMount::TMPFS);
        sm->set_target(target);
        sm->set_tmpfs_size_bytes(m.size_bytes());
        break;
      }
      case farm::v1::Mount::SECRET: {
        std::string id = m.id();
        if (id.empty() && !target.empty()) id = Base(target);
        if (id.empty()) return where(absl::InvalidArgumentError("secret mount without an id"));
        absl::StatusOr<std::string> value = secrets != nullptr
                                                ? secrets->GetSecret(id)
                                                : absl::NotFoundError("no secrets were provided");
        if (!value.ok()) {
          if (!absl::IsNotFound(value.status())) return where(value.status());
          if (m.required()) {
            return where(absl::FailedPreconditionError(
                absl::StrCat("secret \"", id, "\" is required but was not provided")));
          }
          break;  // an optional secret that is absent: no mount
        }
        if (!m.env().empty()) req.add_env(absl::StrCat(m.env(), "=", *value));
        if (target.empty() && !m.env().empty()) break;  // env only
        if (target.empty()) target = "/run/secrets/" + id;
        // The bytes go to the runner in its (memory-backed) request; it writes them into a
        // tmpfs of the sandbox's own mount namespace, on this empty directory.
        std::string sdir = absl::StrCat(dir, "/secret", i);
        RETURN_IF_ERROR(common::MakeDirs(sdir, 0700));
        farm::v1::SandboxMount* sm = req.add_mounts();
        sm->set_kind(farm::v1::SandboxMount::FILE);
        sm->set_source(sdir);
        sm->set_target(target);
        sm->set_readonly(true);
        sm->set_content(*std::move(value));
        sm->set_file_mode(m.mode() != 0 ? m.mode() : 0400);
        sm->set_file_uid(m.uid());
        sm->set_file_gid(m.gid());
        break;
      }
      case farm::v1::Mount::SSH: {
        std::string id = m.id().empty() ? "default" : m.id();
        absl::StatusOr<std::string> agent = secrets != nullptr
                                                ? secrets->GetSshAgentSocket(id)
                                                : absl::NotFoundError("no ssh agent was provided");
        if (!agent.ok()) {
          if (!absl::IsNotFound(agent.status())) return where(agent.status());
          if (m.required()) {
            return where(absl::FailedPreconditionError(
                absl::StrCat("ssh agent \"", id,
                             "\" is required but none was provided (farm build --ssh ", id, ")")));
          }
          break;
        }
        if (target.empty()) target = absl::StrCat("/run/buildkit/ssh_agent.", ssh_count);
        copy::Attrs attrs{m.mode() != 0 ? m.mode() : 0600, m.uid(), m.gid(), 0};
        auto proxy = SshAgentProxy::Start(*agent, absl::StrCat(dir, "/ssh", i, ".sock"), attrs);
        if (!proxy.ok()) return where(proxy.status());
        farm::v1::SandboxMount* sm = req.add_mounts();
        sm->set_source((*proxy)->path());
        sm->set_target(target);
        if (ssh_count == 0) req.add_env("SSH_AUTH_SOCK=" + target);
        ++ssh_count;
        proxies.push_back(std::move(*proxy));
        break;
      }
      default:
        return where(absl::InvalidArgumentError("unknown mount type"));
    }
  }
  // Heredoc scripts and other inline files, read-only.
  for (int i = 0; i < run.files_size(); ++i) {
    const farm::v1::InlineFile& f = run.files(i);
    if (f.name().empty() || f.name()[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("inline file \"", f.name(), "\" is not absolute"));
    }
    std::string fdir = dir + "/files";
    RETURN_IF_ERROR(common::MakeDirs(fdir, 0755));
    std::string file = absl::StrCat(fdir, "/", i);
    RETURN_IF_ERROR(common::WriteFileAtomic(file, f.content(), f.mode() != 0 ? f.mode() : 0755));
    chmod(file.c_str(), f.mode() != 0 ? f.mode() : 0755);
    farm::v1::SandboxMount* sm = req.add_mounts();
    sm->set_source(file);
    sm->set_target(f.name());
    sm->set_readonly(true);
  }
  if (cancel != nullptr && cancel->HasBeenNotified()) return absl::CancelledError("RUN cancelled");

  Tail tail;
  sandbox::SandboxIo io;
  io.on_line = [&](absl::string_view line, bool is_stderr) {
    tail.Add(line);
    if (log) log(line, is_stderr);
  };
  ASSIGN_OR_RETURN(farm::v1::SandboxResult sr, sandbox::RunSandbox(req, io, cancel));
  farm::v1::StepResult result;
  result.set_run_micros(sr.run_micros());
  if (sr.error_code() != 0) {
    absl::Status s(static_cast<absl::StatusCode>(sr.error_code()), sr.error_message());
    return common::Annotate(s, "setting up the sandbox");
  }
  if (sr.cancelled() || (cancel != nullptr && cancel->HasBeenNotified())) {
    return absl::CancelledError("RUN cancelled; its processes were killed");
  }
  result.set_exit_code(sr.exit_code());
  result.set_timed_out(sr.timed_out());
  if (sr.timed_out()) {
    std::string line = absl::StrCat("farm: the command exceeded its timeout of ",
                                    run.timeout_seconds(), "s; its process tree was killed");
    tail.Add(line);
    if (log) log(line, true);
    if (result.exit_code() == 0) result.set_exit_code(128 + 9);
  }
  if (sr.oom_killed()) {
    std::string line = absl::StrCat("farm: killed by the OOM killer (memory limit ",
                                    options_.limits.memory_bytes, " bytes)");
    tail.Add(line);
    if (log) log(line, true);
  }
  if (result.exit_code() != 0 || sr.timed_out()) {
    tail.CopyTo(&result);
    return result;
  }
  RemoveStubs(req.upper_dir(), sr.stubs());
  RETURN_IF_ERROR(common::Annotate(FinishLayer(req.upper_dir(), request.output(), &result),
                                   "creating the layer"));
  return result;
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
                     Descs(op.source().layers().layers()));
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
      return absl::FailedPreconditionError(
          absl::StrCat("WORKDIR ", path, ": /", r.path, " exists and is not a directory"));
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
  ASSIGN_OR_RETURN(std::vector<layerstore::LayerDesc> descs, Descs(layers));
  ASSIGN_OR_RETURN(std::unique_ptr<layerstore::Stack> stack, store_->AcquireStack(descs));
  ASSIGN_OR_RETURN(std::string dir, NewRunDir());
  RunDir cleanup{dir};
  farm::v1::SandboxRequest req;
  for (const char* sub : {"upper", "work", "rootfs"}) {
    RETURN_IF_ERROR(common::MakeDirs(absl::StrCat(dir, "/", sub), 0755));
  }
  req.set_layer_dir(stack->base_dir());
  for (const std::string& l : stack->lower_names()) req.add_lower_dirs(l);
  req.set_upper_dir(dir + "/upper");
  req.set_work_dir(dir + "/work");
  req.set_rootfs_dir(dir + "/rootfs");
  for (const std::string& a : o.args) req.add_args(a);
  for (const std::string& e : o.env.env()) req.add_env(e);
  req.set_user(o.env.user());
  req.set_cwd(o.env.workdir().empty() ? "/" : o.env.workdir());
  req.set_hostname(o.env.hostname().empty() ? "farm" : o.env.hostname());
  RETURN_IF_ERROR(ApplyRunSandbox(options_.policy, o.network, o.insecure ? "insecure" : "sandbox",
                                  false, &req));
  req.set_interactive(true);
  for (const auto& cg : cgroups_) *req.add_cgroups() = cg;
  req.set_cgroup_name(absl::StrCat("farm-", getpid(), "-run-", counter_++));
  if (!options_.resolv_conf.empty() && common::PathExists(options_.resolv_conf)) {
    req.set_resolv_conf(options_.resolv_conf);
  }
  if (!options_.hosts.empty() && common::PathExists(options_.hosts)) req.set_hosts(options_.hosts);
  sandbox::SandboxIo io;
  io.stdin_fd = o.stdin_fd;
  io.stdout_fd = o.stdout_fd;
  io.stderr_fd = o.stderr_fd;
  ASSIGN_OR_RETURN(farm::v1::SandboxResult sr, sandbox::RunSandbox(req, io, o.cancel));
  if (sr.error_code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(sr.error_code()), sr.error_message());
  }
  if (sr.cancelled()) return absl::CancelledError("cancelled");
  return sr.exit_code();
}

}  // namespace farm::worker
