#include "worker/agent/session.h"

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/scheduler.grpc.pb.h"
#include "worker/agent/connect.h"
#include "worker/agent/log_line.h"

namespace farm::worker::agent {
namespace {

using farm::v1::SchedulerMessage;
using farm::v1::WorkerMessage;

constexpr absl::Duration kMinHeartbeat = absl::Milliseconds(10);
constexpr absl::Duration kMaxHeartbeat = absl::Minutes(10);
// A session shorter than this does not reset the backoff: a scheduler that welcomes and
// then drops every worker at once must not be hammered.
constexpr absl::Duration kStableSession = absl::Seconds(10);

}  // namespace

Session::Session(Options options, Delegate* delegate)
    : options_(std::move(options)), delegate_(delegate), outbox_(options_.max_buffered_log_bytes) {}

Session::~Session() {
  Stop({});
  Drain(absl::Now());
}

void Session::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || stopping_) return;
    started_ = true;
  }
  connection_thread_ = std::thread([this] { ConnectionLoop(); });
}

bool Session::stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void Session::EnqueueLog(const std::string& task_id, const std::string& lease_id,
                         absl::string_view line, bool is_stderr) {
  absl::MutexLock lock(&mu_);
  outbox_.AddLog(task_id, lease_id, line, is_stderr);
}

void Session::EnqueueResult(farm::v1::TaskResult result) {
  absl::MutexLock lock(&mu_);
  outbox_.AddResult(std::move(result));
}

void Session::Stop(const std::vector<farm::v1::RunningTask>& held) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  stopping_ = true;
  state_ = State::kStopping;
  if (connected_) {
    // First tell the scheduler to send nothing more and to run elsewhere what this worker
    // reports cancelled from here on (the stream keeps the order).
    WorkerMessage m;
    farm::v1::Heartbeat* hb = m.mutable_heartbeat();
    hb->set_draining(true);
    for (const farm::v1::RunningTask& r : held) *hb->add_running() = r;
    outbox_.AddMessage(std::move(m));
  } else if (session_ctx_ != nullptr) {
    // Not welcomed yet: nothing to report, stop dialing or waiting now.
    session_ctx_->TryCancel();
  }
}

void Session::Drain(absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;  // the writer closes the stream once the outbox is sent
    auto done = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return connection_done_ || !started_; };
    if (!mu_.AwaitWithDeadline(absl::Condition(&done), deadline) && session_ctx_ != nullptr) {
      session_ctx_->TryCancel();
    }
  }
  if (connection_thread_.joinable()) connection_thread_.join();
}

void Session::MarkStopped() {
  absl::MutexLock lock(&mu_);
  state_ = State::kStopped;
}

Session::Status Session::GetStatus() {
  absl::MutexLock lock(&mu_);
  Status s;
  s.state = state_;
  s.scheduler_id = scheduler_id_;
  s.sessions = sessions_;
  s.failed_attempts = failed_attempts_;
  s.last_backoff = last_backoff_;
  s.unsent_results = outbox_.results();
  s.log_lines_dropped = outbox_.lines_dropped();
  return s;
}

void Session::ConnectionLoop() {
  common::Backoff backoff(options_.reconnect);
  std::string last_error;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
      state_ = State::kConnecting;
    }
    absl::Time start = absl::Now();
    bool welcomed = false;
    absl::Status s = delegate_->BeforeConnect([this] { return stopping(); });
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
    Delegate::Held held = delegate_->HeldTasks();
    {
      absl::MutexLock lock(&mu_);
      last_backoff_ = delay;
      state_ = State::kBackingOff;
    }
    std::string error = OneLine(s.message());
    if (welcomed) {
      Log(absl::StrCat("stream to scheduler ", options_.target, " broke: ", error, "; ",
                       held.held > 0
                           ? absl::StrCat(held.held, " task", held.held == 1 ? " is" : "s are",
                                          " kept (", held.running, " running); ")
                           : "",
                       "reconnecting in ", FormatSeconds(delay)));
    } else if (error != last_error || (failures & (failures - 1)) == 0 || failures % 20 == 0) {
      // Same error again: logged on attempts 1, 2, 4, 8, ... and every 20th.
      Log(absl::StrCat(error, "; retrying in ", FormatSeconds(delay), " (attempt ", failures, ")"));
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

WorkerMessage Session::MakeHello() {
  WorkerMessage m;
  farm::v1::WorkerHello* h = m.mutable_hello();
  delegate_->FillHello(h);
  absl::flat_hash_set<std::string> listed;
  for (const farm::v1::RunningTask& r : h->running()) listed.insert(r.task_id());
  // Finished while disconnected: still ours until the result is delivered after Welcome. (A
  // task that finished after the delegate listed it is listed once.)
  absl::MutexLock lock(&mu_);
  for (farm::v1::RunningTask& r : outbox_.FinishedTasks()) {
    if (listed.insert(r.task_id()).second) *h->add_running() = std::move(r);
  }
  return m;
}

absl::Status Session::RunSession(bool* welcomed) {
  std::shared_ptr<grpc::ChannelInterface> channel =
      options_.channel != nullptr
          ? options_.channel
          : NewChannel(options_.target,
                       Keepalive{options_.keepalive_time, options_.keepalive_timeout},
                       options_.credentials);
  RETURN_IF_ERROR(common::Annotate(
      WaitConnected(channel.get(), options_.connect_timeout, [this] { return stopping(); }),
      absl::StrCat("scheduler ", options_.target, " is unreachable")));
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
          absl::StrCat("no Welcome within ", FormatSeconds(options_.welcome_timeout)));
    }
    if (s.ok()) s = absl::UnavailableError("the scheduler closed the stream before Welcome");
    return common::Annotate(s, absl::StrCat("scheduler ", options_.target));
  }
  answered.Notify();
  if (!first.has_welcome()) {
    return common::Annotate(end(absl::FailedPreconditionError("the first message was not Welcome")),
                            absl::StrCat("scheduler ", options_.target));
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
    state_ = State::kConnected;
    scheduler_id_ = welcome.scheduler_id();
    heartbeat_interval_ = interval;
    next_heartbeat_ = absl::Now() + interval;
    ++sessions_;
    failed_attempts_ = 0;
    buffered_results = outbox_.results();
    buffered_logs = outbox_.size() - buffered_results;
  }
  std::string extra;
  if (held > 0) absl::StrAppend(&extra, "; holding ", held, " task", held == 1 ? "" : "s");
  if (buffered_results > 0 || buffered_logs > 0) {
    absl::StrAppend(&extra, "; sending ", buffered_results, " buffered result",
                    buffered_results == 1 ? "" : "s", " and ", buffered_logs, " log line",
                    buffered_logs == 1 ? "" : "s");
  }
  Log(absl::StrCat(
      "connected to scheduler ", options_.target,
      welcome.scheduler_id().empty() ? "" : absl::StrCat(" (", welcome.scheduler_id(), ")"),
      ": heartbeat every ", FormatSeconds(interval), ", lease timeout ",
      FormatSeconds(absl::Milliseconds(welcome.lease_timeout_millis())), ", ", chains,
      " layer chain", chains == 1 ? "" : "s", " reported", extra));

  std::thread writer([&] { WriterLoop(stream.get(), &ctx); });
  SchedulerMessage msg;
  while (stream->Read(&msg)) {
    switch (msg.msg_case()) {
      case SchedulerMessage::kTask:
        delegate_->OnTask(msg.mutable_task());
        break;
      case SchedulerMessage::kCancel:
        delegate_->OnCancel(msg.cancel());
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

void Session::WriterLoop(Stream* stream, grpc::ClientContext* ctx) {
  while (true) {
    bool heartbeat = false, close = false;
    Outbox::Entry out;
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
        out = outbox_.Pop();
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
      WorkerMessage m;
      delegate_->FillHeartbeat(m.mutable_heartbeat());
      ok = stream->Write(m);
      if (ok) delegate_->HeartbeatSent();
    } else {
      ok = stream->Write(out.msg);
      if (!ok) {
        // Not sent: keep it for the next stream.
        absl::MutexLock lock(&mu_);
        outbox_.PutBack(std::move(out));
      }
    }
    if (!ok) {
      ctx->TryCancel();  // the reader sees the end and reports it
      return;
    }
  }
}

}  // namespace farm::worker::agent
