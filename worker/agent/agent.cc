#include "worker/agent/agent.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <string.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cache/client/grpc_blob_store.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/scheduler.grpc.pb.h"
#include "oci/platform.h"

namespace farm::worker::agent {
namespace {

using farm::v1::SchedulerMessage;
using farm::v1::WorkerMessage;

constexpr absl::Duration kMinHeartbeat = absl::Milliseconds(10);
constexpr absl::Duration kMaxHeartbeat = absl::Minutes(10);
// A session shorter than this does not reset the backoff: a scheduler that welcomes and
// then drops every worker at once must not be hammered.
constexpr absl::Duration kStableSession = absl::Seconds(10);

int64_t Millis(absl::Duration d) { return absl::ToInt64Milliseconds(d); }

std::string Seconds(absl::Duration d) {
  if (d < absl::Seconds(1)) return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  char buf[32];
  snprintf(buf, sizeof(buf), "%.1fs", absl::ToDoubleSeconds(d));
  return buf;
}

std::string Short(absl::string_view digest) {
  return digest.size() > 19 ? absl::StrCat(digest.substr(0, 19), "…") : std::string(digest);
}

// One line of a status for the log, whatever the server put in it.
std::string OneLine(absl::string_view message) {
  std::string s(message);
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target, const Agent::Options& o,
                                          bool keepalive) {
  grpc::ChannelArguments args;
  // Our own backoff decides when to retry: a channel of its own per attempt (no subchannel
  // shared with earlier attempts, whose gRPC-internal backoff could delay this one).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetMaxReceiveMessageSize(64 << 20);  // tasks carry inline files
  if (keepalive) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(Millis(o.keepalive_time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(Millis(o.keepalive_timeout)));
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

// The secrets a task mounts, for that task only. Their bytes are wiped when the task ends.
class TaskSecrets : public executor::SecretProvider {
 public:
  explicit TaskSecrets(google::protobuf::Map<std::string, std::string>* from) {
    for (auto& [id, value] : *from) {
      secrets_[id] = value;
      explicit_bzero(value.data(), value.size());
    }
    from->clear();
  }
  ~TaskSecrets() override {
    for (auto& [id, value] : secrets_) explicit_bzero(value.data(), value.size());
  }
  absl::StatusOr<std::string> GetSecret(absl::string_view id) override {
    auto it = secrets_.find(std::string(id));
    if (it == secrets_.end()) {
      return absl::NotFoundError(absl::StrCat("secret \"", id, "\" was not sent with the task"));
    }
    return it->second;
  }
  absl::StatusOr<std::string> GetSshAgentSocket(absl::string_view id) override {
    return absl::NotFoundError(
        absl::StrCat("ssh agent \"", id, "\": agents are not forwarded to farm-worker hosts"));
  }

 private:
  std::map<std::string, std::string> secrets_;
};

}  // namespace

struct Agent::TaskState {
  std::string task_id;
  std::string lease_id;  // mu_; may change when the scheduler re-issues the task
  int attempt = 0;
  farm::v1::StepRequest request;
  std::shared_ptr<executor::SecretProvider> secrets;  // null: the task mounts none
  absl::Notification cancel;
  std::string cancel_reason;  // mu_
};

absl::StatusOr<std::string> ParsePeerAddress(const std::string& what, const std::string& address) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", address, "\": ", why, " (want HOST:PORT)"));
  };
  std::string a = address;
  if (absl::StartsWith(a, "grpcs://") || absl::StartsWith(a, "https://")) {
    return bad("TLS is not supported yet");
  }
  if (absl::StartsWith(a, "grpc://")) a = a.substr(7);
  if (absl::StartsWith(a, "unix:")) {
    if (a.size() == 5) return bad("empty socket path");
    return a;
  }
  if (a.empty()) return bad("empty address");
  size_t colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("no port");
  std::string host = a.substr(0, colon);
  if (host.front() == '[' ? host.back() != ']' : host.find(':') != std::string::npos) {
    return bad("an IPv6 address must be in brackets");
  }
  int port = 0;
  if (!absl::SimpleAtoi(a.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return bad("the port must be a number from 1 to 65535");
  }
  return a;
}

// ---------------------------------------------------------------------------------------
// Creation and lifecycle

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(Options options) {
  if (options.slots < 1 || options.slots > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("slots must be from 1 to 1024, not ", options.slots));
  }
  if (options.scheduler_channel == nullptr) {
    ASSIGN_OR_RETURN(options.scheduler, ParsePeerAddress("--scheduler", options.scheduler));
  }
  std::shared_ptr<grpc::ChannelInterface> cache_channel;
  std::shared_ptr<cache::BlobStore> cas = options.cas;
  if (cas == nullptr) {
    ASSIGN_OR_RETURN(options.cache, ParsePeerAddress("--cache", options.cache));
    auto channel = NewChannel(options.cache, options, /*keepalive=*/false);
    cache::client::GrpcBlobStore::Options co;
    co.instance_name = options.cache_instance;
    cas = std::make_shared<cache::client::GrpcBlobStore>(channel, co);
    cache_channel = channel;
  }
  for (const auto& [k, v] : options.labels) {
    if (k.empty()) return absl::InvalidArgumentError("a label needs a key (--label KEY=VALUE)");
  }
  if (options.max_chain_ids < 1) options.max_chain_ids = 1;
  std::string platform =
      options.platform.empty() ? oci::Platform::Host().String() : options.platform;
  if (geteuid() != 0) {
    return absl::FailedPreconditionError(
        "farm-worker must run as root (steps run in Linux namespaces on overlayfs)");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<StateDir> state, StateDir::Open(options.state_dir));
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
  return std::unique_ptr<Agent>(new Agent(std::move(options), std::move(state), std::move(cas),
                                          std::move(cache_channel), *std::move(executor),
                                          std::move(chains), std::move(platform)));
}

Agent::Agent(Options options, std::unique_ptr<StateDir> state,
             std::shared_ptr<cache::BlobStore> cas,
             std::shared_ptr<grpc::ChannelInterface> cache_channel,
             std::unique_ptr<LocalStepExecutor> executor, std::unique_ptr<ChainIndex> chains,
             std::string platform)
    : options_(std::move(options)),
      state_(std::move(state)),
      cas_(std::move(cas)),
      cache_channel_(std::move(cache_channel)),
      executor_(std::move(executor)),
      chains_(std::move(chains)),
      platform_(std::move(platform)),
      scheduler_target_(options_.scheduler) {}

Agent::~Agent() { Shutdown(absl::Seconds(5)); }

void Agent::Log(const std::string& line) {
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
  Log(absl::StrCat("worker ", worker_id(), ": ", options_.slots, " slot",
                   options_.slots == 1 ? "" : "s", ", ", platform_,
                   labels.empty() ? "" : absl::StrCat(",", labels), ", state ", state_->path(),
                   ", cache ", options_.cas != nullptr ? "(in process)" : options_.cache));
  if (platform_ != oci::Platform::Host().String()) {
    Log(absl::StrCat("reporting platform ", platform_, " although this host runs ",
                     oci::Platform::Host().String(), ": its steps will fail here"));
  }
  for (int i = 0; i < options_.slots; ++i) pool_.emplace_back([this] { PoolLoop(); });
  connection_thread_ = std::thread([this] { ConnectionLoop(); });
}

void Agent::Shutdown(absl::Duration grace) {
  absl::Time deadline = absl::Now() + grace;
  int cancelled = 0;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      mu_.Await(absl::Condition(&stopped_));
      return;
    }
    stopping_ = true;
    if (!started_) {
      state_value_ = State::kStopped;
      stopped_ = true;
      return;
    }
    state_value_ = State::kStopping;
    if (connected_) {
      // First tell the scheduler to send nothing more and to run elsewhere what this worker
      // reports cancelled from here on (the stream keeps the order).
      Outgoing o;
      farm::v1::Heartbeat* hb = o.msg.mutable_heartbeat();
      hb->set_draining(true);
      for (const auto& [id, t] : tasks_) {
        farm::v1::RunningTask* r = hb->add_running();
        r->set_task_id(id);
        r->set_lease_id(t->lease_id);
        r->set_key(t->request.key());
      }
      outbox_.push_back(std::move(o));
    }
    std::string reason = absl::StrCat("worker ", worker_id(), " is shutting down");
    while (!queue_.empty()) {
      std::shared_ptr<TaskState> t = queue_.front();
      CancelQueuedLocked(t, reason);
      ++cancelled;
    }
    for (auto& [id, t] : tasks_) {
      if (t->cancel.HasBeenNotified()) continue;
      t->cancel_reason = reason;
      t->cancel.Notify();
      ++cancelled;
    }
    // Not welcomed yet: nothing to report, stop dialing or waiting now.
    if (!connected_ && session_ctx_ != nullptr) session_ctx_->TryCancel();
  }
  if (cancelled > 0) {
    Log(absl::StrCat("shutting down: cancelling ", cancelled, " task", cancelled == 1 ? "" : "s"));
  } else {
    Log("shutting down");
  }
  {
    absl::MutexLock lock(&mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
    mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
    draining_ = true;  // the writer closes the stream once the results are out
    auto done = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return connection_done_ || !started_; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline) && session_ctx_ != nullptr) {
      session_ctx_->TryCancel();
    }
  }
  if (connection_thread_.joinable()) connection_thread_.join();
  for (std::thread& t : pool_) t.join();
  pool_.clear();
  absl::Status saved = chains_->Save();
  if (!saved.ok()) Log(std::string(saved.message()));
  int unsent;
  {
    absl::MutexLock lock(&mu_);
    unsent = 0;
    for (const Outgoing& o : outbox_) unsent += o.msg.has_result() ? 1 : 0;
    state_value_ = State::kStopped;
    stopped_ = true;
  }
  Log(unsent > 0 ? absl::StrCat("stopped (", unsent, " result", unsent == 1 ? "" : "s",
                                " could not be sent)")
                 : "stopped");
}

Agent::Status Agent::GetStatus() {
  absl::MutexLock lock(&mu_);
  Status s;
  s.state = state_value_;
  s.scheduler_id = scheduler_id_;
  s.sessions = sessions_;
  s.failed_attempts = failed_attempts_;
  s.last_backoff = last_backoff_;
  s.queued = static_cast<int>(queue_.size());
  s.running = running_;
  for (const Outgoing& o : outbox_) s.unsent_results += o.msg.has_result() ? 1 : 0;
  s.tasks_done = tasks_done_;
  s.log_lines_dropped = log_lines_dropped_;
  return s;
}

// ---------------------------------------------------------------------------------------
// The connection

absl::Status Agent::WaitConnected(grpc::ChannelInterface* channel, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  // `tried`: an attempt was made for this call, so TRANSIENT_FAILURE is its outcome. A channel
  // found in TRANSIENT_FAILURE (a long-lived one, in gRPC's own backoff) has not tried yet.
  bool tried = false, first = true;
  while (true) {
    grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return absl::OkStatus();
    if (state == GRPC_CHANNEL_CONNECTING || (first && state == GRPC_CHANNEL_IDLE)) tried = true;
    first = false;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && tried) {
      return absl::UnavailableError("connection failed");
    }
    if (state == GRPC_CHANNEL_SHUTDOWN) return absl::UnavailableError("channel shut down");
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return absl::CancelledError("shutting down");
    }
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("no connection within ", Seconds(timeout)));
    }
    // A long-lived channel already in TRANSIENT_FAILURE (gRPC's own backoff, at most 5s
    // here) is waited on until it connects or the timeout. Wake every 100ms for Shutdown.
    absl::Time slice = std::min(deadline, absl::Now() + absl::Milliseconds(100));
    channel->WaitForStateChange(state, absl::ToChronoTime(slice));
  }
}

absl::Status Agent::CheckCache() {
  if (cache_channel_ == nullptr) return absl::OkStatus();
  // A probe on a channel of its own: the store's long-lived channel may sit in gRPC's own
  // backoff after an outage and would not say whether farm-cache is back.
  auto probe = NewChannel(options_.cache, options_, /*keepalive=*/false);
  RETURN_IF_ERROR(
      common::Annotate(WaitConnected(probe.get(), options_.connect_timeout),
                       absl::StrCat("farm-cache at ", options_.cache, " is unreachable")));
  cache_channel_->GetState(/*try_to_connect=*/true);  // wake the store's channel too
  return absl::OkStatus();
}

void Agent::ConnectionLoop() {
  common::Backoff backoff(options_.reconnect);
  std::string last_error;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      state_value_ = State::kConnecting;
    }
    absl::Time start = absl::Now();
    bool welcomed = false;
    absl::Status s = CheckCache();
    if (s.ok()) s = RunSession(&welcomed);
    int64_t failures;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      if (welcomed) {
        if (absl::Now() - start >= kStableSession) backoff.Reset();
      } else {
        ++failed_attempts_;
      }
      failures = failed_attempts_;
    }
    absl::Duration delay = backoff.Next();
    int running, held;
    {
      absl::MutexLock lock(&mu_);
      last_backoff_ = delay;
      state_value_ = State::kBackingOff;
      running = running_;
      held = static_cast<int>(tasks_.size());
    }
    std::string error = OneLine(s.message());
    if (welcomed) {
      Log(absl::StrCat("stream to scheduler ", scheduler_target_, " broke: ", error, "; ",
                       held > 0 ? absl::StrCat(held, " task", held == 1 ? " is" : "s are",
                                               " kept (", running, " running); ")
                                : "",
                       "reconnecting in ", Seconds(delay)));
    } else if (error != last_error || (failures & (failures - 1)) == 0 || failures % 20 == 0) {
      // Same error again: logged on attempts 1, 2, 4, 8, ... and every 20th.
      Log(absl::StrCat(error, "; retrying in ", Seconds(delay), " (attempt ", failures, ")"));
    }
    last_error = welcomed ? "" : error;
    absl::MutexLock lock(&mu_);
    auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop), delay);
    if (stopping_) break;
  }
  absl::MutexLock lock(&mu_);
  connection_done_ = true;
}

absl::Status Agent::RunSession(bool* welcomed) {
  std::shared_ptr<grpc::ChannelInterface> channel =
      options_.scheduler_channel != nullptr ? options_.scheduler_channel
                                            : NewChannel(scheduler_target_, options_, true);
  RETURN_IF_ERROR(
      common::Annotate(WaitConnected(channel.get(), options_.connect_timeout),
                       absl::StrCat("scheduler ", scheduler_target_, " is unreachable")));
  auto stub = farm::v1::WorkerHub::NewStub(channel);
  grpc::ClientContext ctx;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::CancelledError("shutting down");
    session_ctx_ = &ctx;
    session_ending_ = false;
  }
  std::unique_ptr<Stream> stream = stub->Connect(&ctx);
  WorkerMessage hello = MakeHello();
  int held = hello.hello().running_size();
  int chains = hello.hello().chain_ids_size();

  // The Welcome must come within welcome_timeout; a watchdog cuts the stream otherwise.
  absl::Notification answered;
  std::atomic<bool> watchdog_fired{false};
  std::thread watchdog([&] {
    if (!answered.WaitForNotificationWithTimeout(options_.welcome_timeout)) {
      watchdog_fired = true;
      ctx.TryCancel();
    }
  });
  auto end = [&](absl::Status why) -> absl::Status {
    ctx.TryCancel();
    if (!answered.HasBeenNotified()) answered.Notify();
    watchdog.join();
    absl::Status finished = common::FromGrpcStatus(stream->Finish());
    absl::MutexLock lock(&mu_);
    session_ctx_ = nullptr;
    connected_ = false;
    return why.ok() ? finished : why;
  };

  SchedulerMessage first;
  if (!stream->Write(hello) || !stream->Read(&first)) {
    answered.Notify();
    watchdog.join();
    grpc::Status finished = stream->Finish();
    {
      absl::MutexLock lock(&mu_);
      session_ctx_ = nullptr;
    }
    absl::Status s = common::FromGrpcStatus(finished);
    if (watchdog_fired) {
      s = absl::DeadlineExceededError(
          absl::StrCat("no Welcome within ", Seconds(options_.welcome_timeout)));
    }
    if (s.ok()) s = absl::UnavailableError("the scheduler closed the stream before Welcome");
    return common::Annotate(s, absl::StrCat("scheduler ", scheduler_target_));
  }
  answered.Notify();
  if (!first.has_welcome()) {
    return common::Annotate(end(absl::FailedPreconditionError("the first message was not Welcome")),
                            absl::StrCat("scheduler ", scheduler_target_));
  }
  const farm::v1::Welcome& welcome = first.welcome();
  absl::Duration interval = welcome.heartbeat_interval_millis() > 0
                                ? absl::Milliseconds(welcome.heartbeat_interval_millis())
                                : options_.default_heartbeat_interval;
  interval = std::clamp(interval, kMinHeartbeat, kMaxHeartbeat);
  int buffered_results, buffered_logs;
  {
    absl::MutexLock lock(&mu_);
    *welcomed = true;
    connected_ = true;
    state_value_ = State::kConnected;
    scheduler_id_ = welcome.scheduler_id();
    heartbeat_interval_ = interval;
    next_heartbeat_ = absl::Now() + interval;
    ++sessions_;
    failed_attempts_ = 0;
    buffered_results = 0;
    for (const Outgoing& o : outbox_) buffered_results += o.msg.has_result() ? 1 : 0;
    buffered_logs = static_cast<int>(outbox_.size()) - buffered_results;
  }
  std::string extra;
  if (held > 0) absl::StrAppend(&extra, "; holding ", held, " task", held == 1 ? "" : "s");
  if (buffered_results > 0 || buffered_logs > 0) {
    absl::StrAppend(&extra, "; sending ", buffered_results, " buffered result",
                    buffered_results == 1 ? "" : "s", " and ", buffered_logs, " log line",
                    buffered_logs == 1 ? "" : "s");
  }
  Log(absl::StrCat(
      "connected to scheduler ", scheduler_target_,
      welcome.scheduler_id().empty() ? "" : absl::StrCat(" (", welcome.scheduler_id(), ")"),
      ": heartbeat every ", Seconds(interval), ", lease timeout ",
      Seconds(absl::Milliseconds(welcome.lease_timeout_millis())), ", ", chains, " layer chain",
      chains == 1 ? "" : "s", " reported", extra));

  std::thread writer([&] { WriterLoop(stream.get(), &ctx); });
  SchedulerMessage msg;
  while (stream->Read(&msg)) {
    switch (msg.msg_case()) {
      case SchedulerMessage::kTask:
        OnTask(msg.mutable_task());
        break;
      case SchedulerMessage::kCancel:
        OnCancel(msg.cancel());
        break;
      case SchedulerMessage::kWelcome:
        break;  // nothing new to learn mid-stream
      default:
        Log("ignoring an unknown message from the scheduler (a newer protocol?)");
        break;
    }
    msg.Clear();
  }
  {
    absl::MutexLock lock(&mu_);
    connected_ = false;
    session_ending_ = true;
  }
  ctx.TryCancel();
  writer.join();
  watchdog.join();
  absl::Status finished = common::FromGrpcStatus(stream->Finish());
  absl::MutexLock lock(&mu_);
  session_ctx_ = nullptr;
  if (finished.ok() || (stopping_ && finished.code() == absl::StatusCode::kCancelled)) {
    return absl::UnavailableError("the scheduler ended the stream");
  }
  return finished;
}

void Agent::WriterLoop(Stream* stream, grpc::ClientContext* ctx) {
  while (true) {
    WorkerMessage msg;
    bool heartbeat = false, close = false;
    Outgoing out;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return session_ending_ || !outbox_.empty() || draining_ || absl::Now() >= next_heartbeat_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&ready), next_heartbeat_);
      if (session_ending_) return;
      if (absl::Now() >= next_heartbeat_) {
        heartbeat = true;  // before queued messages: a flood of output must not starve it
        next_heartbeat_ = absl::Now() + heartbeat_interval_;
      } else if (!outbox_.empty()) {
        out = std::move(outbox_.front());
        outbox_.pop_front();
        outbox_log_bytes_ -= out.log_bytes;
      } else if (draining_) {
        close = true;
      } else {
        continue;
      }
    }
    if (close) {
      stream->WritesDone();
      // The scheduler ends the call in turn; the reader sees it. Wait for that.
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(&session_ending_));
      return;
    }
    bool ok;
    if (heartbeat) {
      ok = stream->Write(MakeHeartbeat());
      if (ok) {
        absl::Status saved = chains_->Save();
        if (!saved.ok()) Log(std::string(saved.message()));
      }
    } else {
      ok = stream->Write(out.msg);
      if (!ok) {
        // Not sent: keep it for the next stream.
        absl::MutexLock lock(&mu_);
        outbox_log_bytes_ += out.log_bytes;
        outbox_.push_front(std::move(out));
      }
    }
    if (!ok) {
      ctx->TryCancel();  // the reader sees the end and reports it
      return;
    }
  }
}

absl::flat_hash_set<std::string> Agent::PresentLayers() {
  absl::flat_hash_set<std::string> present;
  for (const common::Digest& d : executor_->layer_store()->List()) present.insert(d.OciString());
  return present;
}

WorkerMessage Agent::MakeHello() {
  WorkerMessage m;
  farm::v1::WorkerHello* h = m.mutable_hello();
  h->set_worker_id(worker_id());
  h->set_slots(options_.slots);
  h->set_platform(platform_);
  for (const auto& [k, v] : options_.labels) (*h->mutable_labels())[k] = v;
  h->set_version(absl::StrCat("farm-worker ", options_.version));
  for (std::string& c : chains_->Reset(PresentLayers(), options_.max_chain_ids)) {
    h->add_chain_ids(std::move(c));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [id, t] : tasks_) {
    farm::v1::RunningTask* r = h->add_running();
    r->set_task_id(id);
    r->set_lease_id(t->lease_id);
    r->set_key(t->request.key());
  }
  // Finished while disconnected: still ours until the result is delivered after Welcome.
  for (const Outgoing& o : outbox_) {
    if (!o.msg.has_result()) continue;
    farm::v1::RunningTask* r = h->add_running();
    r->set_task_id(o.msg.result().task_id());
    r->set_lease_id(o.msg.result().lease_id());
  }
  return m;
}

WorkerMessage Agent::MakeHeartbeat() {
  WorkerMessage m;
  farm::v1::Heartbeat* hb = m.mutable_heartbeat();
  ChainIndex::Delta d = chains_->Diff(PresentLayers());
  for (std::string& c : d.added) hb->add_chain_ids_added(std::move(c));
  for (std::string& c : d.removed) hb->add_chain_ids_removed(std::move(c));
  absl::MutexLock lock(&mu_);
  for (const auto& [id, t] : tasks_) {
    farm::v1::RunningTask* r = hb->add_running();
    r->set_task_id(id);
    r->set_lease_id(t->lease_id);
    r->set_key(t->request.key());
  }
  return m;
}

// ---------------------------------------------------------------------------------------
// Tasks

void Agent::OnTask(farm::v1::Task* task) {
  if (task->task_id().empty()) {
    Log("ignoring a task without a task_id");
    return;
  }
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(task->task_id());
    if (it != tasks_.end()) {
      TaskState* t = it->second.get();
      if (t->lease_id != task->lease_id()) {
        line = absl::StrCat("task ", task->task_id(), " (already held under lease ", t->lease_id,
                            ") continues under lease ", task->lease_id(), ", attempt ",
                            task->attempt());
        t->lease_id = task->lease_id();
        t->attempt = task->attempt();
      }
    } else if (stopping_) {
      farm::v1::TaskResult r;
      r.set_task_id(task->task_id());
      r.set_lease_id(task->lease_id());
      r.set_status_code(static_cast<int>(absl::StatusCode::kUnavailable));
      r.set_status_message(absl::StrCat("worker ", worker_id(), " is shutting down"));
      EnqueueResultLocked(std::move(r));
    } else {
      auto t = std::make_shared<TaskState>();
      t->task_id = task->task_id();
      t->lease_id = task->lease_id();
      t->attempt = task->attempt();
      t->request = std::move(*task->mutable_request());
      if (!task->secrets().empty()) {
        t->secrets = std::make_shared<TaskSecrets>(task->mutable_secrets());
      }
      tasks_[t->task_id] = t;
      queue_.push_back(std::move(t));
      if (running_ >= options_.slots) {
        line = absl::StrCat("task ", task->task_id(), " queued: all ", options_.slots,
                            " slots are busy");
      }
    }
  }
  if (!line.empty()) Log(line);
}

void Agent::OnCancel(const farm::v1::CancelTask& cancel) {
  std::string reason = cancel.reason().empty() ? "cancelled by the scheduler"
                                               : absl::StrCat("cancelled: ", cancel.reason());
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(cancel.task_id());
    if (it == tasks_.end()) {
      line = absl::StrCat("cancel for task ", cancel.task_id(), ", which is not here: ignored");
    } else if (!cancel.lease_id().empty() && cancel.lease_id() != it->second->lease_id) {
      line = absl::StrCat("cancel for task ", cancel.task_id(), " under lease ", cancel.lease_id(),
                          " (it runs under ", it->second->lease_id, "): ignored");
    } else {
      std::shared_ptr<TaskState> t = it->second;
      auto queued = std::find(queue_.begin(), queue_.end(), t);
      if (queued != queue_.end()) {
        CancelQueuedLocked(t, reason);
        line = absl::StrCat("task ", t->task_id, " ", reason, " before it started");
      } else if (!t->cancel.HasBeenNotified()) {
        t->cancel_reason = reason;
        t->cancel.Notify();
        line = absl::StrCat("task ", t->task_id, " ", reason, ": killing the step");
      }
    }
  }
  if (!line.empty()) Log(line);
}

void Agent::CancelQueuedLocked(const std::shared_ptr<TaskState>& t, const std::string& reason) {
  queue_.erase(std::remove(queue_.begin(), queue_.end(), t), queue_.end());
  tasks_.erase(t->task_id);
  if (!t->cancel.HasBeenNotified()) t->cancel.Notify();
  farm::v1::TaskResult r;
  r.set_task_id(t->task_id);
  r.set_lease_id(t->lease_id);
  r.set_status_code(static_cast<int>(absl::StatusCode::kCancelled));
  r.set_status_message(reason);
  ++tasks_done_;
  EnqueueResultLocked(std::move(r));
}

void Agent::PoolLoop() {
  while (true) {
    std::shared_ptr<TaskState> t;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; };
      mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping
      t = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    RunTask(t);
  }
}

void Agent::RunTask(const std::shared_ptr<TaskState>& t) {
  const farm::v1::StepRequest& req = t->request;
  std::string what = req.description().empty() ? req.key() : req.description();
  {
    std::string lease;
    int attempt;
    {
      absl::MutexLock lock(&mu_);
      lease = t->lease_id;
      attempt = t->attempt;
    }
    Log(absl::StrCat("task ", t->task_id, " (lease ", lease, ", attempt ", attempt,
                     ") started: ", what));
  }
  LocalStepExecutor::CallOptions call;
  call.secrets = t->secrets;
  absl::Time start = absl::Now();
  absl::StatusOr<farm::v1::StepResult> result = executor_->Execute(
      req,
      [this, task = t.get()](absl::string_view line, bool is_stderr) {
        absl::MutexLock lock(&mu_);
        EnqueueLogLocked(task, line, is_stderr);
      },
      &t->cancel, call);
  absl::Duration took = absl::Now() - start;
  t->secrets.reset();  // wipes them

  // Locality: the stacks this worker now holds.
  std::vector<common::Digest> stack;
  bool parsed = true;
  for (const farm::v1::Layer& l : req.parents()) {
    auto d = common::Digest::ParseOci(l.diff_id(), l.uncompressed_size());
    if (!d.ok()) {
      parsed = false;
      break;
    }
    stack.push_back(*d);
  }
  if (parsed && result.ok() && result->has_layer()) {
    auto d = common::Digest::ParseOci(result->layer().diff_id(), 0);
    if (d.ok()) stack.push_back(*d);
  }
  if (parsed && !stack.empty()) chains_->Record(stack);

  farm::v1::TaskResult r;
  r.set_task_id(t->task_id);
  r.set_run_micros(absl::ToInt64Microseconds(took));
  std::string outcome;
  {
    absl::MutexLock lock(&mu_);
    absl::Status s = result.status();
    if (absl::IsCancelled(s) && !t->cancel_reason.empty()) {
      s = absl::CancelledError(absl::StrCat(t->cancel_reason, " (", s.message(), ")"));
    }
    r.set_lease_id(t->lease_id);
    r.set_status_code(static_cast<int>(s.code()));
    if (!s.ok()) {
      r.set_status_message(std::string(s.message()));
      outcome = absl::IsCancelled(s)
                    ? absl::StrCat("cancelled after ", Seconds(took))
                    : absl::StrCat("error after ", Seconds(took), ": ", OneLine(s.message()));
    } else {
      *r.mutable_result() = *std::move(result);
      const farm::v1::StepResult& sr = r.result();
      outcome =
          absl::StrCat(sr.exit_code() == 0 ? "done" : "failed", " in ", Seconds(took), ": exit ",
                       sr.exit_code(), sr.timed_out() ? " (timed out)" : "",
                       sr.has_layer() ? absl::StrCat(", layer ", Short(sr.layer().digest()), " (",
                                                     common::HumanSize(sr.layer().size()), ")")
                                      : ", no layer");
    }
    auto it = tasks_.find(t->task_id);
    if (it != tasks_.end() && it->second == t) tasks_.erase(it);
    --running_;
    ++tasks_done_;
    EnqueueResultLocked(std::move(r));
  }
  Log(absl::StrCat("task ", t->task_id, " ", outcome));
}

namespace {

WorkerMessage LogMessage(const std::string& task_id, const std::string& lease_id,
                         absl::string_view line, bool is_stderr) {
  WorkerMessage m;
  farm::v1::TaskLog* l = m.mutable_log();
  l->set_task_id(task_id);
  l->set_lease_id(lease_id);
  l->set_stderr(is_stderr);
  l->set_line(std::string(line));
  return m;
}

std::string DroppedNotice(int64_t n) {
  return absl::StrCat("farm-worker: ", n, " line", n == 1 ? "" : "s",
                      " of output dropped here (the scheduler was unreachable or too slow)");
}

}  // namespace

void Agent::EnqueueLogLocked(TaskState* t, absl::string_view line, bool is_stderr) {
  constexpr int64_t kOverhead = 64;  // ids and framing, roughly
  int64_t cost = static_cast<int64_t>(line.size()) + kOverhead;
  if (outbox_log_bytes_ + cost > options_.max_buffered_log_bytes) {
    ++dropped_lines_[t->task_id];
    ++log_lines_dropped_;
    return;
  }
  auto dropped = dropped_lines_.find(t->task_id);
  if (dropped != dropped_lines_.end()) {
    std::string notice = DroppedNotice(dropped->second);
    Outgoing o{LogMessage(t->task_id, t->lease_id, notice, true),
               static_cast<int64_t>(notice.size()) + kOverhead};
    outbox_log_bytes_ += o.log_bytes;
    outbox_.push_back(std::move(o));
    dropped_lines_.erase(dropped);
  }
  outbox_log_bytes_ += cost;
  outbox_.push_back(Outgoing{LogMessage(t->task_id, t->lease_id, line, is_stderr), cost});
}

void Agent::EnqueueResultLocked(farm::v1::TaskResult result) {
  auto dropped = dropped_lines_.find(result.task_id());
  if (dropped != dropped_lines_.end()) {
    // The last word on its output, even over the budget.
    outbox_.push_back(Outgoing{
        LogMessage(result.task_id(), result.lease_id(), DroppedNotice(dropped->second), true), 0});
    dropped_lines_.erase(dropped);
  }
  Outgoing o;
  *o.msg.mutable_result() = std::move(result);
  outbox_.push_back(std::move(o));
}

}  // namespace farm::worker::agent
