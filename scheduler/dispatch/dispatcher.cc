#include "scheduler/dispatch/dispatcher.h"

#include <grpcpp/impl/service_type.h>

#include <algorithm>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "dispatch_state.pb.h"
#include "oci/platform.h"
#include "scheduler/dispatch/fair_queue.h"
#include "scheduler/dispatch/state_store.h"
#include "scheduler/dispatch/worker_hub_service.h"

namespace farm::scheduler::dispatch {
namespace {

using farm::dispatch::AttemptRecord;

constexpr int kMaxSlots = 4096;
constexpr size_t kMaxWorkerIdLength = 256;
constexpr size_t kMaxCancelsRemembered = 4096;
// WorkerHello.emulated_platforms: how many, and how long each may be.
constexpr int kMaxEmulatedPlatforms = 16;
constexpr size_t kMaxPlatformLength = 64;

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }

std::string RandomId() {
  absl::BitGen gen;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(12, '0');
  for (char& c : s) c = kHex[absl::Uniform(gen, 0, 16)];
  return s;
}

std::string ShortKey(absl::string_view key) { return std::string(key.substr(0, 12)); }

}  // namespace

std::string NormalizePlatform(absl::string_view platform) {
  std::string p = oci::NormalizePlatform(platform);
  return p.empty() ? "linux/amd64" : p;
}

// ---------------------------------------------------------------------------------------------
// Internal records

namespace {

struct Task;
struct Worker;

// One caller waiting for a task (a Run or Submit).
struct Waiter {
  uint64_t id = 0;
  executor::LogSink log;
  Dispatcher::DoneCallback done;
  // Gates `log` and `done`: a log line is delivered under it, and `done` flips `finished`
  // under it first, so no log line reaches the caller after its result.
  absl::Mutex mu;
  bool finished ABSL_GUARDED_BY(mu) = false;
  Task* task = nullptr;  // guarded by Impl::mu_
};

struct Lease {
  std::string id;
  std::string worker_task_id;  // the task id the worker knows (ours, or its own if adopted)
  int attempt = 1;
  Task* task = nullptr;  // nullptr: canceled, held until the worker confirms it stopped
  Worker* worker = nullptr;
  absl::Time started;
  absl::Time renewed;
  // Not listed in the WorkerHello of a reconnect: valid until the worker's first heartbeat
  // (so results sent right after the hello are accepted).
  bool unconfirmed = false;
  bool restored = false;  // read back from state_dir; its worker has not confirmed it yet
};

enum class TaskState { kQueued, kRunning, kFinished };

struct Task : QueueItem {
  std::string id;
  std::string key;
  farm::v1::StepRequest request;
  std::string build_id;
  std::string platform;
  std::string cache_instance;
  std::vector<std::string> chain;
  std::map<std::string, std::string> secrets;
  absl::Time created;
  absl::Time queued_at;  // when it last entered the queue
  TaskState state = TaskState::kQueued;
  // False for a task restored from state_dir that no caller has asked for since the restart.
  // An unclaimed queued task waits outside the queue ("dormant") so nothing runs without its
  // secrets or for a build that is gone.
  bool claimed = true;
  Lease* lease = nullptr;
  std::vector<AttemptRecord> lost;
  std::vector<std::shared_ptr<Waiter>> waiters;
  // Held back for locality: out of the queue, parked on `held_for` (busy workers holding more
  // of its parent layers) until one of them frees a slot or `hold_until` passes.
  bool held = false;
  absl::Time hold_until;
  std::vector<Worker*> held_for;
  // kFinished (restored task done before its caller came back).
  absl::Status final_status;
  farm::v1::StepResult final_result;

  std::string Describe() const {
    std::string d = request.description().empty() ? "step" : request.description();
    return absl::StrCat("\"", d, "\" (key ", ShortKey(key), ")");
  }
};

struct Worker {
  std::string id;
  std::string platform;               // native
  std::vector<std::string> emulated;  // under QEMU: normalized, sorted, without `platform`
  std::string address;
  std::string version;
  std::map<std::string, std::string> labels;
  int slots = 0;
  absl::flat_hash_set<std::string> chain_ids;
  absl::flat_hash_map<std::string, Lease*> leases;
  std::shared_ptr<WorkerStream> stream;  // null while disconnected
  uint64_t session = 0;
  absl::Time connected_at = absl::InfinitePast();
  absl::Time last_seen = absl::InfinitePast();
  absl::Time disconnected_at = absl::InfinitePast();
  int64_t tasks_done = 0;
  absl::flat_hash_set<std::string> cancels_sent;  // leases told to stop (this session)
  absl::flat_hash_set<Task*> held;                // tasks waiting for a slot here (locality)
  bool draining = false;        // shutting down (Heartbeat.draining): no new tasks this session
  int64_t results_refused = 0;  // results it sent for leases it did not hold

  bool connected() const { return stream != nullptr; }
  int free() const { return slots - static_cast<int>(leases.size()); }
  // Every platform it takes tasks for: its own first, then the emulated ones.
  std::vector<std::string> platforms() const {
    std::vector<std::string> all;
    if (!platform.empty()) all.push_back(platform);
    all.insert(all.end(), emulated.begin(), emulated.end());
    return all;
  }
  bool Serves(const std::string& p) const {
    return p == platform || std::binary_search(emulated.begin(), emulated.end(), p);
  }
  // "linux/amd64 (+linux/arm64 emulated)" for log lines.
  std::string DescribePlatforms() const {
    if (emulated.empty()) return platform;
    return absl::StrCat(platform, " (+", absl::StrJoin(emulated, ", +"), " emulated)");
  }
};

// The emulated platforms a hello announces, checked and normalized (sorted, without
// duplicates or the native platform). INVALID_ARGUMENT naming the worker for a list that is
// too long or an entry that is not "os/arch[/variant]": a worker checks its --emulate list at
// startup, so junk here is a bug or a rogue worker, and is refused rather than guessed at.
absl::StatusOr<std::vector<std::string>> EmulatedPlatformsOf(const farm::v1::WorkerHello& hello,
                                                             const std::string& native,
                                                             absl::string_view peer) {
  if (hello.emulated_platforms_size() > kMaxEmulatedPlatforms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "WorkerHello from worker ", hello.worker_id(), " (", peer, "): ",
        hello.emulated_platforms_size(), " emulated platforms (max ", kMaxEmulatedPlatforms, ")"));
  }
  std::vector<std::string> out;
  for (const std::string& text : hello.emulated_platforms()) {
    absl::StatusOr<oci::Platform> p = text.size() > kMaxPlatformLength
                                          ? absl::InvalidArgumentError("too long")
                                          : oci::Platform::Parse(text);
    if (!p.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "WorkerHello from worker ", hello.worker_id(), " (", peer, "): emulated platform \"",
          absl::CHexEscape(absl::string_view(text).substr(0, kMaxPlatformLength)),
          "\" is not os/arch[/variant]"));
    }
    std::string normalized = p->String();
    if (normalized != native) out.push_back(std::move(normalized));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// What a locked section decided to do once the lock is released: stream I/O (a gRPC reaction
// may run inline), callers' callbacks.
struct Effects {
  std::vector<std::shared_ptr<WorkerStream>> flush;
  std::vector<std::pair<std::shared_ptr<WorkerStream>, absl::Status>> close;
  std::vector<std::shared_ptr<Waiter>> log_to;
  std::string log_line;
  bool log_stderr = false;
  std::vector<std::pair<std::shared_ptr<Waiter>, absl::StatusOr<farm::v1::StepResult>>> done;

  void Run() {
    for (const auto& s : flush) s->Flush();
    for (const auto& [s, status] : close) s->Close(status);
    for (const auto& w : log_to) {
      absl::MutexLock l(&w->mu);
      if (!w->finished && w->log) w->log(log_line, log_stderr);
    }
    for (auto& [w, result] : done) {
      {
        absl::MutexLock l(&w->mu);
        if (w->finished) continue;
        w->finished = true;
      }
      Dispatcher::DoneCallback cb = std::move(w->done);
      w->done = nullptr;
      w->log = nullptr;
      cb(std::move(result));
    }
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------

class Dispatcher::Impl final : public SessionHandler {
 public:
  explicit Impl(Options options)
      : opts_(std::move(options)),
        clock_(opts_.clock != nullptr ? opts_.clock : Clock::Real()),
        scheduler_id_(opts_.scheduler_id.empty() ? RandomId() : opts_.scheduler_id) {}

  ~Impl() override { Shutdown(); }

  absl::Status Start(std::unique_ptr<StateStore> store) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock l(&mu_);
      store_ = std::move(store);
      if (store_ != nullptr) RETURN_IF_ERROR(Restore());
    }
    timer_ = std::thread([this] { TimerLoop(); });
    watcher_ = std::thread([this] { WatchLoop(); });
    return absl::OkStatus();
  }

  const std::string& scheduler_id() const { return scheduler_id_; }

  // ----- callers

  absl::StatusOr<uint64_t> Submit(const TaskSpec& spec, executor::LogSink log, DoneCallback done)
      ABSL_LOCKS_EXCLUDED(mu_) {
    std::string key = spec.key.empty() ? spec.request.key() : spec.key;
    std::string what = spec.request.description().empty()
                           ? std::string("step")
                           : absl::StrCat("step \"", spec.request.description(), "\"");
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("dispatch: ", what, " has no cache key"));
    }
    if (spec.request.op_case() == farm::v1::StepRequest::OP_NOT_SET) {
      return absl::InvalidArgumentError(absl::StrCat("dispatch: ", what, " (key ", ShortKey(key),
                                                     ") has no operation (run, copy or mkdir)"));
    }
    if (!done) return absl::InvalidArgumentError("dispatch: Submit without a done callback");
    std::string platform =
        NormalizePlatform(spec.platform.empty() ? spec.request.env().platform() : spec.platform);

    auto w = std::make_shared<Waiter>();
    w->log = std::move(log);
    w->done = std::move(done);
    Effects fx;
    {
      absl::MutexLock l(&mu_);
      if (shutdown_) return absl::UnavailableError("dispatch: the scheduler is shutting down");
      absl::Time now = clock_->Now();
      Task* t = nullptr;
      auto it = by_key_.find(key);
      if (it != by_key_.end()) {
        t = it->second;
        if (!t->claimed) {
          Claim(t, spec);
        } else {
          ++counters_.deduplicated;
          for (const auto& [id, value] : spec.secrets) t->secrets.emplace(id, value);
        }
        if (spec.priority > t->priority) RaisePriority(t, spec.priority);
      } else {
        int64_t queued = QueuedLocked();
        if (queued >= opts_.max_queued_tasks) {
          ++counters_.rejected;
          return absl::ResourceExhaustedError(absl::StrCat(
              "dispatch queue is full: ", queued, " tasks wait for a worker (max_queued_tasks ",
              opts_.max_queued_tasks, "); ", what, " (key ", ShortKey(key), ") was not queued"));
        }
        t = NewTask(spec, key, platform, now);
      }
      w->id = ++next_waiter_;
      w->task = t;
      t->waiters.push_back(w);
      waiters_[w->id] = w;
      if (t->state == TaskState::kFinished) {
        CompleteTask(t,
                     t->final_status.ok() ? absl::StatusOr<farm::v1::StepResult>(t->final_result)
                                          : absl::StatusOr<farm::v1::StepResult>(t->final_status),
                     &fx);
      } else if (t->state == TaskState::kQueued) {
        Pump(t->platform, &fx);
      }
    }
    uint64_t id = w->id;
    fx.Run();
    return id;
  }

  void Cancel(uint64_t ticket, absl::string_view reason) ABSL_LOCKS_EXCLUDED(mu_) {
    Effects fx;
    {
      absl::MutexLock l(&mu_);
      auto it = waiters_.find(ticket);
      if (it == waiters_.end()) return;
      std::shared_ptr<Waiter> w = it->second;
      waiters_.erase(it);
      Task* t = w->task;
      w->task = nullptr;
      fx.done.emplace_back(
          w, absl::CancelledError(
                 absl::StrCat(t != nullptr ? t->Describe() : std::string("step"), ": ", reason)));
      if (t != nullptr) {
        t->waiters.erase(std::remove(t->waiters.begin(), t->waiters.end(), w), t->waiters.end());
        if (t->waiters.empty() && t->claimed) {
          AbandonTask(t, absl::StrCat("every build waiting for it left (", reason, ")"), &fx);
        }
      }
    }
    fx.Run();
  }

  absl::StatusOr<farm::v1::StepResult> Run(const TaskSpec& spec, const executor::LogSink& log,
                                           const absl::Notification* cancel) {
    if (cancel != nullptr && cancel->HasBeenNotified()) {
      return absl::CancelledError("canceled before it was queued");
    }
    struct Sync {
      absl::Notification done;
      absl::StatusOr<farm::v1::StepResult> result;
    };
    auto sync = std::make_shared<Sync>();
    ASSIGN_OR_RETURN(uint64_t ticket,
                     Submit(spec, log, [sync](absl::StatusOr<farm::v1::StepResult> r) {
                       sync->result = std::move(r);
                       sync->done.Notify();
                     }));
    if (cancel != nullptr) Watch(ticket, cancel);
    sync->done.WaitForNotification();
    if (cancel != nullptr) Unwatch(ticket);
    return std::move(sync->result);
  }

  // ----- transport (SessionHandler)

  absl::StatusOr<uint64_t> Open(std::shared_ptr<WorkerStream> stream,
                                const farm::v1::WorkerHello& hello, absl::string_view peer) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    if (hello.worker_id().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("WorkerHello from ", peer, " has no worker_id"));
    }
    if (hello.worker_id().size() > kMaxWorkerIdLength) {
      return absl::InvalidArgumentError(absl::StrCat("WorkerHello from ", peer, ": worker_id is ",
                                                     hello.worker_id().size(), " bytes (max ",
                                                     kMaxWorkerIdLength, ")"));
    }
    if (hello.slots() < 1 || hello.slots() > kMaxSlots) {
      return absl::InvalidArgumentError(absl::StrCat("WorkerHello from worker ", hello.worker_id(),
                                                     " (", peer, "): slots ", hello.slots(),
                                                     " is out of range 1..", kMaxSlots));
    }
    std::string platform = NormalizePlatform(hello.platform());
    ASSIGN_OR_RETURN(std::vector<std::string> emulated, EmulatedPlatformsOf(hello, platform, peer));
    Effects fx;
    uint64_t session = 0;
    {
      absl::MutexLock l(&mu_);
      if (shutdown_) return absl::UnavailableError("the scheduler is shutting down");
      absl::Time now = clock_->Now();
      Worker* w = GetWorker(hello.worker_id());
      if (w->connected()) {
        fx.close.emplace_back(w->stream, absl::AbortedError(absl::StrCat(
                                             "worker ", w->id, " connected again from ", peer)));
        DetachSession(w);
      }
      // Platforms it served before (and may not now) are pumped too: with a native worker gone,
      // their tasks may go to emulating workers.
      std::vector<std::string> pump = w->platforms();
      Unregister(w);
      w->platform = std::move(platform);
      w->emulated = std::move(emulated);
      w->slots = hello.slots();
      w->labels.clear();
      w->labels.insert(hello.labels().begin(), hello.labels().end());
      w->address = std::string(peer);
      w->version = hello.version();
      w->stream = std::move(stream);
      w->session = session = ++next_session_;
      w->connected_at = now;
      w->draining = false;
      w->last_seen = now;
      w->cancels_sent.clear();
      sessions_[session] = w;
      for (const std::string& p : w->platforms()) platform_workers_[p].insert(w);
      SetChainIds(w, hello.chain_ids());

      farm::v1::SchedulerMessage welcome;
      welcome.mutable_welcome()->set_heartbeat_interval_millis(
          absl::ToInt64Milliseconds(opts_.heartbeat_interval));
      welcome.mutable_welcome()->set_lease_timeout_millis(
          absl::ToInt64Milliseconds(opts_.lease_timeout));
      welcome.mutable_welcome()->set_scheduler_id(scheduler_id_);
      Send(w, std::move(welcome), &fx);

      // Leases from before the reconnect: the listed ones go on, the others get until the
      // first heartbeat (results of tasks finished while away come right after the hello).
      absl::flat_hash_set<std::string> listed;
      int64_t adopted_before = counters_.adopted;
      for (const farm::v1::RunningTask& r : hello.running()) {
        listed.insert(r.lease_id());
        HandleRunning(w, r, now, &fx);
      }
      std::vector<Lease*> stale;
      for (const auto& [id, lease] : w->leases) {
        if (listed.contains(id)) continue;
        if (lease->task == nullptr) {
          stale.push_back(lease);  // canceled while away: nothing left to stop
        } else {
          lease->unconfirmed = true;
        }
      }
      for (Lease* lease : stale) ReleaseLease(lease);
      Event(absl::StrCat("worker ", w->id, " connected from ", peer, ": ", w->DescribePlatforms(),
                         ", ", w->slots, " slots, ", w->chain_ids.size(), " layer stacks, ",
                         w->leases.size(), " running (", counters_.adopted - adopted_before,
                         " adopted)"));
      for (const std::string& p : w->platforms()) {
        if (std::find(pump.begin(), pump.end(), p) == pump.end()) pump.push_back(p);
      }
      for (const std::string& p : pump) Pump(p, &fx);
    }
    fx.Run();
    return session;
  }

  absl::Status Message(uint64_t session, const farm::v1::WorkerMessage& msg) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    Effects fx;
    absl::Status status;
    {
      absl::MutexLock l(&mu_);
      if (shutdown_) return absl::UnavailableError("the scheduler is shutting down");
      auto it = sessions_.find(session);
      if (it == sessions_.end()) {
        return absl::AbortedError("this stream was replaced by a newer connection of the worker");
      }
      Worker* w = it->second;
      absl::Time now = clock_->Now();
      bool was_stale = !Eligible(w, now);
      w->last_seen = now;
      switch (msg.msg_case()) {
        case farm::v1::WorkerMessage::kHeartbeat:
          OnHeartbeat(w, msg.heartbeat(), now, &fx);
          break;
        case farm::v1::WorkerMessage::kLog:
          OnLog(w, msg.log(), now, &fx);
          break;
        case farm::v1::WorkerMessage::kResult:
          OnResult(w, msg.result(), now, &fx);
          break;
        case farm::v1::WorkerMessage::kHello:
          status = absl::InvalidArgumentError(
              absl::StrCat("worker ", w->id, " sent a second WorkerHello on one stream"));
          break;
        default:
          status = absl::InvalidArgumentError(
              absl::StrCat("worker ", w->id, " sent an empty or unknown WorkerMessage"));
          break;
      }
      if (was_stale && Eligible(w, now)) PumpWorker(w, &fx);
    }
    fx.Run();
    return status;
  }

  void Close(uint64_t session, const absl::Status& why) override ABSL_LOCKS_EXCLUDED(mu_) {
    Effects fx;
    {
      absl::MutexLock l(&mu_);
      auto it = sessions_.find(session);
      if (it == sessions_.end()) return;
      Worker* w = it->second;
      absl::Time now = clock_->Now();
      DetachSession(w);
      w->disconnected_at = now;
      std::vector<Lease*> canceled;
      for (const auto& [id, lease] : w->leases) {
        if (lease->task == nullptr) {
          canceled.push_back(lease);
        } else {
          lease->renewed = now;  // lost lease_timeout after the drop unless the worker returns
        }
      }
      for (Lease* lease : canceled) ReleaseLease(lease);
      if (!shutdown_) {
        Event(absl::StrCat("worker ", w->id, " disconnected",
                           why.ok() ? "" : absl::StrCat(" (", why.ToString(), ")"), "; ",
                           w->leases.size(), " running tasks wait ",
                           absl::FormatDuration(opts_.lease_timeout), " for it to come back"));
      }
      KickTimer(now + opts_.lease_timeout);
      ReleaseHoldsOn(w);
      // Tasks parked on it go back to the queue, and if it was the last native worker of its
      // platform, that platform's queue goes to emulating workers.
      PumpWorker(w, &fx);
    }
    fx.Run();
  }

  // ----- introspection

  std::vector<farm::v1::WorkerInfo> Workers() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    std::vector<farm::v1::WorkerInfo> out;
    out.reserve(workers_.size());
    for (const auto& [id, w] : workers_) {
      farm::v1::WorkerInfo info;
      info.set_id(w->id);
      info.set_platform(w->platform);
      for (const std::string& p : w->emulated) info.add_emulated_platforms(p);
      info.mutable_labels()->insert(w->labels.begin(), w->labels.end());
      info.set_slots(w->slots);
      info.set_busy(static_cast<int32_t>(w->leases.size()));
      info.set_address(w->address);
      if (w->connected_at != absl::InfinitePast()) {
        info.set_connected_unix_micros(Micros(w->connected_at));
      }
      if (w->last_seen != absl::InfinitePast()) {
        info.set_last_heartbeat_unix_micros(Micros(w->last_seen));
      }
      info.set_layers(static_cast<int32_t>(w->chain_ids.size()));
      info.set_tasks_done(w->tasks_done);
      info.set_connected(w->connected());
      info.set_draining(w->draining);
      out.push_back(std::move(info));
    }
    std::sort(out.begin(), out.end(),
              [](const farm::v1::WorkerInfo& a, const farm::v1::WorkerInfo& b) {
                return a.id() < b.id();
              });
    return out;
  }

  DispatchStats Stats() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    DispatchStats s = counters_;
    s.queued = QueuedLocked();
    s.running = 0;
    for (const auto& [id, lease] : leases_) {
      if (lease->task != nullptr) ++s.running;
    }
    s.waiters = static_cast<int64_t>(waiters_.size());
    for (const auto& [id, w] : workers_) {
      if (!w->connected()) continue;
      ++s.workers_connected;
      s.slots_total += w->slots;
      s.slots_busy += static_cast<int64_t>(w->leases.size());
    }
    if (store_ != nullptr) s.persist_errors = store_->write_errors();
    return s;
  }

  std::vector<QueueSummary> Queues() const ABSL_LOCKS_EXCLUDED(mu_) {
    std::map<std::pair<std::string, std::string>, QueueSummary> by;
    {
      absl::MutexLock l(&mu_);
      for (const auto& [id, t] : tasks_) {
        if (t->state != TaskState::kQueued) continue;
        QueueSummary& q = by[{t->platform, t->tenant}];
        if (q.queued == 0 || t->queued_at < q.oldest_queued_at) q.oldest_queued_at = t->queued_at;
        ++q.queued;
      }
    }
    std::vector<QueueSummary> out;
    out.reserve(by.size());
    for (auto& [k, q] : by) {
      q.platform = k.first;
      q.tenant = k.second;
      out.push_back(std::move(q));
    }
    return out;
  }

  // ----- lifecycle

  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_) {
    Effects fx;
    {
      absl::MutexLock l(&mu_);
      if (shutdown_) return;
      shutdown_ = true;
      for (auto& [id, w] : waiters_) {
        fx.done.emplace_back(
            w, absl::UnavailableError("dispatch: the scheduler is shutting down (the step stays "
                                      "queued for its next start)"));
        w->task = nullptr;
      }
      waiters_.clear();
      for (auto& [id, t] : tasks_) t->waiters.clear();
      for (auto& [id, w] : workers_) {
        if (w->connected()) {
          fx.close.emplace_back(w->stream,
                                absl::UnavailableError("the scheduler is shutting down"));
        }
      }
    }
    {
      absl::MutexLock l(&watch_mu_);
      watch_stop_ = true;
    }
    if (timer_.joinable()) timer_.join();
    if (watcher_.joinable()) watcher_.join();
    fx.Run();
    std::unique_ptr<StateStore> store;
    {
      absl::MutexLock l(&mu_);
      store = std::move(store_);
    }
    if (store != nullptr) {
      absl::Status s = store->Flush();
      if (!s.ok()) Event(absl::StrCat("dispatch state: ", s.message()));
    }
    // The store closes here, releasing state_dir for the next start.
  }

  absl::Status FlushState() ABSL_LOCKS_EXCLUDED(mu_) {
    StateStore* store;
    {
      absl::MutexLock l(&mu_);
      store = store_.get();
    }
    return store == nullptr ? absl::OkStatus() : store->Flush();
  }

 private:
  // ----- tasks

  Task* NewTask(const TaskSpec& spec, const std::string& key, const std::string& platform,
                absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto owned = std::make_unique<Task>();
    Task* t = owned.get();
    t->id = absl::StrCat(scheduler_id_, "-t", ++next_task_);
    t->key = key;
    t->request = spec.request;
    t->build_id = spec.build_id;
    t->tenant = spec.tenant;
    t->priority = spec.priority;
    t->seq = ++next_seq_;
    t->platform = platform;
    t->cache_instance = spec.cache_instance;
    t->chain = spec.parent_chain_ids;
    t->secrets = spec.secrets;
    t->created = now;
    t->queued_at = now;
    tasks_[t->id] = std::move(owned);
    by_key_[key] = t;
    ++counters_.submitted;
    if (store_ != nullptr) {
      farm::dispatch::TaskSpecRecord rec;
      rec.set_task_id(t->id);
      rec.set_key(t->key);
      rec.set_request(t->request.SerializeAsString());
      rec.set_build_id(t->build_id);
      rec.set_tenant(t->tenant);
      rec.set_platform(t->platform);
      rec.set_cache_instance(t->cache_instance);
      for (const std::string& c : t->chain) rec.add_parent_chain_ids(c);
      rec.set_seq(t->seq);
      rec.set_created_unix_micros(Micros(now));
      store_->PutSpec(t->id, rec);
      PersistState(t);
    }
    Queue(t->platform).Push(t);
    return t;
  }

  void PersistState(Task* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (store_ == nullptr) return;
    farm::dispatch::TaskStateRecord rec;
    rec.set_priority(t->priority);
    rec.set_front(t->front);
    if (t->lease != nullptr) *rec.mutable_lease() = LeaseRecord(*t->lease);
    for (const AttemptRecord& a : t->lost) *rec.add_lost() = a;
    if (t->state == TaskState::kFinished) {
      rec.set_finished(true);
      rec.set_status_code(static_cast<int32_t>(t->final_status.code()));
      rec.set_status_message(std::string(t->final_status.message()));
      if (t->final_status.ok()) rec.set_result(t->final_result.SerializeAsString());
    }
    store_->PutState(t->id, rec);
  }

  static AttemptRecord LeaseRecord(const Lease& l) {
    AttemptRecord a;
    a.set_attempt(l.attempt);
    a.set_worker_id(l.worker->id);
    a.set_lease_id(l.id);
    a.set_worker_task_id(l.worker_task_id);
    a.set_started_unix_micros(Micros(l.started));
    return a;
  }

  FairQueue& Queue(const std::string& platform) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = queues_.find(platform);
    if (it == queues_.end()) {
      it = queues_.emplace(platform, std::make_unique<FairQueue>(&opts_.tenant_weights)).first;
    }
    return *it->second;
  }

  int64_t QueuedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    int64_t n = dormant_ + static_cast<int64_t>(holds_.size());
    for (const auto& [p, q] : queues_) n += static_cast<int64_t>(q->size());
    return n;
  }

  void RaisePriority(Task* t, int32_t priority) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool queued = t->queued;
    if (queued) Queue(t->platform).Remove(t);
    t->priority = priority;
    if (queued) Queue(t->platform).Push(t);
    PersistState(t);
  }

  // A caller asks again for a task restored from state_dir.
  void Claim(Task* t, const TaskSpec& spec) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    t->claimed = true;
    --unclaimed_;
    t->secrets = spec.secrets;
    if (!spec.build_id.empty()) t->build_id = spec.build_id;
    if (t->state == TaskState::kQueued) {
      --dormant_;
      Queue(t->platform).Push(t);
    }
  }

  // Every caller of `t` left: drop it, or cancel it on its worker.
  void AbandonTask(Task* t, const std::string& reason, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (t->state == TaskState::kQueued) {
      if (t->held) {
        Unhold(t);
      } else if (t->queued) {
        Queue(t->platform).Remove(t);
      } else {
        --dormant_;
      }
    } else if (t->state == TaskState::kRunning && t->lease != nullptr) {
      Lease* lease = t->lease;
      SendCancel(lease->worker, lease->worker_task_id, lease->id, reason, fx);
      // The slot stays taken until the worker reports the task stopped (result, heartbeat
      // without it, or the lease runs out).
      Queue(t->platform).AddRunning(t->tenant, -1);
      lease->task = nullptr;
      lease->renewed = clock_->Now();
      KickTimer(lease->renewed + opts_.lease_timeout);
      t->lease = nullptr;
    }
    if (!t->claimed) --unclaimed_;
    ++counters_.canceled;
    EraseTask(t);
  }

  // The task has its answer: give it to every caller, or keep it for the caller that has not
  // come back since a restart.
  void CompleteTask(Task* t, absl::StatusOr<farm::v1::StepResult> result, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (t->queued) Queue(t->platform).Remove(t);
    if (!t->claimed) {
      if (t->state == TaskState::kQueued) --dormant_;  // (never today: only runs complete)
      t->state = TaskState::kFinished;
      t->final_status = result.status();
      if (result.ok()) t->final_result = *result;
      PersistState(t);
      return;
    }
    for (const std::shared_ptr<Waiter>& w : t->waiters) {
      waiters_.erase(w->id);
      w->task = nullptr;
      fx->done.emplace_back(w, result);
    }
    t->waiters.clear();
    EraseTask(t);
  }

  void EraseTask(Task* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto k = by_key_.find(t->key);
    if (k != by_key_.end() && k->second == t) by_key_.erase(k);
    if (store_ != nullptr) store_->Delete(t->id);
    tasks_.erase(t->id);
  }

  // ----- placement

  bool Eligible(const Worker* w, absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return w->connected() && !w->draining && w->slots > 0 &&
           now - w->last_seen < opts_.lease_timeout;
  }

  // Hands queued tasks of `platform` to free slots (see the file comment of dispatcher.h).
  void Pump(const std::string& platform, Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (shutdown_) return;
    auto qit = queues_.find(platform);
    if (qit == queues_.end()) return;
    FairQueue& q = *qit->second;
    auto hit = held_count_.find(platform);
    int held_here = hit == held_count_.end() ? 0 : hit->second;
    if (q.empty() && held_here == 0) return;
    auto pit = platform_workers_.find(platform);
    if (pit == platform_workers_.end()) return;
    absl::Time now = clock_->Now();
    // Native first: while a worker runs `platform` natively, emulating ones (several times
    // slower) get none of its tasks; the tasks wait for a native slot instead.
    const bool native_only = HasNativeWorker(platform);
    std::vector<Worker*> free;
    for (Worker* w : pit->second) {
      if (native_only && w->platform != platform) continue;
      if (w->free() > 0 && Eligible(w, now)) free.push_back(w);
    }
    if (free.empty()) return;
    // Tasks parked for a worker that has a slot now get it first.
    if (held_here > 0) {
      for (size_t i = 0; i < free.size();) {
        Worker* w = free[i];
        // (only this platform's: a worker serving several holds tasks of each)
        while (w->free() > 0) {
          Task* t = nullptr;
          for (Task* h : w->held) {
            if (h->platform == platform && (t == nullptr || QueueOrder(h, t))) t = h;
          }
          if (t == nullptr) break;
          Unhold(t);
          Dispatch(t, w, now, fx);
        }
        if (w->free() <= 0) {
          free.erase(free.begin() + static_cast<std::ptrdiff_t>(i));
        } else {
          ++i;
        }
      }
    }
    while (!free.empty()) {
      Task* t = static_cast<Task*>(q.Next());
      if (t == nullptr) break;
      Worker* target = nullptr;
      if (!t->chain.empty()) {
        std::vector<Worker*> better;  // busy workers holding more of t's layers
        target = BestHolder(t, now, native_only, &better);
        absl::Time hold_until = t->queued_at + opts_.locality_wait;
        if (!better.empty() && now < hold_until &&
            held_count_[platform] < opts_.max_locality_holds) {
          // Wait a little for one of them, if t would be next in line there (a worker never
          // has more tasks parked on it than slots).
          better.erase(std::remove_if(
                           better.begin(), better.end(),
                           [](Worker* w) { return static_cast<int>(w->held.size()) >= w->slots; }),
                       better.end());
          if (!better.empty()) {
            Hold(t, std::move(better), hold_until);
            continue;
          }
        }
      }
      if (target == nullptr) {
        target = free.front();
        for (Worker* w : free) {
          if (w->free() > target->free()) target = w;
        }
      }
      Dispatch(t, target, now, fx);
      if (target->free() <= 0) free.erase(std::find(free.begin(), free.end(), target));
    }
  }

  // Within-tenant queue order (requeued, priority, arrival), for tasks parked on a worker.
  static bool QueueOrder(const Task* a, const Task* b) {
    if (a->front != b->front) return a->front;
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->seq < b->seq;
  }

  void Hold(Task* t, std::vector<Worker*> on, absl::Time until) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Queue(t->platform).Remove(t);
    t->held = true;
    t->hold_until = until;
    t->held_for = std::move(on);
    for (Worker* w : t->held_for) w->held.insert(t);
    holds_.emplace(until, t);
    ++held_count_[t->platform];
    KickTimer(until);
  }

  // Ends t's hold without putting it back in the queue.
  void Unhold(Task* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!t->held) return;
    for (Worker* w : t->held_for) w->held.erase(t);
    holds_.erase({t->hold_until, t});
    t->held = false;
    t->held_for.clear();
    --held_count_[t->platform];
  }

  // Ends t's hold and puts it back in its place in the queue.
  void ReleaseHold(Task* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!t->held) return;
    Unhold(t);
    Queue(t->platform).Push(t);
  }

  // `w` stops being a place to wait for (disconnected, forgotten). The caller pumps.
  void ReleaseHoldsOn(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (w->held.empty()) return;
    std::vector<Task*> tasks(w->held.begin(), w->held.end());
    for (Task* t : tasks) {
      t->held_for.erase(std::remove(t->held_for.begin(), t->held_for.end(), w), t->held_for.end());
      w->held.erase(t);
      if (t->held_for.empty()) ReleaseHold(t);
    }
  }

  // Pumps every platform `w` serves, its native one first (a slot it frees goes to a native
  // task before an emulated one), except that an emulated platform whose next task has waited
  // longer than kEmulatedStarvation goes first: a steady stream of native work must not starve
  // the emulated half of a multi-platform build forever.
  static constexpr absl::Duration kEmulatedStarvation = absl::Seconds(5);
  void PumpWorker(const Worker* w, Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> order = w->platforms();
    absl::Time now = clock_->Now();
    std::stable_partition(order.begin(), order.end(), [&](const std::string& p) {
      if (p == w->platform) return false;
      auto q = queues_.find(p);
      if (q == queues_.end()) return false;
      const Task* head = static_cast<const Task*>(q->second->Next());
      return head != nullptr && now - head->queued_at > kEmulatedStarvation;
    });
    for (const std::string& p : order) Pump(p, fx);
  }

  // A connected worker that runs `platform` natively and takes tasks this session (a worker
  // that is merely late with its heartbeat still counts: its platform's tasks wait for it).
  bool HasNativeWorker(const std::string& platform) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = platform_workers_.find(platform);
    if (it == platform_workers_.end()) return false;
    for (const Worker* w : it->second) {
      if (w->platform == platform && w->connected() && !w->draining) return true;
    }
    return false;
  }

  // The eligible worker with a free slot holding the longest prefix of t's parent chain
  // (most free slots among equals; nullptr if no free worker holds any), and in `better` the
  // eligible busy workers holding a longer prefix than that. Only workers serving t's
  // platform count; with `native_only`, only those running it natively.
  Worker* BestHolder(const Task* t, absl::Time now, bool native_only, std::vector<Worker*>* better)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Worker* best = nullptr;
    for (int i = static_cast<int>(t->chain.size()) - 1; i >= 0 && best == nullptr; --i) {
      auto it = holders_.find(t->chain[i]);
      if (it == holders_.end()) continue;
      std::vector<Worker*> busy;
      for (Worker* h : it->second) {
        if (!h->Serves(t->platform) || (native_only && h->platform != t->platform) ||
            !Eligible(h, now)) {
          continue;
        }
        if (h->free() > 0) {
          if (best == nullptr || h->free() > best->free()) best = h;
        } else {
          busy.push_back(h);
        }
      }
      if (best == nullptr && better->empty()) {
        *better = std::move(busy);  // the longest prefix held, all by busy workers
      }
    }
    return best;
  }

  void Dispatch(Task* t, Worker* w, absl::Time now, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Queue(t->platform).Remove(t);
    auto owned = std::make_unique<Lease>();
    Lease* lease = owned.get();
    lease->id = NewLeaseId(w->id, t->key);
    lease->worker_task_id = t->id;
    lease->attempt = static_cast<int>(t->lost.size()) + 1;
    lease->task = t;
    lease->worker = w;
    lease->started = now;
    lease->renewed = now;
    KickTimer(now + opts_.lease_timeout);
    leases_[lease->id] = std::move(owned);
    w->leases[lease->id] = lease;
    t->lease = lease;
    t->state = TaskState::kRunning;
    Queue(t->platform).AddRunning(t->tenant, +1);
    ++counters_.dispatched;
    counters_.queue_wait_micros += absl::ToInt64Microseconds(now - t->queued_at);
    if (opts_.on_dispatch) opts_.on_dispatch(t->platform, now - t->queued_at);
    PersistState(t);

    farm::v1::SchedulerMessage m;
    farm::v1::Task* task = m.mutable_task();
    task->set_task_id(t->id);
    task->set_lease_id(lease->id);
    task->set_attempt(lease->attempt);
    *task->mutable_request() = t->request;
    task->mutable_secrets()->insert(t->secrets.begin(), t->secrets.end());
    task->set_cache_instance(t->cache_instance);
    Send(w, std::move(m), fx);
  }

  // ----- leases

  void ReleaseLease(Lease* lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (lease->task != nullptr) {
      Queue(lease->task->platform).AddRunning(lease->task->tenant, -1);
      lease->task->lease = nullptr;
    }
    lease->worker->leases.erase(lease->id);
    leases_.erase(lease->id);  // deletes `lease`
  }

  // `ended_by_worker`: the worker reported the run over itself (no CancelTask to send).
  void LoseLease(Lease* lease, const std::string& reason, absl::Time now, Effects* fx,
                 bool ended_by_worker = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Task* t = lease->task;
    Worker* w = lease->worker;
    if (w->connected() && !ended_by_worker) {
      SendCancel(w, lease->worker_task_id, lease->id, reason, fx);
    }
    if (t == nullptr) {
      ReleaseLease(lease);
      return;
    }
    AttemptRecord a = LeaseRecord(*lease);
    a.set_ended_unix_micros(Micros(now));
    a.set_reason(reason);
    ReleaseLease(lease);
    t->lost.push_back(a);
    if (static_cast<int>(t->lost.size()) >= opts_.max_attempts) {
      ++counters_.aborted;
      std::vector<std::string> history;
      for (const AttemptRecord& r : t->lost) {
        history.push_back(absl::StrCat("attempt ", r.attempt(), " on worker ", r.worker_id(),
                                       " (lease ", r.lease_id(), "): ", r.reason()));
      }
      std::string msg =
          absl::StrCat(t->Describe(), " lost its worker ", t->lost.size(), " times (max_attempts ",
                       opts_.max_attempts, "): ", absl::StrJoin(history, "; "));
      Event(absl::StrCat("task ", t->id, " aborted: ", msg));
      CompleteTask(t, absl::AbortedError(msg), fx);
      return;
    }
    ++counters_.requeued;
    Event(absl::StrCat("task ", t->id, " ", t->Describe(), " requeued (attempt ", a.attempt(),
                       " of ", opts_.max_attempts, " lost: ", reason, ")"));
    t->state = TaskState::kQueued;
    t->front = true;
    t->queued_at = now;
    if (t->claimed) {
      Queue(t->platform).Push(t);
    } else {
      ++dormant_;
    }
    PersistState(t);
  }

  void SendCancel(Worker* w, const std::string& task_id, const std::string& lease_id,
                  const std::string& reason, Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!w->connected()) return;
    if (w->cancels_sent.size() >= kMaxCancelsRemembered) w->cancels_sent.clear();
    if (!w->cancels_sent.insert(lease_id).second) return;
    if (canceled_leases_.size() >= kMaxCancelsRemembered) canceled_leases_.clear();
    canceled_leases_.insert(lease_id);
    farm::v1::SchedulerMessage m;
    m.mutable_cancel()->set_task_id(task_id);
    m.mutable_cancel()->set_lease_id(lease_id);
    m.mutable_cancel()->set_reason(reason);
    Send(w, std::move(m), fx);
  }

  void Send(Worker* w, farm::v1::SchedulerMessage msg, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!w->connected()) return;
    w->stream->Enqueue(std::move(msg));
    if (fx->flush.empty() || fx->flush.back() != w->stream) fx->flush.push_back(w->stream);
  }

  // A task the worker says it runs (hello or heartbeat): renew, adopt, or tell it to stop.
  void HandleRunning(Worker* w, const farm::v1::RunningTask& r, absl::Time now, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = leases_.find(r.lease_id());
    if (it != leases_.end()) {
      Lease* lease = it->second.get();
      if (lease->worker == w && lease->worker_task_id == r.task_id()) {
        if (lease->task != nullptr) {
          lease->renewed = now;
          lease->unconfirmed = false;
          if (lease->restored) {
            lease->restored = false;
            ++counters_.adopted;
          }
        } else {
          // Canceled (perhaps while it was away): make sure it heard.
          SendCancel(w, r.task_id(), r.lease_id(), "no build wants this step any more", fx);
        }
        return;
      }
      SendCancel(w, r.task_id(), r.lease_id(), "this lease is not yours", fx);
      return;
    }
    auto k = by_key_.find(r.key());
    // Never adopt a run we told to stop: it may be dying with CANCELLED. Only a lease this
    // scheduler issued for that task to this same worker (and lost) can be adopted: a worker
    // cannot claim queued work with a lease id of its own.
    if (!r.key().empty() && !r.lease_id().empty() && k != by_key_.end() &&
        k->second->state == TaskState::kQueued && w->Serves(k->second->platform) &&
        !canceled_leases_.contains(r.lease_id()) && LeaseIssued(r.lease_id(), w->id, r.key())) {
      Adopt(k->second, w, r, now);
      return;
    }
    SendCancel(w, r.task_id(), r.lease_id(), "the scheduler does not want this task (any more)",
               fx);
  }

  std::string NewLeaseId(const std::string& worker_id, const std::string& key) const {
    return MakeLeaseId(*opts_.lease_key, worker_id, key);
  }
  bool LeaseIssued(absl::string_view lease_id, absl::string_view worker_id,
                   absl::string_view key) const {
    return LeaseIdIsFor(*opts_.lease_key, lease_id, worker_id, key);
  }

  // The worker runs a task we have queued (our record of its lease was lost): take its run
  // instead of starting another.
  void Adopt(Task* t, Worker* w, const farm::v1::RunningTask& r, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (t->held) {
      Unhold(t);
    } else if (t->queued) {
      Queue(t->platform).Remove(t);
    } else {
      --dormant_;
    }
    auto owned = std::make_unique<Lease>();
    Lease* lease = owned.get();
    lease->id = r.lease_id();
    lease->worker_task_id = r.task_id();
    lease->attempt = static_cast<int>(t->lost.size()) + 1;
    lease->task = t;
    lease->worker = w;
    lease->started = now;
    lease->renewed = now;
    KickTimer(now + opts_.lease_timeout);
    leases_[lease->id] = std::move(owned);
    w->leases[lease->id] = lease;
    t->lease = lease;
    t->state = TaskState::kRunning;
    Queue(t->platform).AddRunning(t->tenant, +1);
    ++counters_.adopted;
    PersistState(t);
  }

  // Finds the current lease a log or result is for; nullptr (after answering a stale one
  // with CancelTask) if there is none.
  Lease* CurrentLease(Worker* w, const std::string& task_id, const std::string& lease_id,
                      Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = leases_.find(lease_id);
    if (it != leases_.end() && it->second->worker == w && it->second->worker_task_id == task_id) {
      return it->second.get();
    }
    ++counters_.late_messages;
    SendCancel(w, task_id, lease_id, "the lease is no longer valid", fx);
    return nullptr;
  }

  // A result for a lease the worker does not hold (CurrentLease answered it with CancelTask):
  // late (its lease was lost), or another worker's, or made up. One line each naming the
  // worker, so that a worker forging results shows in the log; from a worker that keeps
  // sending them, the first 10 and then every 100th.
  void LogRefusedResult(Worker* w, const farm::v1::TaskResult& res)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++w->results_refused;
    if (w->results_refused > 10 && w->results_refused % 100 != 0) return;
    auto it = leases_.find(res.lease_id());
    std::string why =
        it == leases_.end() ? "no current lease has that id (lost, ended, or never issued)"
        : it->second->worker != w
            ? absl::StrCat("that lease is worker ", it->second->worker->id, "'s, not ", w->id, "'s")
            : "that lease is for another of its tasks";
    // Ids as the worker sent them: bounded and escaped before they go into a log line.
    auto printable = [](const std::string& s) {
      return absl::CHexEscape(absl::string_view(s).substr(0, 100));
    };
    Event(absl::StrCat("worker ", w->id, ": result for task \"", printable(res.task_id()),
                       "\" with lease \"", printable(res.lease_id()), "\" refused: ", why, " (",
                       w->results_refused, " refused from it)"));
  }

  void OnHeartbeat(Worker* w, const farm::v1::Heartbeat& hb, absl::Time now, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool began_draining = false;
    if (hb.draining() && !w->draining) {
      w->draining = true;
      began_draining = true;
      Event(absl::StrCat("worker ", w->id, " is shutting down: no new tasks for it"));
    }
    absl::flat_hash_set<std::string> listed;
    for (const farm::v1::RunningTask& r : hb.running()) {
      listed.insert(r.lease_id());
      HandleRunning(w, r, now, fx);
    }
    std::vector<Lease*> stopped;
    std::vector<Lease*> missing;
    for (const auto& [id, lease] : w->leases) {
      if (listed.contains(id)) continue;
      if (lease->task == nullptr) {
        stopped.push_back(lease);
      } else if (lease->unconfirmed) {
        missing.push_back(lease);
      }
    }
    bool freed = !stopped.empty() || !missing.empty();
    for (Lease* lease : stopped) ReleaseLease(lease);
    for (Lease* lease : missing) {
      LoseLease(lease, absl::StrCat("worker ", w->id, " reconnected without it"), now, fx);
    }
    for (const std::string& c : hb.chain_ids_removed()) RemoveChainId(w, c);
    for (const std::string& c : hb.chain_ids_added()) AddChainId(w, c);
    // Requeued tasks and freed slots are of w's platforms; a native worker that drains may
    // leave its platform to emulating workers.
    if (freed || began_draining || !hb.chain_ids_added().empty()) PumpWorker(w, fx);
  }

  void OnLog(Worker* w, const farm::v1::TaskLog& log, absl::Time now, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Lease* lease = CurrentLease(w, log.task_id(), log.lease_id(), fx);
    if (lease == nullptr || lease->task == nullptr) return;
    lease->renewed = now;
    lease->unconfirmed = false;
    if (lease->task->waiters.empty()) return;
    fx->log_to = lease->task->waiters;
    fx->log_line = log.line();
    fx->log_stderr = log.stderr();
  }

  void OnResult(Worker* w, const farm::v1::TaskResult& res, absl::Time now, Effects* fx)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Lease* lease = CurrentLease(w, res.task_id(), res.lease_id(), fx);
    if (lease == nullptr) {
      LogRefusedResult(w, res);
      return;
    }
    Task* t = lease->task;
    bool refused =
        res.status_code() == static_cast<int>(absl::StatusCode::kCancelled) ||
        (w->draining && res.status_code() == static_cast<int>(absl::StatusCode::kUnavailable));
    if (t != nullptr && refused) {
      // The worker stopped a step nobody asked it to stop, or (shutting down) refused one sent
      // before it said so: not the step's outcome. The lease is lost and the task runs
      // elsewhere (an attempt, so that a worker stopping every run cannot loop forever). A
      // worker only stops steps on its own when it shuts down: it gets no more tasks this
      // session, even if it did not say it drains.
      if (!w->draining) {
        w->draining = true;
        Event(absl::StrCat("worker ", w->id, " stopped a step on its own: no new tasks for it"));
      }
      LoseLease(lease,
                absl::StrCat("worker ", w->id, " stopped it: ",
                             res.status_message().empty() ? "cancelled" : res.status_message()),
                now, fx, /*ended_by_worker=*/true);
      PumpWorker(w, fx);
      return;
    }
    ReleaseLease(lease);
    ++w->tasks_done;
    if (t != nullptr) {
      ++counters_.completed;
      absl::StatusOr<farm::v1::StepResult> result = res.result();
      if (res.status_code() != 0) {
        int code = res.status_code();
        if (code < 0 || code > static_cast<int>(absl::StatusCode::kUnauthenticated)) {
          code = static_cast<int>(absl::StatusCode::kUnknown);
        }
        std::string message = res.status_message().empty()
                                  ? absl::StrCat("worker ", w->id, " failed the step")
                                  : res.status_message();
        result = absl::Status(static_cast<absl::StatusCode>(code), message);
      }
      // Who it was is ours to say (the certificate's id), not the worker's.
      if (result.ok()) result->set_worker(w->id);
      // A worker stores its layer before it reports: nothing of it is pending here.
      if (result.ok()) result->clear_store_pending();
      CompleteTask(t, std::move(result), fx);
    }
    PumpWorker(w, fx);
  }

  // ----- workers

  Worker* GetWorker(const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto& slot = workers_[id];
    if (slot == nullptr) {
      slot = std::make_unique<Worker>();
      slot->id = id;
    }
    return slot.get();
  }

  // Takes `w` out of the placement sets of every platform it serves.
  void Unregister(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (const std::string& p : w->platforms()) {
      auto it = platform_workers_.find(p);
      if (it == platform_workers_.end()) continue;
      it->second.erase(w);
      if (it->second.empty()) platform_workers_.erase(it);
    }
  }

  void DetachSession(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    sessions_.erase(w->session);
    Unregister(w);
    w->stream = nullptr;
    w->session = 0;
  }

  void SetChainIds(Worker* w, const google::protobuf::RepeatedPtrField<std::string>& ids)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> old(w->chain_ids.begin(), w->chain_ids.end());
    for (const std::string& c : old) RemoveChainId(w, c);
    for (const std::string& c : ids) AddChainId(w, c);
  }

  void AddChainId(Worker* w, const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (static_cast<int>(w->chain_ids.size()) >= opts_.max_chain_ids_per_worker) return;
    if (w->chain_ids.insert(id).second) holders_[id].insert(w);
  }

  void RemoveChainId(Worker* w, const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (w->chain_ids.erase(id) == 0) return;
    auto it = holders_.find(id);
    if (it == holders_.end()) return;
    it->second.erase(w);
    if (it->second.empty()) holders_.erase(it);
  }

  void ForgetWorker(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SetChainIds(w, {});
    Unregister(w);
    workers_.erase(w->id);
  }

  // ----- timers

  void KickTimer(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (deadline < timer_deadline_) timer_kick_ = true;
  }

  absl::Time NextDeadline() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::Time d = grace_deadline_;
    if (!holds_.empty()) d = std::min(d, holds_.begin()->first);
    for (const auto& [id, lease] : leases_) d = std::min(d, lease->renewed + opts_.lease_timeout);
    for (const auto& [id, w] : workers_) {
      if (!w->connected() && w->leases.empty()) {
        d = std::min(d, w->disconnected_at + opts_.forget_workers_after);
      }
    }
    return d;
  }

  bool TimerWake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return timer_kick_ || shutdown_; }

  void TimerLoop() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock l(&mu_);
    while (!shutdown_) {
      timer_deadline_ = NextDeadline();
      clock_->AwaitWithDeadline(&mu_, absl::Condition(this, &Impl::TimerWake), timer_deadline_);
      timer_kick_ = false;
      timer_deadline_ = absl::InfinitePast();  // kicks while processing are not lost
      if (shutdown_) break;
      Effects fx;
      OnTimer(&fx);
      mu_.Unlock();
      fx.Run();
      mu_.Lock();
    }
  }

  void OnTimer(Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::Time now = clock_->Now();
    absl::flat_hash_set<std::string> pump;
    std::vector<Lease*> expired;
    for (const auto& [id, lease] : leases_) {
      if (now >= lease->renewed + opts_.lease_timeout) expired.push_back(lease.get());
    }
    for (Lease* lease : expired) {
      Worker* w = lease->worker;
      for (const std::string& p : w->platforms()) pump.insert(p);
      std::string reason;
      if (!w->connected()) {
        reason = absl::StrCat(
            "worker ", w->id, " disconnected at ",
            absl::FormatTime("%H:%M:%E3S", w->disconnected_at, absl::UTCTimeZone()),
            " UTC and did not come back within ", absl::FormatDuration(opts_.lease_timeout));
      } else if (now - w->last_seen >= opts_.lease_timeout) {
        reason = absl::StrCat("worker ", w->id, " stopped heartbeating (nothing heard for ",
                              absl::FormatDuration(now - w->last_seen), ")");
      } else {
        reason = absl::StrCat("worker ", w->id,
                              " stopped reporting the task (not in its "
                              "heartbeats for ",
                              absl::FormatDuration(opts_.lease_timeout), ")");
      }
      LoseLease(lease, reason, now, fx);
    }
    while (!holds_.empty() && holds_.begin()->first <= now) {
      Task* t = holds_.begin()->second;
      pump.insert(t->platform);
      ReleaseHold(t);
    }
    if (now >= grace_deadline_) {
      grace_deadline_ = absl::InfiniteFuture();
      DropUnclaimed(fx);
    }
    std::vector<Worker*> forget;
    for (const auto& [id, w] : workers_) {
      if (!w->connected() && w->leases.empty() &&
          now >= w->disconnected_at + opts_.forget_workers_after) {
        forget.push_back(w.get());
      }
    }
    for (Worker* w : forget) ForgetWorker(w);
    for (const std::string& p : pump) Pump(p, fx);
  }

  void DropUnclaimed(Effects* fx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<Task*> drop;
    for (const auto& [id, t] : tasks_) {
      if (!t->claimed) drop.push_back(t.get());
    }
    if (drop.empty()) return;
    Event(absl::StrCat("dropping ", drop.size(), " restored tasks no build asked for within ",
                       absl::FormatDuration(opts_.restart_grace)));
    for (Task* t : drop) {
      AbandonTask(t, "no build asked for it after the scheduler restarted", fx);
    }
  }

  // ----- cancel watcher (callers' absl::Notification has no callback: poll them, all in one
  // thread, instead of one polling loop per waiting caller)

  void Watch(uint64_t ticket, const absl::Notification* cancel) ABSL_LOCKS_EXCLUDED(watch_mu_) {
    absl::MutexLock l(&watch_mu_);
    watched_[ticket] = cancel;
  }

  void Unwatch(uint64_t ticket) ABSL_LOCKS_EXCLUDED(watch_mu_) {
    absl::MutexLock l(&watch_mu_);
    watched_.erase(ticket);
  }

  void WatchLoop() ABSL_LOCKS_EXCLUDED(watch_mu_) {
    absl::MutexLock l(&watch_mu_);
    auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(watch_mu_) {
      return watch_stop_ || !watched_.empty();
    };
    while (!watch_stop_) {
      watch_mu_.Await(absl::Condition(&has_work));
      if (watch_stop_) break;
      watch_mu_.AwaitWithTimeout(absl::Condition(&watch_stop_), opts_.cancel_poll_interval);
      std::vector<uint64_t> fired;
      for (auto it = watched_.begin(); it != watched_.end();) {
        if (it->second->HasBeenNotified()) {
          fired.push_back(it->first);
          watched_.erase(it++);
        } else {
          ++it;
        }
      }
      if (fired.empty()) continue;
      watch_mu_.Unlock();
      for (uint64_t t : fired) Cancel(t, "canceled by the build");
      watch_mu_.Lock();
    }
  }

  // ----- restore

  absl::Status Restore() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::string> warnings;
    ASSIGN_OR_RETURN(std::vector<StoredTask> stored, store_->LoadAll(&warnings));
    for (const std::string& w : warnings) Event(w);
    absl::Time now = clock_->Now();
    int running = 0;
    for (StoredTask& s : stored) {
      const std::string& id = s.spec.task_id();
      auto t = std::make_unique<Task>();
      if (!t->request.ParseFromString(s.spec.request())) {
        Event(absl::StrCat("dispatch state: task ", id, ": unreadable step request, dropped"));
        store_->Delete(id);
        continue;
      }
      if (s.spec.key().empty() || by_key_.contains(s.spec.key())) {
        Event(absl::StrCat("dispatch state: task ", id, ": duplicate or empty key, dropped"));
        store_->Delete(id);
        continue;
      }
      t->id = id;
      t->key = s.spec.key();
      t->build_id = s.spec.build_id();
      t->tenant = s.spec.tenant();
      t->platform = NormalizePlatform(s.spec.platform());
      t->cache_instance = s.spec.cache_instance();
      t->chain.assign(s.spec.parent_chain_ids().begin(), s.spec.parent_chain_ids().end());
      t->seq = s.spec.seq();
      t->created = absl::FromUnixMicros(s.spec.created_unix_micros());
      t->queued_at = now;
      t->priority = s.state.priority();
      t->front = s.state.front();
      t->lost.assign(s.state.lost().begin(), s.state.lost().end());
      t->claimed = false;
      next_seq_ = std::max(next_seq_, t->seq);
      Task* task = t.get();
      tasks_[id] = std::move(t);
      by_key_[task->key] = task;
      ++unclaimed_;
      if (s.state.finished()) {
        task->state = TaskState::kFinished;
        task->final_status = absl::Status(static_cast<absl::StatusCode>(s.state.status_code()),
                                          s.state.status_message());
        if (task->final_status.ok()) task->final_result.ParseFromString(s.state.result());
      } else if (s.state.has_lease()) {
        const AttemptRecord& a = s.state.lease();
        Worker* w = GetWorker(a.worker_id());
        if (w->platform.empty()) w->platform = task->platform;
        w->disconnected_at = now;
        auto lease = std::make_unique<Lease>();
        lease->id = a.lease_id();
        lease->worker_task_id = a.worker_task_id().empty() ? id : a.worker_task_id();
        lease->attempt = a.attempt();
        lease->task = task;
        lease->worker = w;
        lease->started = absl::FromUnixMicros(a.started_unix_micros());
        lease->renewed = now;  // the worker has lease_timeout to reconnect
        lease->restored = true;
        w->leases[lease->id] = lease.get();
        task->lease = lease.get();
        task->state = TaskState::kRunning;
        leases_[lease->id] = std::move(lease);
        Queue(task->platform).AddRunning(task->tenant, +1);
        ++running;
      } else {
        task->state = TaskState::kQueued;
        ++dormant_;
      }
      ++counters_.restored;
    }
    if (counters_.restored > 0) {
      grace_deadline_ = now + opts_.restart_grace;
      Event(absl::StrCat("dispatch state restored: ", counters_.restored, " tasks (", running,
                         " running, ", dormant_, " queued) wait ",
                         absl::FormatDuration(opts_.restart_grace), " for their builds"));
    }
    return absl::OkStatus();
  }

  void Event(const std::string& line) const {
    if (opts_.event_log) opts_.event_log(line);
  }

  const Options opts_;
  Clock* const clock_;
  const std::string scheduler_id_;

  mutable absl::Mutex mu_;
  std::unique_ptr<StateStore> store_ ABSL_GUARDED_BY(mu_);
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<std::string, std::unique_ptr<Task>> tasks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, Task*> by_key_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Lease>> leases_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Worker>> workers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Worker*> sessions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::flat_hash_set<Worker*>> platform_workers_
      ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, absl::flat_hash_set<Worker*>> holders_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<FairQueue>> queues_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, std::shared_ptr<Waiter>> waiters_ ABSL_GUARDED_BY(mu_);
  // Leases a CancelTask was sent for (bounded): never adopted again (the run may be dying).
  absl::flat_hash_set<std::string> canceled_leases_ ABSL_GUARDED_BY(mu_);
  int64_t dormant_ ABSL_GUARDED_BY(mu_) = 0;    // queued, unclaimed (outside the queues)
  int64_t unclaimed_ ABSL_GUARDED_BY(mu_) = 0;  // restored, not asked for yet
  uint64_t next_waiter_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_session_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_task_ ABSL_GUARDED_BY(mu_) = 0;
  // Tasks parked for locality, by the end of their wait; and how many per platform.
  std::set<std::pair<absl::Time, Task*>> holds_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int> held_count_ ABSL_GUARDED_BY(mu_);
  absl::Time grace_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Time timer_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool timer_kick_ ABSL_GUARDED_BY(mu_) = false;
  DispatchStats counters_ ABSL_GUARDED_BY(mu_);
  std::thread timer_;

  absl::Mutex watch_mu_;
  absl::flat_hash_map<uint64_t, const absl::Notification*> watched_ ABSL_GUARDED_BY(watch_mu_);
  bool watch_stop_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread watcher_;
};

// ---------------------------------------------------------------------------------------------

namespace {
std::string LeaseMac(const auth::SecretKey& k, absl::string_view worker_id,
                     absl::string_view task_key, absl::string_view nonce) {
  std::string message =
      absl::StrCat(worker_id.size(), ":", worker_id, task_key.size(), ":", task_key, nonce);
  return k.Hash("farm.lease.v1", message).substr(0, 32);
}
}  // namespace

std::string MakeLeaseId(const auth::SecretKey& k, absl::string_view worker_id,
                        absl::string_view task_key) {
  std::string nonce = common::RandomHex(16);
  return absl::StrCat(nonce, ".", LeaseMac(k, worker_id, task_key, nonce));
}

bool LeaseIdIsFor(const auth::SecretKey& k, absl::string_view lease_id, absl::string_view worker_id,
                  absl::string_view task_key) {
  size_t dot = lease_id.find('.');
  if (dot != 32 || lease_id.size() != 65) return false;
  std::string want = LeaseMac(k, worker_id, task_key, lease_id.substr(0, dot));
  absl::string_view got = lease_id.substr(dot + 1);
  unsigned char diff = 0;  // constant time: the comparison tells nothing about the MAC
  for (size_t i = 0; i < want.size(); ++i) diff |= static_cast<unsigned char>(want[i] ^ got[i]);
  return diff == 0;
}

absl::StatusOr<std::unique_ptr<Dispatcher>> Dispatcher::Create(Options options) {
  if (options.lease_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("dispatch: lease_timeout must be positive");
  }
  if (options.heartbeat_interval <= absl::ZeroDuration() ||
      options.heartbeat_interval >= options.lease_timeout) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dispatch: heartbeat_interval (", absl::FormatDuration(options.heartbeat_interval),
        ") must be positive and shorter than lease_timeout (",
        absl::FormatDuration(options.lease_timeout), ")"));
  }
  if (options.max_attempts < 1) {
    return absl::InvalidArgumentError("dispatch: max_attempts must be at least 1");
  }
  if (options.max_queued_tasks < 1) {
    return absl::InvalidArgumentError("dispatch: max_queued_tasks must be at least 1");
  }
  if (options.locality_wait < absl::ZeroDuration() || options.max_locality_holds < 0) {
    return absl::InvalidArgumentError(
        "dispatch: locality_wait and max_locality_holds must not "
        "be negative");
  }
  if (options.cancel_poll_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("dispatch: cancel_poll_interval must be positive");
  }
  for (const auto& [tenant, weight] : options.tenant_weights) {
    if (!(weight > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("dispatch: tenant \"", tenant, "\" has weight ", weight, " (must be > 0)"));
    }
  }
  std::unique_ptr<StateStore> store;
  if (!options.state_dir.empty()) {
    ASSIGN_OR_RETURN(store, StateStore::Open(options.state_dir, options.sync_writes));
  }
  if (options.lease_key == nullptr) {
    if (!options.state_dir.empty()) {
      ASSIGN_OR_RETURN(options.lease_key, auth::SecretKey::LoadOrCreate(
                                              common::JoinPath(options.state_dir, "lease.key")));
    } else {
      ASSIGN_OR_RETURN(options.lease_key, auth::SecretKey::FromBytes(common::RandomHex(32)));
    }
  }
  WorkerIdentity identity = options.worker_identity;
  SendQueueLimit limit;
  limit.max_bytes = options.max_send_queue_bytes;
  limit.max_messages = options.max_send_queue_messages;
  std::unique_ptr<Dispatcher> d(new Dispatcher());
  d->impl_ = std::make_shared<Impl>(std::move(options));
  RETURN_IF_ERROR(d->impl_->Start(std::move(store)));
  d->service_ = NewWorkerHubService(d->impl_, std::move(identity), std::move(limit));
  return d;
}

Dispatcher::Dispatcher() = default;
Dispatcher::~Dispatcher() { Shutdown(); }

absl::StatusOr<farm::v1::StepResult> Dispatcher::Run(const TaskSpec& spec,
                                                     const executor::LogSink& log,
                                                     const absl::Notification* cancel) {
  return impl_->Run(spec, log, cancel);
}

absl::StatusOr<uint64_t> Dispatcher::Submit(const TaskSpec& spec, executor::LogSink log,
                                            DoneCallback done) {
  return impl_->Submit(spec, std::move(log), std::move(done));
}

void Dispatcher::Cancel(uint64_t ticket, absl::string_view reason) {
  impl_->Cancel(ticket, reason);
}

std::vector<farm::v1::WorkerInfo> Dispatcher::Workers() const { return impl_->Workers(); }
DispatchStats Dispatcher::Stats() const { return impl_->Stats(); }
std::vector<QueueSummary> Dispatcher::Queues() const { return impl_->Queues(); }
grpc::Service* Dispatcher::service() { return service_.get(); }
SessionHandler* Dispatcher::sessions() { return impl_.get(); }
void Dispatcher::Shutdown() { impl_->Shutdown(); }
absl::Status Dispatcher::FlushState() { return impl_->FlushState(); }
const std::string& Dispatcher::scheduler_id() const { return impl_->scheduler_id(); }

}  // namespace farm::scheduler::dispatch
