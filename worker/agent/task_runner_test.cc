// TaskRunner with a scripted executor: each step waits until the test finishes it (or its
// cancellation is notified), so a test decides what runs when.
#include "worker/agent/task_runner.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::Duration kWait = absl::Seconds(30);

// The executor: a step (by its key) prints "<key> started", then waits to be finished.
class FakeSteps {
 public:
  TaskRunner::ExecuteFn Fn() {
    return [this](const farm::v1::StepRequest& request, const executor::LogSink& log,
                  const absl::Notification* cancel, executor::SecretProvider::Ptr secrets) {
      return Execute(request, log, cancel, std::move(secrets));
    };
  }

  // Ends step `key` with `result`.
  void Finish(const std::string& key, absl::StatusOr<farm::v1::StepResult> result) {
    absl::MutexLock lock(&mu_);
    finished_.emplace(key, std::move(result));
  }
  bool WaitStarted(const std::string& key) {
    absl::MutexLock lock(&mu_);
    auto started = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return started_.count(key) > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&started), kWait);
  }
  int times_started(const std::string& key) {
    absl::MutexLock lock(&mu_);
    return started_.count(key) ? started_[key] : 0;
  }
  int max_running() {
    absl::MutexLock lock(&mu_);
    return max_running_;
  }
  // What step `key` read as secret "token" (or the error), "" if it had no secrets at all.
  std::string secret_seen(const std::string& key) {
    absl::MutexLock lock(&mu_);
    return secrets_seen_[key];
  }

 private:
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel,
                                               executor::SecretProvider::Ptr secrets) {
    const std::string key = request.key();
    std::string seen;
    if (secrets != nullptr) {
      absl::StatusOr<std::string> v = secrets->GetSecret("token");
      seen = v.ok() ? *v : absl::StrCat("error: ", v.status().message());
    }
    // The line first: a test that saw the step start (WaitStarted) may count it.
    log(key + " started", false);
    {
      absl::MutexLock lock(&mu_);
      ++started_[key];
      secrets_seen_[key] = seen;
      max_running_ = std::max(max_running_, ++running_);
    }
    absl::MutexLock lock(&mu_);
    // The cancellation is a Notification, not this mutex: poll it, with a deadline.
    absl::Time deadline = absl::Now() + kWait;
    auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return finished_.count(key) > 0; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Milliseconds(5))) {
      if (cancel->HasBeenNotified()) {
        --running_;
        return absl::CancelledError("its processes were killed");
      }
      if (absl::Now() > deadline) break;
    }
    --running_;
    if (!done()) return absl::DeadlineExceededError("the test never finished " + key);
    absl::StatusOr<farm::v1::StepResult> r = finished_.at(key);
    finished_.erase(key);
    return r;
  }

  absl::Mutex mu_;
  std::map<std::string, int> started_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::StatusOr<farm::v1::StepResult>> finished_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> secrets_seen_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int max_running_ ABSL_GUARDED_BY(mu_) = 0;
};

// The output, as one readable line per message, in order.
class RecordingOutput : public TaskRunner::Output {
 public:
  void Log(const std::string& task_id, const std::string& lease_id, absl::string_view line,
           bool is_stderr) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(absl::StrCat(task_id, "/", lease_id, ": ", line));
  }
  void Result(farm::v1::TaskResult result) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(absl::StrCat(result.task_id(), "/", result.lease_id(), " result"));
    results_[result.task_id()] = std::move(result);
  }
  bool WaitForResult(const std::string& task_id) {
    absl::MutexLock lock(&mu_);
    auto has = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return results_.count(task_id) > 0; };
    return mu_.AwaitWithTimeout(absl::Condition(&has), kWait);
  }
  farm::v1::TaskResult result(const std::string& task_id) {
    absl::MutexLock lock(&mu_);
    return results_.count(task_id) ? results_[task_id] : farm::v1::TaskResult();
  }
  bool has_result(const std::string& task_id) {
    absl::MutexLock lock(&mu_);
    return results_.count(task_id) > 0;
  }
  std::vector<std::string> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, farm::v1::TaskResult> results_ ABSL_GUARDED_BY(mu_);
};

farm::v1::Task MakeTask(const std::string& id, const std::string& lease, int attempt = 1) {
  farm::v1::Task t;
  t.set_task_id(id);
  t.set_lease_id(lease);
  t.set_attempt(attempt);
  t.mutable_request()->set_key(id);
  t.mutable_request()->set_description("RUN " + id);
  return t;
}

farm::v1::CancelTask MakeCancel(const std::string& id, const std::string& lease,
                                const std::string& reason = "") {
  farm::v1::CancelTask c;
  c.set_task_id(id);
  c.set_lease_id(lease);
  c.set_reason(reason);
  return c;
}

farm::v1::StepResult Exit(int code) {
  farm::v1::StepResult r;
  r.set_exit_code(code);
  return r;
}

class TaskRunnerTest : public ::testing::Test {
 protected:
  std::unique_ptr<TaskRunner> Start(int slots) {
    TaskRunner::Options o;
    o.slots = slots;
    o.worker_id = "w1";
    o.execute = steps_.Fn();
    o.output = &output_;
    o.on_step_done = [this](const farm::v1::StepRequest& request,
                            const absl::StatusOr<farm::v1::StepResult>& result) {
      absl::MutexLock lock(&mu_);
      // Before its result is queued.
      done_before_result_.push_back(request.key() +
                                    (output_.has_result(request.key()) ? " late" : " first"));
    };
    o.log = [this](const std::string& line) {
      absl::MutexLock lock(&mu_);
      log_.push_back(line);
    };
    auto runner = std::make_unique<TaskRunner>(std::move(o));
    runner->Start();
    return runner;
  }
  void Accept(TaskRunner& runner, farm::v1::Task task) { runner.Accept(&task); }
  // Whether a log line contains `needle`, waiting up to 10 s for it: the runner logs a task's
  // outcome just after delivering its result, so a test woken by the result may look first.
  bool Logged(absl::string_view needle) {
    auto found = [this, needle]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const std::string& l : log_) {
        if (absl::StrContains(l, needle)) return true;
      }
      return false;
    };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&found), absl::Seconds(10));
  }

  FakeSteps steps_;
  RecordingOutput output_;
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> done_before_result_ ABSL_GUARDED_BY(mu_);
};

TEST_F(TaskRunnerTest, RunsAtMostSlotsTasksAndQueuesTheRest) {
  auto runner = Start(2);
  Accept(*runner, MakeTask("a", "la"));
  Accept(*runner, MakeTask("b", "lb"));
  ASSERT_TRUE(steps_.WaitStarted("a"));
  ASSERT_TRUE(steps_.WaitStarted("b"));
  Accept(*runner, MakeTask("c", "lc"));
  TaskRunner::Counts c = runner->counts();
  EXPECT_EQ(c.running, 2);
  EXPECT_EQ(c.queued, 1);
  EXPECT_EQ(c.held, 3);
  EXPECT_TRUE(Logged("task c queued: all 2 slots are busy"));
  // Queued tasks are held too, with their lease and step key.
  std::vector<farm::v1::RunningTask> held = runner->Held();
  ASSERT_EQ(held.size(), 3u);
  EXPECT_EQ(held[2].task_id(), "c");
  EXPECT_EQ(held[2].lease_id(), "lc");
  EXPECT_EQ(held[2].key(), "c");
  EXPECT_EQ(steps_.times_started("c"), 0);

  // A slot frees: c starts, after a's result.
  steps_.Finish("a", Exit(0));
  ASSERT_TRUE(steps_.WaitStarted("c"));
  steps_.Finish("b", Exit(0));
  steps_.Finish("c", Exit(0));
  ASSERT_TRUE(output_.WaitForResult("b"));
  ASSERT_TRUE(output_.WaitForResult("c"));
  std::vector<std::string> ev = output_.events();
  auto at = [&](const std::string& e) { return std::find(ev.begin(), ev.end(), e) - ev.begin(); };
  EXPECT_LT(at("a/la result"), at("c/lc: c started"));
  EXPECT_EQ(steps_.max_running(), 2);
  EXPECT_EQ(runner->counts().done, 3);
  EXPECT_EQ(runner->counts().held, 0);
  EXPECT_THAT(runner->Held(), IsEmpty());
}

TEST_F(TaskRunnerTest, EachTaskEndsWithOneResultCarryingItsOutcome) {
  auto runner = Start(2);
  Accept(*runner, MakeTask("ok", "l1"));
  Accept(*runner, MakeTask("bad", "l2"));
  ASSERT_TRUE(steps_.WaitStarted("ok"));
  ASSERT_TRUE(steps_.WaitStarted("bad"));
  steps_.Finish("ok", Exit(3));
  steps_.Finish("bad", absl::InvalidArgumentError("step has no operation"));
  ASSERT_TRUE(output_.WaitForResult("ok"));
  ASSERT_TRUE(output_.WaitForResult("bad"));
  farm::v1::TaskResult ok = output_.result("ok");
  EXPECT_EQ(ok.lease_id(), "l1");
  EXPECT_EQ(ok.status_code(), 0);  // the command failed, the step did not
  EXPECT_EQ(ok.result().exit_code(), 3);
  EXPECT_GE(ok.run_micros(), 0);
  farm::v1::TaskResult bad = output_.result("bad");
  EXPECT_EQ(bad.status_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(bad.status_message(), "step has no operation");
  EXPECT_FALSE(bad.has_result());
  // Output lines come before the result, with the lease.
  std::vector<std::string> ev = output_.events();
  auto at = [&](const std::string& e) { return std::find(ev.begin(), ev.end(), e) - ev.begin(); };
  EXPECT_LT(at("ok/l1: ok started"), at("ok/l1 result"));
  EXPECT_TRUE(Logged("task ok (lease l1, attempt 1) started: RUN ok"));
  EXPECT_TRUE(Logged("task ok failed in"));
  EXPECT_TRUE(Logged("task bad error after"));
  absl::MutexLock lock(&mu_);
  EXPECT_THAT(done_before_result_, ::testing::UnorderedElementsAre("ok first", "bad first"));
}

TEST_F(TaskRunnerTest, CancellingAQueuedTaskEndsItAtOnceUnrun) {
  auto runner = Start(1);
  Accept(*runner, MakeTask("a", "la"));
  ASSERT_TRUE(steps_.WaitStarted("a"));
  Accept(*runner, MakeTask("b", "lb"));
  runner->Cancel(MakeCancel("b", "lb", "build cancelled by the user"));
  ASSERT_TRUE(output_.has_result("b"));  // synchronously
  farm::v1::TaskResult r = output_.result("b");
  EXPECT_EQ(r.status_code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_EQ(r.status_message(), "cancelled: build cancelled by the user");
  EXPECT_EQ(r.lease_id(), "lb");
  EXPECT_EQ(runner->counts().queued, 0);
  EXPECT_EQ(runner->counts().done, 1);
  steps_.Finish("a", Exit(0));
  ASSERT_TRUE(output_.WaitForResult("a"));
  runner->Shutdown("stop", nullptr);
  runner->Join();
  EXPECT_EQ(steps_.times_started("b"), 0);
}

TEST_F(TaskRunnerTest, CancellingARunningTaskNotifiesTheStepAndReportsWhy) {
  auto runner = Start(1);
  Accept(*runner, MakeTask("long", "l1"));
  ASSERT_TRUE(steps_.WaitStarted("long"));
  // A cancel for another lease of it is stale; one for an unknown task too.
  runner->Cancel(MakeCancel("long", "old-lease"));
  runner->Cancel(MakeCancel("nope", "l1"));
  EXPECT_TRUE(Logged("cancel for task long under lease old-lease (it runs under l1): ignored"));
  EXPECT_TRUE(Logged("cancel for task nope, which is not here: ignored"));
  EXPECT_FALSE(output_.has_result("long"));

  runner->Cancel(MakeCancel("long", "l1", "build cancelled by the user"));
  ASSERT_TRUE(output_.WaitForResult("long"));
  farm::v1::TaskResult r = output_.result("long");
  EXPECT_EQ(r.status_code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_EQ(r.status_message(),
            "cancelled: build cancelled by the user (its processes were killed)");
  EXPECT_EQ(r.lease_id(), "l1");
  EXPECT_TRUE(Logged("task long cancelled: build cancelled by the user: killing the step"));
  EXPECT_TRUE(runner->WaitIdle(absl::Now() + kWait));
}

TEST_F(TaskRunnerTest, AReissuedTaskIsNotRunTwiceAndContinuesUnderTheNewLease) {
  auto runner = Start(2);
  Accept(*runner, MakeTask("t", "lease-1"));
  ASSERT_TRUE(steps_.WaitStarted("t"));
  Accept(*runner, MakeTask("t", "lease-2", 2));
  EXPECT_TRUE(
      Logged("task t (already held under lease lease-1) continues under lease lease-2, "
             "attempt 2"));
  std::vector<farm::v1::RunningTask> held = runner->Held();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].lease_id(), "lease-2");
  // The same lease again changes nothing.
  Accept(*runner, MakeTask("t", "lease-2", 2));
  // A cancel naming the old lease is now the stale one.
  runner->Cancel(MakeCancel("t", "lease-1"));
  steps_.Finish("t", Exit(0));
  ASSERT_TRUE(output_.WaitForResult("t"));
  EXPECT_EQ(output_.result("t").lease_id(), "lease-2");
  EXPECT_EQ(output_.result("t").status_code(), 0);
  EXPECT_EQ(steps_.times_started("t"), 1);
}

TEST_F(TaskRunnerTest, SecretsReachTheirStepOnlyAndLeaveTheMessage) {
  auto runner = Start(2);
  farm::v1::Task with = MakeTask("with", "l1");
  (*with.mutable_secrets())["token"] = "hunter2";
  runner->Accept(&with);
  EXPECT_TRUE(with.secrets().empty());  // taken out of the message at once
  Accept(*runner, MakeTask("without", "l2"));
  ASSERT_TRUE(steps_.WaitStarted("with"));
  ASSERT_TRUE(steps_.WaitStarted("without"));
  EXPECT_EQ(steps_.secret_seen("with"), "hunter2");
  EXPECT_EQ(steps_.secret_seen("without"), "");  // no provider at all
  steps_.Finish("with", Exit(0));
  steps_.Finish("without", Exit(0));
  ASSERT_TRUE(output_.WaitForResult("with"));
  for (const std::string& e : output_.events()) EXPECT_FALSE(absl::StrContains(e, "hunter2"));
  absl::MutexLock lock(&mu_);
  for (const std::string& l : log_) EXPECT_FALSE(absl::StrContains(l, "hunter2")) << l;
}

TEST_F(TaskRunnerTest, ASecretNotSentIsNotFound) {
  auto runner = Start(1);
  farm::v1::Task t = MakeTask("t", "l");
  (*t.mutable_secrets())["other"] = "x";
  runner->Accept(&t);
  ASSERT_TRUE(steps_.WaitStarted("t"));
  EXPECT_EQ(steps_.secret_seen("t"), "error: secret \"token\" was not sent with the task");
  steps_.Finish("t", Exit(0));
  ASSERT_TRUE(output_.WaitForResult("t"));
}

TEST_F(TaskRunnerTest, ShutdownCancelsEverythingAfterTellingTheCallerWhatWasHeld) {
  auto runner = Start(1);
  Accept(*runner, MakeTask("a", "la"));
  ASSERT_TRUE(steps_.WaitStarted("a"));
  Accept(*runner, MakeTask("b", "lb"));
  std::vector<std::string> held_then;
  size_t events_then = 0;
  int cancelled = runner->Shutdown("worker w1 is shutting down",
                                   [&](const std::vector<farm::v1::RunningTask>& held) {
                                     for (const auto& r : held)
                                       held_then.push_back(r.task_id() + "/" + r.lease_id());
                                     events_then = output_.events().size();
                                   });
  EXPECT_EQ(cancelled, 2);
  EXPECT_THAT(held_then, ElementsAre("a/la", "b/lb"));
  EXPECT_EQ(events_then, 1u);  // only a's "started" line: no result before the callback
  ASSERT_TRUE(output_.WaitForResult("a"));
  EXPECT_EQ(output_.result("b").status_code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_EQ(output_.result("b").status_message(), "worker w1 is shutting down");
  EXPECT_THAT(output_.result("a").status_message(), HasSubstr("worker w1 is shutting down"));
  EXPECT_TRUE(runner->WaitIdle(absl::Now() + kWait));
  runner->Join();

  // Tasks that arrive now are turned away.
  Accept(*runner, MakeTask("late", "ll"));
  farm::v1::TaskResult late = output_.result("late");
  EXPECT_EQ(late.status_code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_EQ(late.status_message(), "worker w1 is shutting down");
  EXPECT_EQ(late.lease_id(), "ll");
  EXPECT_EQ(steps_.times_started("b"), 0);
  EXPECT_EQ(runner->Shutdown("again", nullptr), 0);
}

TEST_F(TaskRunnerTest, ATaskWithoutAnIdIsIgnored) {
  auto runner = Start(1);
  Accept(*runner, MakeTask("", "l"));
  EXPECT_EQ(runner->counts().held, 0);
  EXPECT_TRUE(Logged("ignoring a task without a task_id"));
}

}  // namespace
}  // namespace farm::worker::agent
