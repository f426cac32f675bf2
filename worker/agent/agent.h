// Agent: what farm-worker runs. It connects *out* to farm-scheduler's WorkerHub (the worker may
// sit behind NAT; the scheduler never dials it), keeps one bidirectional stream open, runs the
// tasks it receives with a LocalStepExecutor, and moves every blob through farm-cache
// directly (parent layers and the build context in, the new layer out), never through the
// scheduler. Protocol: protos/farm/v1/scheduler.proto (service WorkerHub).
//
// The stream.
//   worker → WorkerHello (stable worker_id, slots, platform, labels, the layer stacks it holds
//            as OCI ChainIDs, and the tasks it still holds from before a reconnect)
//   scheduler → Welcome (heartbeat interval, lease timeout), then Tasks and CancelTasks
//   worker → Heartbeat every interval (its tasks, chain IDs added/removed since the last one),
//            TaskLog per output line (with the task's lease_id), TaskResult per task.
//
// Tasks. At most `slots` run at once, each on its own pool thread; more are queued here (and
// listed in heartbeats, so their leases stay alive) until a slot frees. A CancelTask notifies
// the task's cancellation: the executor kills the step's process tree and the task reports
// CANCELLED (a queued task reports CANCELLED at once). A Task for a task_id the worker already
// holds under another lease (the scheduler re-issued it after a reconnect) is not run twice:
// the running one continues under the new lease. A Task for a platform the worker did not
// announce (neither its own nor an emulated one) is refused with FAILED_PRECONDITION, whatever
// the host could run: the operator opts in to emulation. Secrets in Task.secrets reach that step
// only (LocalStepExecutor::CallOptions), are never logged, never written to disk, and their bytes
// are wiped from memory when the task ends.
//
// Reconnecting. When the scheduler (or farm-cache, checked before each connection) is
// unreachable, or the stream breaks, the agent reconnects with exponential backoff (capped,
// jittered; Options::reconnect) forever; it never exits on its own. Running tasks keep
// running meanwhile. Their output lines are buffered (up to Options::max_buffered_log_bytes;
// beyond that lines are dropped and a line saying how many replaces them), results always.
// The next WorkerHello lists every task still held, including finished ones whose result is
// buffered, so a restarted scheduler adopts them instead of running them again; the buffered
// lines and results follow right after the new Welcome. Every state change is one log line.
//
// Shutdown (SIGTERM in farm-worker): queued tasks are dropped and running ones cancelled; while
// the stream is up their results (CANCELLED, "worker ... is shutting down") are sent before the
// stream is closed. Then the agent stops.
//
// The pieces: Session (session.h: the stream, hello, heartbeats, reconnecting, with the Outbox
// of outbox.h), TaskRunner (task_runner.h: slots, queue, cancellation), ChainIndex
// (chain_index.h: the layer stacks reported), StateDir (state_dir.h). The Agent wires them to
// a LocalStepExecutor and to farm-cache, and is the Session's delegate and the TaskRunner's
// output.
//
//   worker::agent::Agent::Options o;
//   o.scheduler = "10.0.0.1:7070";
//   o.cache = "10.0.0.2:9092";
//   o.state_dir = "/var/lib/farm-worker";
//   o.slots = 4;
//   ASSIGN_OR_RETURN(std::unique_ptr<worker::agent::Agent> agent,
//                    worker::agent::Agent::Create(std::move(o)));
//   agent->Start();
//   ... wait for SIGTERM ...
//   agent->Shutdown(absl::Seconds(10));
//
// The process must be root and its main() must call worker::sandbox::RunSandboxIfRequested first
// (see worker/local_step_executor.h).
#ifndef FARM_WORKER_AGENT_AGENT_H_
#define FARM_WORKER_AGENT_AGENT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "auth/grpc_auth.h"
#include "cache/blob_store.h"
#include "common/backoff.h"
#include "farm/v1/scheduler.pb.h"
#include "worker/agent/chain_index.h"
#include "worker/agent/connect.h"
#include "worker/agent/session.h"
#include "worker/agent/state_dir.h"
#include "worker/agent/task_runner.h"
#include "worker/local_step_executor.h"
#include "worker/sandbox/cgroups.h"

namespace grpc {
class ChannelInterface;
}  // namespace grpc

namespace farm::worker::agent {

class Agent : private Session::Delegate, private TaskRunner::Output {
 public:
  struct Options {
    // Peers. `scheduler` is farm-scheduler's WorkerHub, `cache` is farm-cache; both
    // "HOST:PORT" (see ParsePeerAddress).
    std::string scheduler;
    std::string cache;
    // The instance name on CAS calls to farm-cache. Its CAS is shared by every instance, so
    // this only has to be one the server accepts (Task.cache_instance names the action-cache
    // scope, which only the scheduler writes).
    std::string cache_instance = "main";
    // TLS to both peers, and the worker certificate that identifies this worker to them
    // (auth/flags.h: --tls-ca, --tls-cert, --tls-key). With a certificate, the scheduler
    // names this worker by its CN.
    auth::ClientAuthOptions security;

    // This worker.
    std::string state_dir;  // required; one farm-worker per directory
    int slots = 1;          // tasks run at once, 1..1024
    std::map<std::string, std::string> labels;
    // Reported in WorkerHello as its native platform; "" = this host's (oci::Platform::Host()).
    // Another one runs under QEMU user emulation if binfmt_misc has it (worker/emulation.h),
    // and fails FAILED_PRECONDITION otherwise.
    std::string platform;
    // Platforms it also runs under QEMU (farm-worker --emulate; worker::ResolveEmulation),
    // announced in WorkerHello.emulated_platforms. Each must pass worker::CheckCanRun; the
    // native platform and duplicates are dropped.
    std::vector<std::string> emulated_platforms;

    // A local copy of the build-context files (blobs up to 1 MiB) read from farm-cache, at most
    // this many bytes on disk (cache::ReadThroughBlobStore in DIR/context-cache; at least
    // 32 MiB); 0 = none. Only when the agent dials farm-cache itself (not with `cas`).
    int64_t context_cache_max_bytes = 0;

    // The executor (see LocalStepExecutor::Options).
    int64_t layer_store_max_bytes = 0;  // 0 = unlimited
    sandbox::CgroupLimits limits;       // per RUN step
    SandboxPolicy policy;               // entitlements it permits, no_new_privs, pids default
    int compression_threads = 0;        // 0 = every core

    // The connection.
    common::Backoff::Options reconnect;
    absl::Duration connect_timeout = absl::Seconds(10);  // per attempt, scheduler and cache
    absl::Duration welcome_timeout = absl::Seconds(30);  // hello sent → Welcome received
    // Used when Welcome.heartbeat_interval_millis is 0.
    absl::Duration default_heartbeat_interval = absl::Seconds(5);
    // HTTP/2 keepalive on the scheduler connection. Heartbeats are data, so with keepalive on
    // gRPC also sets TCP_USER_TIMEOUT = keepalive_timeout: a scheduler host that vanished
    // without a reset is noticed within about that long after the next heartbeat. The time
    // stays above gRPC servers' default minimum ping interval (5 min) so an unconfigured
    // server never answers with GOAWAY "too many pings".
    absl::Duration keepalive_time = absl::Minutes(5) + absl::Seconds(10);
    absl::Duration keepalive_timeout = absl::Seconds(20);
    int64_t max_buffered_log_bytes = 8 << 20;  // output lines waiting to be sent
    int max_chain_ids = 4096;                  // chain IDs reported (most recently used)
    std::string version = "0.1.0";

    // Receives one line per state change (without a newline). Default: stderr, prefixed with
    // the UTC time and "farm-worker: ". Called from the agent's threads, one call at a time.
    std::function<void(const std::string&)> log;
    // Called after each step this worker ran, with its request and result (phase timings in
    // StepResult: parents_micros, run_micros, layer_micros, upload_micros), on the pool thread
    // that ran it: farm-worker's metrics. May be null.
    std::function<void(const farm::v1::StepRequest&, const absl::StatusOr<farm::v1::StepResult>&)>
        on_step_done;

    // For tests: used instead of dialing `scheduler` (the same channel for every attempt) and
    // instead of connecting to `cache` (then no reachability check is made).
    std::shared_ptr<grpc::ChannelInterface> scheduler_channel;
    std::shared_ptr<cache::BlobStore> cas;
  };

  // Validates the options, locks the state directory, reads or creates the worker id, opens
  // the layer store and the executor. Connects to nothing yet. INVALID_ARGUMENT for bad
  // options; FAILED_PRECONDITION when not root or when the state directory is in use by
  // another farm-worker (the message names its pid).
  static absl::StatusOr<std::unique_ptr<Agent>> Create(Options options);
  ~Agent() override;  // Shutdown(5s) if still running

  // Starts the pool and the connection loop in background threads; returns at once.
  void Start();
  // Stops (see the header comment): waits up to `grace` for cancelled tasks to report and the
  // stream to close, then cuts the stream. Blocks until every thread has ended. Idempotent.
  void Shutdown(absl::Duration grace);

  // kIdle (created, not started), kConnecting (dialing, or waiting for Welcome), kConnected
  // (welcomed: receiving tasks), kBackingOff (waiting before the next attempt), kStopping,
  // kStopped.
  using State = Session::State;
  struct Status {
    State state = State::kIdle;
    std::string scheduler_id;     // from the last Welcome
    int64_t sessions = 0;         // Welcomes received
    int64_t failed_attempts = 0;  // consecutive attempts that did not reach Welcome
    absl::Duration last_backoff;  // the last delay before reconnecting
    int queued = 0;               // accepted, waiting for a slot
    int running = 0;              // executing
    int unsent_results = 0;       // results waiting for the stream
    int64_t tasks_done = 0;       // results produced (any outcome)
    int64_t log_lines_dropped = 0;
  };
  Status GetStatus();

  const std::string& worker_id() const { return state_->worker_id(); }
  const std::string& platform() const { return platform_; }
  const std::vector<std::string>& emulated_platforms() const { return emulated_; }
  LocalStepExecutor* executor() { return executor_.get(); }

 private:
  // Channel credentials per peer (null: plaintext, or an injected channel/store).
  struct Credentials {
    std::shared_ptr<grpc::ChannelCredentials> scheduler;
    std::shared_ptr<grpc::ChannelCredentials> cache;
  };
  Agent(Options options, std::unique_ptr<StateDir> state, std::shared_ptr<cache::BlobStore> cas,
        std::shared_ptr<grpc::ChannelInterface> cache_channel,
        std::unique_ptr<LocalStepExecutor> executor, std::unique_ptr<ChainIndex> chains,
        std::string platform, std::vector<std::string> emulated, Credentials credentials);

  // OK if `request` is for a platform this worker announced; FAILED_PRECONDITION otherwise.
  absl::Status CheckPlatform(const farm::v1::StepRequest& request) const;
  // One line of the agent's own log (Options::log), one call at a time.
  void LogLine(const std::string& line);
  absl::flat_hash_set<std::string> PresentLayers();
  // Locality: records the layer stack a step left on this worker.
  void RecordStack(const farm::v1::StepRequest& request,
                   const absl::StatusOr<farm::v1::StepResult>& result);

  // Session::Delegate.
  absl::Status BeforeConnect(const std::function<bool()>& stopping) override;
  void FillHello(farm::v1::WorkerHello* hello) override;
  void FillHeartbeat(farm::v1::Heartbeat* heartbeat) override;
  void HeartbeatSent() override;
  void OnTask(farm::v1::Task* task) override;
  void OnCancel(const farm::v1::CancelTask& cancel) override;
  Held HeldTasks() override;

  // TaskRunner::Output: into the session's outbox.
  void Log(const std::string& task_id, const std::string& lease_id, absl::string_view line,
           bool is_stderr) override;
  void Result(farm::v1::TaskResult result) override;

  const Options options_;
  const std::unique_ptr<StateDir> state_;
  const std::shared_ptr<cache::BlobStore> cas_;
  const Credentials credentials_;
  const std::shared_ptr<grpc::ChannelInterface> cache_channel_;  // null with an injected CAS
  const std::unique_ptr<LocalStepExecutor> executor_;
  const std::unique_ptr<ChainIndex> chains_;
  const std::string platform_;
  const std::vector<std::string> emulated_;  // sorted
  absl::Mutex log_mu_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;  // Shutdown called
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  // Declared last: destroyed first (the runner's output goes to the session).
  std::unique_ptr<Session> session_;
  std::unique_ptr<TaskRunner> runner_;
};

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_AGENT_H_
