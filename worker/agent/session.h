// Session: farm-worker's connection to farm-scheduler's WorkerHub (protos/farm/v1/scheduler.proto),
// kept up for as long as the worker runs. One stream at a time:
//   worker → WorkerHello (the delegate fills it; the session adds the tasks whose results
//            still wait in its outbox), then, once welcomed, a Heartbeat every interval (the
//            delegate fills it) and the outbox's messages in order;
//   scheduler → Welcome (within welcome_timeout, or the attempt fails), then Tasks and
//            CancelTasks, handed to the delegate.
// When the stream cannot be opened or breaks, the session waits (exponential backoff, reset
// after a session that held for 10 s) and tries again, forever, until Stop. Every state change
// is one log line; the same error again is logged on attempts 1, 2, 4, 8, ... and every 20th.
//
// The outbox (outbox.h) outlives streams: what could not be sent goes first on the next one,
// right after the Welcome.
//
//   Session::Options o;
//   o.target = "10.0.0.1:7070";
//   Session session(std::move(o), &delegate);
//   session.Start();
//   session.EnqueueResult(result);               // from any thread
//   ...
//   session.Stop(held_tasks);                    // no new attempts; says "draining" if welcomed
//   session.EnqueueResult(cancelled);            // still sent, after the draining heartbeat
//   session.Drain(deadline);                     // closes the stream once the outbox is empty
//
// Thread-safe. It calls the delegate without holding its own lock, and the delegate may call
// Enqueue*; farm-worker's lock order is: task runner, then session.
#ifndef FARM_WORKER_AGENT_SESSION_H_
#define FARM_WORKER_AGENT_SESSION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/backoff.h"
#include "farm/v1/scheduler.pb.h"
#include "worker/agent/outbox.h"

namespace grpc {
class ChannelCredentials;
class ChannelInterface;
class ClientContext;
template <class W, class R>
class ClientReaderWriter;
}  // namespace grpc

namespace farm::worker::agent {

class Session {
 public:
  // What the session needs from the worker. Called from the session's threads, never with the
  // session's lock held.
  class Delegate {
   public:
    virtual ~Delegate() = default;
    // Before each attempt: OK to dial, or why not now (e.g. farm-cache is unreachable; then
    // the attempt fails with that error). `stopping` turns true when the session is stopped.
    virtual absl::Status BeforeConnect(const std::function<bool()>& stopping) = 0;
    // The hello's content: identity, capacity, chain IDs and the tasks held.
    virtual void FillHello(farm::v1::WorkerHello* hello) = 0;
    // A heartbeat's content: chain ID changes and the tasks held.
    virtual void FillHeartbeat(farm::v1::Heartbeat* heartbeat) = 0;
    // A heartbeat was written to the stream (what it reported counts as delivered).
    virtual void HeartbeatSent() = 0;
    virtual void OnTask(farm::v1::Task* task) = 0;
    virtual void OnCancel(const farm::v1::CancelTask& cancel) = 0;
    // For the line logged when a stream breaks: tasks held, and how many of them run.
    struct Held {
      int held = 0;
      int running = 0;
    };
    virtual Held HeldTasks() = 0;
  };

  struct Options {
    // The scheduler: a gRPC target (see ParsePeerAddress), dialed per attempt.
    std::string target;
    // For tests: used for every attempt instead of dialing `target`.
    std::shared_ptr<grpc::ChannelInterface> channel;
    // TLS and the worker's certificate for `target`; null = plaintext.
    std::shared_ptr<grpc::ChannelCredentials> credentials;
    common::Backoff::Options reconnect;
    absl::Duration connect_timeout = absl::Seconds(10);
    absl::Duration welcome_timeout = absl::Seconds(30);
    absl::Duration default_heartbeat_interval = absl::Seconds(5);
    absl::Duration keepalive_time = absl::Minutes(5) + absl::Seconds(10);
    absl::Duration keepalive_timeout = absl::Seconds(20);
    int64_t max_buffered_log_bytes = 8 << 20;
    // One line per state change, without a newline.
    std::function<void(const std::string&)> log;
  };

  enum class State {
    kIdle,        // created, not started
    kConnecting,  // dialing, or waiting for Welcome
    kConnected,   // welcomed: receiving tasks
    kBackingOff,  // waiting before the next attempt
    kStopping,
    kStopped,
  };
  struct Status {
    State state = State::kIdle;
    std::string scheduler_id;     // from the last Welcome
    int64_t sessions = 0;         // Welcomes received
    int64_t failed_attempts = 0;  // consecutive attempts that did not reach Welcome
    absl::Duration last_backoff;  // the last delay before reconnecting
    int unsent_results = 0;       // results waiting in the outbox
    int64_t log_lines_dropped = 0;
  };

  // `delegate` is not owned and must outlive the session.
  Session(Options options, Delegate* delegate);
  ~Session();  // Stop and Drain(now) if still running

  // Starts the connection thread. Once.
  void Start();

  // Queue a task's output line / result / any message for the scheduler (outbox.h).
  void EnqueueLog(const std::string& task_id, const std::string& lease_id, absl::string_view line,
                  bool is_stderr);
  void EnqueueResult(farm::v1::TaskResult result);

  // Makes no new attempt after this one. If welcomed, queues a heartbeat with draining set
  // listing `held`, so the scheduler sends nothing more and runs elsewhere what is reported
  // cancelled after it; if not, stops dialing or waiting for the Welcome at once.
  void Stop(const std::vector<farm::v1::RunningTask>& held);
  // After Stop: lets the writer send what is queued and then close the stream; cuts the stream
  // at `deadline` if that has not happened; returns once the connection thread has ended.
  void Drain(absl::Time deadline);
  // After Drain: the state reads kStopped.
  void MarkStopped();

  Status GetStatus();

 private:
  using Stream = grpc::ClientReaderWriter<farm::v1::WorkerMessage, farm::v1::SchedulerMessage>;

  void Log(const std::string& line) {
    if (options_.log) options_.log(line);
  }
  bool stopping();
  void ConnectionLoop();
  absl::Status RunSession(bool* welcomed);
  void WriterLoop(Stream* stream, grpc::ClientContext* ctx);
  farm::v1::WorkerMessage MakeHello();

  const Options options_;
  Delegate* const delegate_;

  absl::Mutex mu_;
  Outbox outbox_ ABSL_GUARDED_BY(mu_);
  State state_ ABSL_GUARDED_BY(mu_) = State::kIdle;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;       // welcomed, stream up
  bool session_ending_ ABSL_GUARDED_BY(mu_) = false;  // the writer must stop
  grpc::ClientContext* session_ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_);
  absl::Time next_heartbeat_ ABSL_GUARDED_BY(mu_);
  std::string scheduler_id_ ABSL_GUARDED_BY(mu_);
  int64_t sessions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Duration last_backoff_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // Stop called
  bool draining_ ABSL_GUARDED_BY(mu_) = false;  // close the stream once the outbox is sent
  bool connection_done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread connection_thread_;
};

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_SESSION_H_
