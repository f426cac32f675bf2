// TaskRunner: the tasks farm-worker holds, from the Task that hands one over to its one
// TaskResult. At most `slots` run at once, each on its own pool thread; more wait in a queue
// (still held: listed by Held(), so heartbeats keep their leases alive) until a slot frees.
//
//   - Accept: a Task for a task_id already held under another lease (the scheduler re-issued
//     it after a reconnect) is not run twice: the held one continues under the new lease, and
//     its later output and result carry it. After Shutdown, a Task is answered UNAVAILABLE.
//   - Cancel: a queued task ends at once (CANCELLED, never run); a running one has its
//     cancellation notified (the executor kills the step) and reports CANCELLED with the
//     reason. A cancel naming another lease of the task is stale and ignored.
//   - Secrets sent with a task reach its step only; their bytes are wiped from the Task
//     message at once and from memory when the task ends.
//
//   TaskRunner::Options o;
//   o.slots = 4;
//   o.execute = [&](const StepRequest& r, const executor::LogSink& log,
//                   const absl::Notification* cancel, executor::SecretProvider::Ptr secrets) {
//     return executor->Execute(r, log, cancel, {secrets});
//   };
//   o.output = &outbox_writer;   // TaskRunner::Output
//   TaskRunner runner(std::move(o));
//   runner.Start();
//   runner.Accept(&task);
//   ...
//   runner.Shutdown("worker w1 is shutting down", nullptr);
//   runner.WaitIdle(deadline);
//   runner.Join();
//
// Thread-safe. The runner calls Output with its own lock held (so that a task's result follows
// its last line, and a task is no longer held once its result is queued): Output must not call
// back into the runner. farm-worker's lock order is: runner, then session.
#ifndef FARM_WORKER_AGENT_TASK_RUNNER_H_
#define FARM_WORKER_AGENT_TASK_RUNNER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "executor/step_executor.h"
#include "farm/v1/scheduler.pb.h"

namespace farm::worker::agent {

class TaskRunner {
 public:
  // Runs one step with the task's secrets (null: it has none). farm-worker: the
  // LocalStepExecutor.
  using ExecuteFn = std::function<absl::StatusOr<farm::v1::StepResult>(
      const farm::v1::StepRequest& request, const executor::LogSink& log,
      const absl::Notification* cancel, executor::SecretProvider::Ptr secrets)>;

  // Where tasks' output lines and results go (farm-worker: the session's outbox).
  class Output {
   public:
    virtual ~Output() = default;
    virtual void Log(const std::string& task_id, const std::string& lease_id,
                     absl::string_view line, bool is_stderr) = 0;
    virtual void Result(farm::v1::TaskResult result) = 0;
  };

  struct Options {
    int slots = 1;
    std::string worker_id;  // names the worker in results ("worker W is shutting down")
    ExecuteFn execute;
    Output* output = nullptr;  // not owned; outlives the runner
    // Called on the pool thread after each step ran, before its result is queued (farm-worker
    // records the layer stack it now holds). Optional.
    std::function<void(const farm::v1::StepRequest& request,
                       const absl::StatusOr<farm::v1::StepResult>& result)>
        on_step_done;
    // One line per state change (queued, started, done, cancelled), without a newline.
    std::function<void(const std::string&)> log;
  };

  explicit TaskRunner(Options options);
  ~TaskRunner();  // Shutdown, then Join

  // Starts the pool threads. Once.
  void Start();

  // A Task from the scheduler: takes its request and secrets (the message's secrets are wiped).
  void Accept(farm::v1::Task* task);
  void Cancel(const farm::v1::CancelTask& cancel);

  // The tasks held, queued or running (task id, lease id, step key), by task id.
  std::vector<farm::v1::RunningTask> Held();

  // Stops taking tasks: first calls `before(Held())` (with the runner's lock held, so nothing
  // is accepted or finishes in between; may be null), then ends every queued task (CANCELLED
  // with `reason`) and notifies every running one's cancellation. Returns how many tasks it
  // cancelled. Idempotent in effect: a second call cancels nothing more.
  int Shutdown(const std::string& reason,
               const std::function<void(const std::vector<farm::v1::RunningTask>&)>& before);
  // Waits until no task runs, or `deadline`. True if none runs.
  bool WaitIdle(absl::Time deadline);
  // After Shutdown: waits for the pool threads to end (each finishes its task first).
  void Join();

  struct Counts {
    int queued = 0;    // accepted, waiting for a slot
    int running = 0;   // executing
    int held = 0;      // queued + running
    int64_t done = 0;  // results produced (any outcome)
  };
  Counts counts();

 private:
  struct Task;

  void PoolLoop();
  void Run(const std::shared_ptr<Task>& task);
  void CancelQueuedLocked(const std::shared_ptr<Task>& task, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<farm::v1::RunningTask> HeldLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Log(const std::string& line) {
    if (options_.log) options_.log(line);
  }

  const Options options_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Task>> tasks_ ABSL_GUARDED_BY(mu_);  // queued or running
  std::deque<std::shared_ptr<Task>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> pool_;
};

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_TASK_RUNNER_H_
