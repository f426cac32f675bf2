// Dispatcher: farm-scheduler's step scheduling core. The build engine hands it every cache
// miss (through RemoteStepExecutor); it queues the step as a task, places it on a connected
// farm-worker (which holds a WorkerHub stream open to the scheduler), and returns the worker's
// result.
//
// - In-flight dedup: a task is identified by the step's cache key. A Run for a key that is
//   already queued or running joins that task: one dispatch, every caller gets the result and
//   the log lines from when it joined on. A higher-priority joiner raises the task's priority.
// - Queue: bounded (`max_queued_tasks`, then RESOURCE_EXHAUSTED). Per platform, the next task
//   comes from the tenant with the fewest running tasks relative to its weight, then the one
//   that got the least service (weighted virtual time; fair_queue.h), so a tenant with one task
//   is served before most of another tenant's thousand. Within a tenant: a task requeued after
//   a lost lease first, then the highest priority, then first come first served.
// - Placement: a free slot on a connected worker of the task's platform (never another
//   platform). A worker serves its native platform (WorkerHello.platform) and the platforms it
//   runs under QEMU (WorkerHello.emulated_platforms). Native first: while a connected worker
//   that is not draining runs a platform natively, that platform's tasks wait for native
//   workers; emulating workers get them only when there is none (and when the last one
//   leaves or drains, the queued ones go to them). A freed slot serves the worker's native
//   platform's queue before its emulated ones. Among free workers the one holding the longest
//   prefix of the task's parent layer chain (OCI chain IDs the worker reports) wins. If busy
//   workers hold a longer prefix, the task is parked on them (delay scheduling) and takes the first
//   slot one of them frees, for at most `locality_wait`; meanwhile other tasks take the free slots,
//   and then it goes back to its place in the queue and to any free worker. A worker never has more
//   tasks parked on it than it has slots, so idle workers are not left idle for tasks that could
//   not all have had the warm one anyway.
// - Leases: each dispatch is a lease (lease_id, attempt). A worker keeps a lease alive by
//   listing the task in its heartbeats (Heartbeat.running) or by sending its logs or result; a
//   lease not renewed for `lease_timeout` is lost: a silent worker loses all of its leases, a
//   dropped stream loses them `lease_timeout` after the drop unless the worker reconnects and
//   lists them in WorkerHello.running. A lost task is requeued on another worker until
//   `max_attempts` leases were lost, then every caller gets ABORTED with the history (each
//   attempt: worker, reason). Messages for a lease that is no longer current are ignored and,
//   if the worker is connected, answered with CancelTask.
// - After a reconnect, leases the worker does not list in WorkerHello.running stay valid until
//   its first heartbeat, so results it sends right after the hello (tasks that finished while
//   it was disconnected) are accepted; those still unlisted at that heartbeat are requeued.
// - Durability (`state_dir`): tasks and leases are kept in RocksDB, without secrets. After a
//   restart every persisted task waits for its build to come back: a Run with the same key
//   claims it, keeping its place in the queue (queued) or its lease (running: when the worker
//   reconnects listing it, it is adopted, not run again; a worker that does not come back
//   within `lease_timeout` loses it). A result that arrives before the Run is kept for it.
//   Tasks nobody claims within `restart_grace` are dropped (and canceled on their worker).
// - Cancellation: a caller that cancels gets CANCELLED at once; when the last caller of a task
//   leaves, a queued task is dropped and a running one is canceled on its worker (CancelTask;
//   its slot stays taken until the worker confirms).
// - Errors: a worker's error status is returned as is; a failed command is an OK StepResult
//   with exit_code != 0.
//
// Threads: Run blocks its caller; everything else is event-driven (the WorkerHub service's
// gRPC reactions, one timer thread on the injected clock, one thread watching callers'
// cancel notifications). Log sinks and completion callbacks are called without the
// dispatcher's lock held, never after the caller's Run returned.
//
//   scheduler::dispatch::Options o;
//   o.state_dir = "/var/lib/farm-scheduler/dispatch";
//   ASSIGN_OR_RETURN(std::unique_ptr<scheduler::dispatch::Dispatcher> d,
//   scheduler::dispatch::Dispatcher::Create(o)); grpc::ServerBuilder b;
//   b.RegisterService(d->service());            // farm.v1.WorkerHub
//   b.RegisterService(&scheduler_service);      // farm.v1.Scheduler, same server
//   auto server = b.BuildAndStart();
//   ...
//   scheduler::dispatch::TaskSpec spec;  spec.key = request.key();  spec.request = request;  ...
//   ASSIGN_OR_RETURN(farm::v1::StepResult r, d->Run(spec, log_sink, &cancel));
//   ...
//   d->Shutdown();  server->Shutdown();  server.reset();  d.reset();
#ifndef FARM_SCHEDULER_DISPATCH_DISPATCHER_H_
#define FARM_SCHEDULER_DISPATCH_DISPATCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "auth/secret_key.h"
#include "executor/step_executor.h"
#include "farm/v1/scheduler.pb.h"
#include "farm/v1/step.pb.h"
#include "scheduler/dispatch/clock.h"
#include "scheduler/dispatch/worker_stream.h"

namespace grpc {
class Service;
}

namespace grpc {
class CallbackServerContext;
}  // namespace grpc

namespace farm::scheduler::dispatch {

struct Options {
  // Directory of the RocksDB database holding tasks and leases (created if missing). Empty:
  // nothing is persisted and a restart forgets the queue.
  std::string state_dir;
  // Signs lease ids: a lease id is a random nonce with an HMAC over (worker id, task key,
  // nonce), so it cannot be guessed or forged, names the worker it was issued to, and can be
  // checked after a restart even if its record was lost. Null: the key in
  // `state_dir`/lease.key (created once), or an in-memory one without a state_dir.
  std::shared_ptr<const auth::SecretKey> lease_key;
  // fsync every committed batch (a machine crash then loses nothing committed; a process
  // crash loses at most the batch in flight either way).
  bool sync_writes = false;
  // Time source for leases, waits and timestamps; nullptr = Clock::Real(). Must outlive the
  // dispatcher.
  Clock* clock = nullptr;
  // Sent to workers in Welcome: how often to heartbeat, and after how long without a word a
  // worker's leases are lost.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  absl::Duration lease_timeout = absl::Seconds(30);
  // Leases a task may lose before it fails with ABORTED (>= 1).
  int max_attempts = 3;
  // Tasks waiting for a worker (not counting running ones and joins of existing tasks).
  int max_queued_tasks = 100000;
  // How long a task may wait for a busy worker that holds more of its parent layers while
  // another worker of its platform is free; 0 turns locality waiting off (free workers are
  // still ranked by locality).
  absl::Duration locality_wait = absl::Milliseconds(500);
  // Tasks parked for locality at once, per platform (beyond: placed at once).
  int max_locality_holds = 1000;
  // Fair-share weight per tenant (> 0); tenants not listed weigh 1.
  std::map<std::string, double> tenant_weights;
  // After a restart, how long persisted tasks wait for their build to ask for them again.
  absl::Duration restart_grace = absl::Minutes(10);
  // A disconnected worker without leases is dropped from Workers() after this long.
  absl::Duration forget_workers_after = absl::Hours(1);
  // How often callers' cancel notifications are checked (cancel latency bound).
  absl::Duration cancel_poll_interval = absl::Milliseconds(20);
  // Chain IDs remembered per worker (a summary for locality; the rest is ignored).
  int max_chain_ids_per_worker = 65536;
  // Who is calling WorkerHub.Connect: the worker id its verified client certificate names
  // (auth::ServerAuth; the id then comes from the certificate, whatever the hello says), an
  // error to refuse the stream with, or "" to take the hello's id (authentication off). Null:
  // always the hello's.
  std::function<absl::StatusOr<std::string>(const grpc::CallbackServerContext&)> worker_identity;
  // The bound on messages waiting to be written to one worker (farm-scheduler
  // --max-worker-send-queue, --max-worker-send-queue-messages): a worker that stops reading
  // past it loses its stream with RESOURCE_EXHAUSTED (worker_hub_service.h). <= 0: no bound.
  int64_t max_send_queue_bytes = int64_t{64} << 20;
  int64_t max_send_queue_messages = 16384;
  // Welcome.scheduler_id; empty = a random id per start.
  std::string scheduler_id;
  // Receives one line per notable event (worker joined/left, lease lost, task aborted, state
  // restored, persistence errors). May be called with internal locks held: must not call
  // back into the dispatcher. nullptr = silent.
  std::function<void(absl::string_view)> event_log;
  // Told of every lease granted: the task's platform and how long it waited in the queue
  // since it (last) entered it (farm-scheduler's dispatch latency histogram). Called with the
  // dispatcher's lock held: must be quick, must not block or call back into the dispatcher.
  // nullptr = nothing.
  std::function<void(const std::string& platform, absl::Duration queue_wait)> on_dispatch;
};

// One step to run, as the build engine wants it.
struct TaskSpec {
  std::string key;  // the step's cache key (dedup); "" = request.key()
  farm::v1::StepRequest request;
  std::string build_id;  // for listings and the event log
  std::string tenant;    // fair-share unit; "" is a tenant like any other
  int32_t priority = 0;  // higher first within the tenant's share
  std::string platform;  // "" = request.env().platform(), then "linux/amd64"
  // The secrets this step mounts, by id. Held in memory only (sent with the Task, never
  // persisted).
  std::map<std::string, std::string> secrets;
  std::string cache_instance;  // the farm-cache instance (action-cache scope) the worker uses
  // OCI chain IDs of the step's parent stack, bottom to top: [ChainID(L0), ChainID(L0,L1), ...]
  // (RemoteStepExecutor computes them from request.parents()).
  std::vector<std::string> parent_chain_ids;
};

// Counters for metrics and `farm workers`.
struct DispatchStats {
  int64_t queued = 0;   // waiting for a worker (including restored tasks not yet claimed)
  int64_t running = 0;  // leased to a worker
  int64_t waiters = 0;  // Run/Submit callers waiting
  int64_t workers_connected = 0;
  int64_t slots_total = 0;  // of connected workers
  int64_t slots_busy = 0;
  // Totals since start.
  int64_t submitted = 0;          // tasks created
  int64_t deduplicated = 0;       // callers that joined an existing task
  int64_t dispatched = 0;         // leases granted
  int64_t completed = 0;          // results accepted
  int64_t requeued = 0;           // leases lost, task queued again
  int64_t aborted = 0;            // tasks that lost max_attempts leases
  int64_t canceled = 0;           // tasks dropped because every caller left
  int64_t rejected = 0;           // RESOURCE_EXHAUSTED
  int64_t adopted = 0;            // running tasks taken over from a reconnecting worker
  int64_t late_messages = 0;      // logs/results for leases that were not current
  int64_t restored = 0;           // tasks read back from state_dir at start
  int64_t queue_wait_micros = 0;  // summed time from queued to dispatched
  int64_t persist_errors = 0;
};

// Tasks waiting for a worker, per platform and tenant (metrics).
struct QueueSummary {
  std::string platform;
  std::string tenant;
  int64_t queued = 0;
  absl::Time oldest_queued_at;  // when the longest-waiting of them (last) entered the queue
};

class Dispatcher {
 public:
  // Called once with the task's final answer, without locks held, from a dispatcher or gRPC
  // thread: must not block for long.
  using DoneCallback = std::function<void(absl::StatusOr<farm::v1::StepResult>)>;

  // Opens (or creates) the state in `options.state_dir` and restores its tasks.
  // INVALID_ARGUMENT for bad options; FAILED_PRECONDITION if the state is in use or unreadable.
  static absl::StatusOr<std::unique_ptr<Dispatcher>> Create(Options options);
  // Shutdown(), then frees everything. The gRPC server serving service() must be shut down
  // first.
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // Runs `spec` on a worker and blocks until its result (see the file comment). `log` (may be
  // null) gets the task's log lines; `cancel` (may be null): when notified, returns CANCELLED
  // within about `cancel_poll_interval`. INVALID_ARGUMENT for a spec without key or op;
  // RESOURCE_EXHAUSTED when the queue is full; ABORTED after max_attempts lost leases;
  // UNAVAILABLE when the dispatcher shuts down. Thread-safe.
  absl::StatusOr<farm::v1::StepResult> Run(const TaskSpec& spec, const executor::LogSink& log,
                                           const absl::Notification* cancel);

  // The asynchronous form of Run: returns a ticket at once and calls `done` exactly once
  // (possibly before Submit returns). `log` is never called after `done`. Errors that Run
  // returns before queuing (INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE) are returned
  // here and `done` is not called. Thread-safe.
  absl::StatusOr<uint64_t> Submit(const TaskSpec& spec, executor::LogSink log, DoneCallback done);
  // The caller behind `ticket` leaves: its `done` gets CANCELLED(`reason`) unless it was
  // already called; the task is canceled if nobody else waits for it. Unknown tickets are
  // ignored.
  void Cancel(uint64_t ticket, absl::string_view reason = "canceled by the caller");

  // Known workers (connected ones, and disconnected ones still holding leases or seen within
  // `forget_workers_after`), sorted by id.
  std::vector<farm::v1::WorkerInfo> Workers() const;
  DispatchStats Stats() const;
  // The waiting tasks (queued, parked for locality, restored and not yet claimed) grouped by
  // platform and tenant, sorted by both. Walks every task under the dispatcher's lock: meant
  // for a metrics scrape every few seconds, not for a hot path.
  std::vector<QueueSummary> Queues() const;

  // farm.v1.WorkerHub on gRPC's callback API (one reactor per worker stream, no thread parked
  // per stream). Owned by the dispatcher: register it on the scheduler's grpc::ServerBuilder.
  grpc::Service* service();
  // The transport seam (what service() drives); tests may drive it directly.
  SessionHandler* sessions();

  // Fails every waiting caller with UNAVAILABLE (their tasks stay persisted for the next
  // start), closes worker streams, commits the state. Idempotent.
  void Shutdown();
  // Blocks until every state change so far is committed to state_dir (tests, clean stops).
  absl::Status FlushState();
  // The id sent in Welcome.
  const std::string& scheduler_id() const;

  class Impl;

 private:
  Dispatcher();
  std::shared_ptr<Impl> impl_;
  std::unique_ptr<grpc::Service> service_;
};

// The platform a task or worker is matched by: oci::NormalizePlatform, with "" (a step or
// worker that names none) taken as linux/amd64.
std::string NormalizePlatform(absl::string_view platform);

// Lease ids: "<nonce>.<mac>", 128 random bits and an HMAC (under the scheduler's lease key)
// binding them to the worker the lease was issued to and the task's key. A worker cannot make
// one up, use another worker's, or claim a different task with one.
std::string MakeLeaseId(const auth::SecretKey& key, absl::string_view worker_id,
                        absl::string_view task_key);
bool LeaseIdIsFor(const auth::SecretKey& key, absl::string_view lease_id,
                  absl::string_view worker_id, absl::string_view task_key);

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_DISPATCHER_H_
