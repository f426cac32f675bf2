#include "worker/agent/task_runner.h"

#include <string.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/flags.h"
#include "worker/agent/log_line.h"

namespace farm::worker::agent {
namespace {

std::string Short(absl::string_view digest) {
  return digest.size() > 19 ? absl::StrCat(digest.substr(0, 19), "…") : std::string(digest);
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

struct TaskRunner::Task {
  std::string task_id;
  std::string lease_id;  // mu_; may change when the scheduler re-issues the task
  int attempt = 0;       // mu_
  farm::v1::StepRequest request;
  std::shared_ptr<executor::SecretProvider> secrets;  // null: the task mounts none
  absl::Notification cancel;
  std::string cancel_reason;  // mu_
};

TaskRunner::TaskRunner(Options options) : options_(std::move(options)) {}

TaskRunner::~TaskRunner() {
  Shutdown("the worker is stopping", nullptr);
  Join();
}

void TaskRunner::Start() {
  for (int i = 0; i < options_.slots; ++i) pool_.emplace_back([this] { PoolLoop(); });
}

void TaskRunner::Join() {
  for (std::thread& t : pool_) t.join();
  pool_.clear();
}

void TaskRunner::Accept(farm::v1::Task* task) {
  if (task->task_id().empty()) {
    Log("ignoring a task without a task_id");
    return;
  }
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    auto it = tasks_.find(task->task_id());
    if (it != tasks_.end()) {
      Task* t = it->second.get();
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
      r.set_status_message(absl::StrCat("worker ", options_.worker_id, " is shutting down"));
      options_.output->Result(std::move(r));
    } else {
      auto t = std::make_shared<Task>();
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

void TaskRunner::Cancel(const farm::v1::CancelTask& cancel) {
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
      std::shared_ptr<Task> t = it->second;
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

void TaskRunner::CancelQueuedLocked(const std::shared_ptr<Task>& t, const std::string& reason) {
  queue_.erase(std::remove(queue_.begin(), queue_.end(), t), queue_.end());
  tasks_.erase(t->task_id);
  if (!t->cancel.HasBeenNotified()) t->cancel.Notify();
  farm::v1::TaskResult r;
  r.set_task_id(t->task_id);
  r.set_lease_id(t->lease_id);
  r.set_status_code(static_cast<int>(absl::StatusCode::kCancelled));
  r.set_status_message(reason);
  ++done_;
  options_.output->Result(std::move(r));
}

std::vector<farm::v1::RunningTask> TaskRunner::HeldLocked() const {
  std::vector<farm::v1::RunningTask> out;
  for (const auto& [id, t] : tasks_) {
    farm::v1::RunningTask r;
    r.set_task_id(id);
    r.set_lease_id(t->lease_id);
    r.set_key(t->request.key());
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<farm::v1::RunningTask> TaskRunner::Held() {
  absl::MutexLock lock(&mu_);
  return HeldLocked();
}

int TaskRunner::Shutdown(
    const std::string& reason,
    const std::function<void(const std::vector<farm::v1::RunningTask>&)>& before) {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (before) before(HeldLocked());
  int cancelled = 0;
  while (!queue_.empty()) {
    std::shared_ptr<Task> t = queue_.front();
    CancelQueuedLocked(t, reason);
    ++cancelled;
  }
  for (auto& [id, t] : tasks_) {
    if (t->cancel.HasBeenNotified()) continue;
    t->cancel_reason = reason;
    t->cancel.Notify();
    ++cancelled;
  }
  return cancelled;
}

bool TaskRunner::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  return mu_.AwaitWithDeadline(absl::Condition(&idle), deadline);
}

TaskRunner::Counts TaskRunner::counts() {
  absl::MutexLock lock(&mu_);
  Counts c;
  c.queued = static_cast<int>(queue_.size());
  c.running = running_;
  c.held = static_cast<int>(tasks_.size());
  c.done = done_;
  return c;
}

void TaskRunner::PoolLoop() {
  while (true) {
    std::shared_ptr<Task> t;
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
    Run(t);
  }
}

void TaskRunner::Run(const std::shared_ptr<Task>& t) {
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
  absl::Time start = absl::Now();
  absl::StatusOr<farm::v1::StepResult> result = options_.execute(
      req,
      [this, task = t.get()](absl::string_view line, bool is_stderr) {
        absl::MutexLock lock(&mu_);  // the lease may change meanwhile
        options_.output->Log(task->task_id, task->lease_id, line, is_stderr);
      },
      &t->cancel, t->secrets);
  absl::Duration took = absl::Now() - start;
  t->secrets.reset();  // wipes them
  if (options_.on_step_done) options_.on_step_done(req, result);

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
                    ? absl::StrCat("cancelled after ", FormatSeconds(took))
                    : absl::StrCat("error after ", FormatSeconds(took), ": ", OneLine(s.message()));
    } else {
      *r.mutable_result() = *std::move(result);
      const farm::v1::StepResult& sr = r.result();
      outcome =
          absl::StrCat(sr.exit_code() == 0 ? "done" : "failed", " in ", FormatSeconds(took),
                       ": exit ", sr.exit_code(), sr.timed_out() ? " (timed out)" : "",
                       sr.has_layer() ? absl::StrCat(", layer ", Short(sr.layer().digest()), " (",
                                                     common::HumanSize(sr.layer().size()), ")")
                                      : ", no layer");
    }
    auto it = tasks_.find(t->task_id);
    if (it != tasks_.end() && it->second == t) tasks_.erase(it);
    --running_;
    ++done_;
    options_.output->Result(std::move(r));
  }
  Log(absl::StrCat("task ", t->task_id, " ", outcome));
}

}  // namespace farm::worker::agent
