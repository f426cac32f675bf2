#include "worker/agent/agent.h"

#include <grpcpp/channel.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cache/client/grpc_blob_store.h"
#include "cache/read_through_blob_store.h"
#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/platform.h"
#include "worker/emulation.h"

namespace farm::worker::agent {

// ---------------------------------------------------------------------------------------
// Creation and lifecycle

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(Options options) {
  if (options.slots < 1 || options.slots > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots must be from 1 to 1024, not ", options.slots));
  }
  std::shared_ptr<grpc::ChannelCredentials> scheduler_creds, cache_creds;
  if (options.scheduler_channel == nullptr) {
    ASSIGN_OR_RETURN(options.scheduler, ParsePeerAddress("--scheduler", options.scheduler));
    ASSIGN_OR_RETURN(scheduler_creds, auth::ClientCredentials(options.scheduler, options.security));
  }
  std::shared_ptr<grpc::ChannelInterface> cache_channel;
  std::shared_ptr<cache::BlobStore> cas = options.cas;
  if (cas == nullptr) {
    ASSIGN_OR_RETURN(options.cache, ParsePeerAddress("--cache", options.cache));
    ASSIGN_OR_RETURN(cache_creds, auth::ClientCredentials(options.cache, options.security));
    auto channel = NewChannel(options.cache, std::nullopt, cache_creds);
    cache::client::GrpcBlobStore::Options co;
    co.instance_name = options.cache_instance;
    cas = std::make_shared<cache::client::GrpcBlobStore>(channel, co);
    cache_channel = channel;
  }
  for (const auto& [k, v] : options.labels) {
    if (k.empty()) return absl::InvalidArgumentError("a label needs a key (--label KEY=VALUE)");
  }
  if (options.max_chain_ids < 1) options.max_chain_ids = 1;
  std::string platform = options.platform.empty() ? oci::Platform::Host().String()
                                                  : oci::NormalizePlatform(options.platform);
  std::vector<std::string> emulated;
  for (const std::string& p : options.emulated_platforms) {
    std::string normalized = oci::NormalizePlatform(p);
    if (normalized == platform) continue;
    RETURN_IF_ERROR(CheckCanRun(normalized));
    emulated.push_back(std::move(normalized));
  }
  std::sort(emulated.begin(), emulated.end());
  emulated.erase(std::unique(emulated.begin(), emulated.end()), emulated.end());
  if (static_cast<int>(emulated.size()) > kMaxEmulatedPlatforms) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxEmulatedPlatforms,
                                                   " emulated platforms, not ", emulated.size()));
  }
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "farm-worker must run as root (steps run in Linux namespaces on overlayfs)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<StateDir> state, StateDir::Open(options.state_dir));
  if (cache_channel != nullptr && options.context_cache_max_bytes > 0) {
    // Context files read again and again (every COPY of a source tree) come from disk here.
    cache::RocksDbStoreOptions lo;
    lo.dir = common::JoinPath(options.state_dir, "context-cache");
    lo.max_size = options.context_cache_max_bytes;
    lo.sync = false;  // a copy: losing its tail after a power loss only costs a re-read
    absl::StatusOr<std::unique_ptr<cache::RocksDbBlobStore>> local =
        cache::RocksDbBlobStore::Create(lo);
    if (!local.ok()) return common::Annotate(local.status(), "the context cache");
    cas = std::make_shared<cache::ReadThroughBlobStore>(
        cas, std::shared_ptr<cache::BlobStore>(*std::move(local)), int64_t{1} << 20);
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<ChainIndex> chains,
      ChainIndex::Load(common::JoinPath(options.state_dir, "chains"), options.max_chain_ids));
  LocalStepExecutor::Options eo;
  eo.state_dir = options.state_dir;
  eo.cas = cas;
  eo.layer_store_max_bytes = options.layer_store_max_bytes;
  eo.limits = options.limits;
  eo.policy = options.policy;
  eo.compression_threads = options.compression_threads;
  if (options.log) {
    eo.log = [log = options.log](absl::string_view line) { log(std::string(line)); };
  }
  auto executor = LocalStepExecutor::Create(std::move(eo));
  if (!executor.ok()) {
    return common::Annotate(executor.status(), absl::StrCat("state directory ", options.state_dir));
  }
  if (!options.log) {
    options.log = [](const std::string& line) {
      std::string out =
          absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
                       " farm-worker: ", line, "\n");
      fwrite(out.data(), 1, out.size(), stderr);
      fflush(stderr);
    };
  }
  return std::unique_ptr<Agent>(
      new Agent(std::move(options), std::move(state), std::move(cas), std::move(cache_channel),
                *std::move(executor), std::move(chains), std::move(platform), std::move(emulated),
                Credentials{scheduler_creds, cache_creds}));
}

Agent::Agent(Options options, std::unique_ptr<StateDir> state,
             std::shared_ptr<cache::BlobStore> cas,
             std::shared_ptr<grpc::ChannelInterface> cache_channel,
             std::unique_ptr<LocalStepExecutor> executor, std::unique_ptr<ChainIndex> chains,
             std::string platform, std::vector<std::string> emulated, Credentials credentials)
    : options_(std::move(options)),
      state_(std::move(state)),
      cas_(std::move(cas)),
      credentials_(std::move(credentials)),
      cache_channel_(std::move(cache_channel)),
      executor_(std::move(executor)),
      chains_(std::move(chains)),
      platform_(std::move(platform)),
      emulated_(std::move(emulated)) {
  auto log = [this](const std::string& line) { LogLine(line); };
  Session::Options so;
  so.target = options_.scheduler;
  so.channel = options_.scheduler_channel;
  so.credentials = credentials_.scheduler;
  so.reconnect = options_.reconnect;
  so.connect_timeout = options_.connect_timeout;
  so.welcome_timeout = options_.welcome_timeout;
  so.default_heartbeat_interval = options_.default_heartbeat_interval;
  so.keepalive_time = options_.keepalive_time;
  so.keepalive_timeout = options_.keepalive_timeout;
  so.max_buffered_log_bytes = options_.max_buffered_log_bytes;
  so.log = log;
  session_ = std::make_unique<Session>(std::move(so), static_cast<Session::Delegate*>(this));

  TaskRunner::Options ro;
  ro.slots = options_.slots;
  ro.worker_id = worker_id();
  ro.execute = [this](
                   const farm::v1::StepRequest& request, const executor::LogSink& sink,
                   const absl::Notification* cancel,
                   executor::SecretProvider::Ptr secrets) -> absl::StatusOr<farm::v1::StepResult> {
    // The scheduler is trusted less than we would like: run only what was announced.
    RETURN_IF_ERROR(CheckPlatform(request));
    LocalStepExecutor::CallOptions call;
    call.secrets = std::move(secrets);
    return executor_->Execute(request, sink, cancel, call);
  };
  ro.output = static_cast<TaskRunner::Output*>(this);
  ro.on_step_done = [this](const farm::v1::StepRequest& request,
                           const absl::StatusOr<farm::v1::StepResult>& result) {
    RecordStack(request, result);
    if (options_.on_step_done) options_.on_step_done(request, result);
  };
  ro.log = log;
  runner_ = std::make_unique<TaskRunner>(std::move(ro));
}

Agent::~Agent() { Shutdown(absl::Seconds(5)); }

void Agent::LogLine(const std::string& line) {
  absl::MutexLock lock(&log_mu_);
  options_.log(line);
}

void Agent::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  std::string labels;
  for (const auto& [k, v] : options_.labels) absl::StrAppend(&labels, " ", k, "=", v);
  LogLine(absl::StrCat(
      "worker ", worker_id(), ": ", options_.slots, " slot", options_.slots == 1 ? "" : "s", ", ",
      platform_,
      emulated_.empty() ? "" : absl::StrCat(" (+", absl::StrJoin(emulated_, ", +"), " emulated)"),
      labels.empty() ? "" : absl::StrCat(",", labels), ", state ", state_->path(), ", cache ",
      options_.cas != nullptr ? "(in process)" : options_.cache));
  if (platform_ != oci::Platform::Host().String()) {
    absl::Status can = CheckCanRun(platform_);
    LogLine(absl::StrCat("reporting platform ", platform_, " although this host runs ",
                         oci::Platform::Host().String(), ": ",
                         can.ok()
                             ? "its steps run under QEMU emulation"
                             : absl::StrCat("its steps will fail here (", can.message(), ")")));
  }
  runner_->Start();
  session_->Start();
}

void Agent::Shutdown(absl::Duration grace) {
  absl::Time deadline = absl::Now() + grace;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      mu_.Await(absl::Condition(&stopped_));
      return;
    }
    stopping_ = true;
    if (!started_) {
      session_->Stop({});
      session_->MarkStopped();
      stopped_ = true;
      return;
    }
  }
  // The session hears of it first, with the tasks still held, so that its draining heartbeat
  // goes out before the results of the tasks cancelled here.
  int cancelled = runner_->Shutdown(
      absl::StrCat("worker ", worker_id(), " is shutting down"),
      [this](const std::vector<farm::v1::RunningTask>& held) { session_->Stop(held); });
  if (cancelled > 0) {
    LogLine(
        absl::StrCat("shutting down: cancelling ", cancelled, " task", cancelled == 1 ? "" : "s"));
  } else {
    LogLine("shutting down");
  }
  runner_->WaitIdle(deadline);
  session_->Drain(deadline);  // the results are sent, then the stream is closed
  runner_->Join();
  absl::Status saved = chains_->Save();
  if (!saved.ok()) LogLine(std::string(saved.message()));
  int unsent = session_->GetStatus().unsent_results;
  session_->MarkStopped();
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
  }
  LogLine(unsent > 0 ? absl::StrCat("stopped (", unsent, " result", unsent == 1 ? "" : "s",
                                    " could not be sent)")
                     : "stopped");
}

Agent::Status Agent::GetStatus() {
  Session::Status ss = session_->GetStatus();
  TaskRunner::Counts tc = runner_->counts();
  Status s;
  s.state = ss.state;
  s.scheduler_id = ss.scheduler_id;
  s.sessions = ss.sessions;
  s.failed_attempts = ss.failed_attempts;
  s.last_backoff = ss.last_backoff;
  s.queued = tc.queued;
  s.running = tc.running;
  s.unsent_results = ss.unsent_results;
  s.tasks_done = tc.done;
  s.log_lines_dropped = ss.log_lines_dropped;
  return s;
}

// ---------------------------------------------------------------------------------------
// The session's delegate

absl::Status Agent::BeforeConnect(const std::function<bool()>& stopping) {
  if (cache_channel_ == nullptr) return absl::OkStatus();
  // A probe on a channel of its own: the store's long-lived channel may sit in gRPC's own
  // backoff after an outage and would not say whether farm-cache is back.
  auto probe = NewChannel(options_.cache, std::nullopt, credentials_.cache);
  RETURN_IF_ERROR(
      common::Annotate(WaitConnected(probe.get(), options_.connect_timeout, stopping),
                       absl::StrCat("farm-cache at ", options_.cache, " is unreachable")));
  cache_channel_->GetState(/*try_to_connect=*/true);  // wake the store's channel too
  return absl::OkStatus();
}

absl::flat_hash_set<std::string> Agent::PresentLayers() {
  absl::flat_hash_set<std::string> present;
  for (const common::Digest& d : executor_->layer_store()->List()) present.insert(d.OciString());
  return present;
}

absl::Status Agent::CheckPlatform(const farm::v1::StepRequest& request) const {
  std::string p = oci::NormalizePlatform(request.env().platform());
  if (p.empty()) p = "linux/amd64";  // as the scheduler reads a step without one
  if (p == platform_ || std::binary_search(emulated_.begin(), emulated_.end(), p)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "worker ", worker_id(), " refuses step \"", request.description(), "\" for ", p, ": it runs ",
      platform_,
      emulated_.empty() ? "" : absl::StrCat(" and, emulated, ", absl::StrJoin(emulated_, ", ")),
      " only (the scheduler should not have sent it here)"));
}

void Agent::FillHello(farm::v1::WorkerHello* h) {
  h->set_worker_id(worker_id());
  h->set_slots(options_.slots);
  h->set_platform(platform_);
  for (const std::string& p : emulated_) h->add_emulated_platforms(p);
  for (const auto& [k, v] : options_.labels) (*h->mutable_labels())[k] = v;
  h->set_version(absl::StrCat("farm-worker ", options_.version));
  for (std::string& c : chains_->Reset(PresentLayers(), options_.max_chain_ids)) {
    h->add_chain_ids(std::move(c));
  }
  for (farm::v1::RunningTask& r : runner_->Held()) *h->add_running() = std::move(r);
}

void Agent::FillHeartbeat(farm::v1::Heartbeat* hb) {
  ChainIndex::Delta d = chains_->Diff(PresentLayers());
  for (std::string& c : d.added) hb->add_chain_ids_added(std::move(c));
  for (std::string& c : d.removed) hb->add_chain_ids_removed(std::move(c));
  for (farm::v1::RunningTask& r : runner_->Held()) *hb->add_running() = std::move(r);
}

void Agent::HeartbeatSent() {
  absl::Status saved = chains_->Save();
  if (!saved.ok()) LogLine(std::string(saved.message()));
}

void Agent::OnTask(farm::v1::Task* task) { runner_->Accept(task); }

void Agent::OnCancel(const farm::v1::CancelTask& cancel) { runner_->Cancel(cancel); }

Session::Delegate::Held Agent::HeldTasks() {
  TaskRunner::Counts c = runner_->counts();
  return Held{c.held, c.running};
}

// ---------------------------------------------------------------------------------------
// The task runner's output and locality

void Agent::Log(const std::string& task_id, const std::string& lease_id, absl::string_view line,
                bool is_stderr) {
  session_->EnqueueLog(task_id, lease_id, line, is_stderr);
}

void Agent::Result(farm::v1::TaskResult result) { session_->EnqueueResult(std::move(result)); }

void Agent::RecordStack(const farm::v1::StepRequest& req,
                        const absl::StatusOr<farm::v1::StepResult>& result) {
  // Locality: the stacks this worker now holds.
  std::vector<common::Digest> stack;
  for (const farm::v1::Layer& l : req.parents()) {
    auto d = common::Digest::ParseOci(l.diff_id(), l.uncompressed_size());
    if (!d.ok()) return;
    stack.push_back(*d);
  }
  if (result.ok() && result->has_layer()) {
    auto d = common::Digest::ParseOci(result->layer().diff_id(), 0);
    if (d.ok()) stack.push_back(*d);
  }
  if (!stack.empty()) chains_->Record(stack);
}

}  // namespace farm::worker::agent
