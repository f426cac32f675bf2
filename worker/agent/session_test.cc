// Session against a scripted WorkerHub on loopback (no executor, no root): the hello, the
// Welcome, heartbeats, the outbox's order, reconnecting with backoff, and stopping.
#include "worker/agent/session.h"

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/agent/testing/fake_hub.h"

namespace farm::worker::agent {
namespace {

using testing::FakeWorkerHub;
using ::testing::HasSubstr;
using Snapshot = FakeWorkerHub::Snapshot;

constexpr absl::Duration kWait = absl::Seconds(30);

farm::v1::RunningTask Running(const std::string& task, const std::string& lease,
                              const std::string& key = "") {
  farm::v1::RunningTask r;
  r.set_task_id(task);
  r.set_lease_id(lease);
  r.set_key(key);
  return r;
}

class FakeDelegate : public Session::Delegate {
 public:
  absl::Status BeforeConnect(const std::function<bool()>& stopping) override {
    absl::MutexLock lock(&mu);
    ++before_connect;
    return before_connect_status;
  }
  void FillHello(farm::v1::WorkerHello* hello) override {
    absl::MutexLock lock(&mu);
    hello->set_worker_id("w1");
    hello->set_slots(2);
    hello->add_chain_ids("sha256:chain");
    for (const auto& r : held) *hello->add_running() = r;
  }
  void FillHeartbeat(farm::v1::Heartbeat* hb) override {
    absl::MutexLock lock(&mu);
    for (const auto& r : held) *hb->add_running() = r;
  }
  void HeartbeatSent() override { ++heartbeats_sent; }
  void OnTask(farm::v1::Task* task) override {
    absl::MutexLock lock(&mu);
    tasks.push_back(task->task_id());
  }
  void OnCancel(const farm::v1::CancelTask& cancel) override {
    absl::MutexLock lock(&mu);
    cancels.push_back(cancel.task_id());
  }
  Held HeldTasks() override {
    absl::MutexLock lock(&mu);
    return Held{static_cast<int>(held.size()), static_cast<int>(held.size())};
  }

  absl::Mutex mu;
  absl::Status before_connect_status ABSL_GUARDED_BY(mu);
  int before_connect ABSL_GUARDED_BY(mu) = 0;
  std::vector<farm::v1::RunningTask> held ABSL_GUARDED_BY(mu);
  std::vector<std::string> tasks ABSL_GUARDED_BY(mu);
  std::vector<std::string> cancels ABSL_GUARDED_BY(mu);
  std::atomic<int> heartbeats_sent{0};
};

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hub_ = StartHub(0);
    ASSERT_NE(hub_, nullptr);
  }

  static std::unique_ptr<FakeWorkerHub> StartHub(int port, bool welcome = true) {
    FakeWorkerHub::Options ho;
    ho.port = port;
    ho.send_welcome = welcome;
    ho.welcome.set_heartbeat_interval_millis(50);
    ho.welcome.set_lease_timeout_millis(10000);
    ho.welcome.set_scheduler_id("fake");
    return FakeWorkerHub::Start(ho);
  }

  Session::Options Options(const std::string& target) {
    Session::Options o;
    o.target = target;
    o.reconnect.initial = absl::Milliseconds(20);
    o.reconnect.max = absl::Milliseconds(200);
    o.connect_timeout = absl::Seconds(5);
    o.log = [this](const std::string& line) {
      fprintf(stderr, "[session] %s\n", line.c_str());
      absl::MutexLock lock(&mu_);
      log_.push_back(line);
    };
    return o;
  }

  bool Logged(absl::string_view needle) {
    absl::MutexLock lock(&mu_);
    for (const std::string& l : log_) {
      if (absl::StrContains(l, needle)) return true;
    }
    return false;
  }
  int LinesContaining(absl::string_view needle) {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const std::string& l : log_) n += absl::StrContains(l, needle) ? 1 : 0;
    return n;
  }
  template <typename F>
  static bool WaitForStatus(Session& session, F pred) {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      if (pred(session.GetStatus())) return true;
      absl::SleepFor(absl::Milliseconds(5));  // polling a condition, with a deadline
    }
    return false;
  }
  bool WaitForHellos(FakeWorkerHub* hub, size_t n) {
    return hub->WaitFor([n](const Snapshot& s) { return s.hellos.size() >= n; }, kWait);
  }

  std::unique_ptr<FakeWorkerHub> hub_;
  FakeDelegate delegate_;
  absl::Mutex mu_;
  std::vector<std::string> log_ ABSL_GUARDED_BY(mu_);
};

farm::v1::TaskResult Result(const std::string& task, const std::string& lease) {
  farm::v1::TaskResult r;
  r.set_task_id(task);
  r.set_lease_id(lease);
  return r;
}

TEST_F(SessionTest, HelloWelcomeThenHeartbeatsAtTheWelcomesInterval) {
  {
    absl::MutexLock lock(&delegate_.mu);
    delegate_.held = {Running("t0", "l0", "k0")};
  }
  Session session(Options(hub_->address()), &delegate_);
  EXPECT_EQ(session.GetStatus().state, Session::State::kIdle);
  session.Start();
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  farm::v1::WorkerHello hello = hub_->snapshot().hellos[0];
  EXPECT_EQ(hello.worker_id(), "w1");
  ASSERT_EQ(hello.running_size(), 1);
  EXPECT_EQ(hello.running(0).key(), "k0");
  ASSERT_TRUE(hub_->WaitFor([](const Snapshot& s) { return s.Heartbeats().size() >= 3; }, kWait));
  farm::v1::Heartbeat hb = hub_->snapshot().Heartbeats()[0];
  ASSERT_EQ(hb.running_size(), 1);
  EXPECT_EQ(hb.running(0).task_id(), "t0");
  EXPECT_FALSE(hb.draining());
  // About 50ms apart (the Welcome's interval), not the 5s default.
  Snapshot s = hub_->snapshot();
  std::vector<absl::Time> at;
  for (const auto& r : s.received) {
    if (r.msg.has_heartbeat()) at.push_back(r.at);
  }
  EXPECT_LT(at[2] - at[0], absl::Seconds(2));
  EXPECT_GE(delegate_.heartbeats_sent.load(), 2);
  Session::Status st = session.GetStatus();
  EXPECT_EQ(st.state, Session::State::kConnected);
  EXPECT_EQ(st.sessions, 1);
  EXPECT_EQ(st.scheduler_id, "fake");
  EXPECT_TRUE(Logged(absl::StrCat("connected to scheduler ", hub_->address(),
                                  " (fake): heartbeat every 50ms, lease timeout 10.0s, 1 layer "
                                  "chain reported; holding 1 task")));
}

TEST_F(SessionTest, TasksAndCancelsGoToTheDelegate) {
  Session session(Options(hub_->address()), &delegate_);
  session.Start();
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(hub_->Send(testing::TaskMessage("t1", "l1", farm::v1::StepRequest())));
  ASSERT_TRUE(hub_->Send(testing::CancelMessage("t1", "l1")));
  absl::Time deadline = absl::Now() + kWait;
  absl::MutexLock lock(&delegate_.mu);
  auto both = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(delegate_.mu) {
    return !delegate_.tasks.empty() && !delegate_.cancels.empty();
  };
  ASSERT_TRUE(delegate_.mu.AwaitWithDeadline(absl::Condition(&both), deadline));
  EXPECT_EQ(delegate_.tasks[0], "t1");
  EXPECT_EQ(delegate_.cancels[0], "t1");
}

TEST_F(SessionTest, WhatWasQueuedBeforeTheWelcomeGoesFirstAndItsTasksAreInTheHello) {
  {
    absl::MutexLock lock(&delegate_.mu);
    delegate_.held = {Running("t2", "l2")};  // finished right after being listed: listed once
  }
  Session session(Options(hub_->address()), &delegate_);
  session.EnqueueLog("t1", "l1", "output", false);
  session.EnqueueResult(Result("t1", "l1"));
  session.EnqueueResult(Result("t2", "l2"));
  EXPECT_EQ(session.GetStatus().unsent_results, 2);
  session.Start();
  ASSERT_TRUE(hub_->WaitFor([](const Snapshot& s) { return s.Results().size() == 2; }, kWait));
  Snapshot s = hub_->snapshot();
  ASSERT_EQ(s.hellos[0].running_size(), 2);
  EXPECT_EQ(s.hellos[0].running(0).task_id(), "t2");
  EXPECT_EQ(s.hellos[0].running(1).task_id(), "t1");
  EXPECT_EQ(s.hellos[0].running(1).lease_id(), "l1");
  ASSERT_GE(s.received.size(), 3u);
  EXPECT_EQ(s.received[0].msg.log().line(), "output");
  EXPECT_EQ(s.received[1].msg.result().task_id(), "t1");
  EXPECT_EQ(s.received[2].msg.result().task_id(), "t2");
  EXPECT_TRUE(Logged("sending 2 buffered results and 1 log line"));
  EXPECT_TRUE(
      WaitForStatus(session, [](const Session::Status& st) { return st.unsent_results == 0; }));
}

TEST_F(SessionTest, ReconnectsWhenTheStreamBreaksAndSaysWhatItKeeps) {
  {
    absl::MutexLock lock(&delegate_.mu);
    delegate_.held = {Running("t0", "l0")};
  }
  Session session(Options(hub_->address()), &delegate_);
  session.Start();
  ASSERT_TRUE(WaitForStatus(
      session, [](const Session::Status& st) { return st.state == Session::State::kConnected; }));
  int port = hub_->port();
  hub_->Stop();
  ASSERT_TRUE(WaitForStatus(
      session, [](const Session::Status& st) { return st.state != Session::State::kConnected; }));
  session.EnqueueLog("t0", "l0", "while away", false);
  hub_ = StartHub(port);
  ASSERT_NE(hub_, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(hub_->WaitFor([](const Snapshot& s) { return !s.Logs("t0").empty(); }, kWait));
  EXPECT_EQ(hub_->snapshot().Logs("t0")[0].line(), "while away");
  EXPECT_TRUE(WaitForStatus(session, [](const Session::Status& st) {
    return st.state == Session::State::kConnected && st.sessions == 2;
  }));
  EXPECT_TRUE(Logged(absl::StrCat("stream to scheduler ", hub_->address(), " broke: ")));
  EXPECT_TRUE(Logged("; 1 task is kept (1 running); reconnecting in "));
}

TEST_F(SessionTest, FailedAttemptsBackOffAndRepeatedErrorsAreLoggedSparingly) {
  int port = hub_->port();
  hub_->Stop();
  Session::Options o = Options(absl::StrCat("127.0.0.1:", port));
  o.reconnect.initial = absl::Milliseconds(10);
  o.reconnect.max = absl::Milliseconds(80);
  o.reconnect.jitter = 0.25;
  Session session(std::move(o), &delegate_);
  session.Start();
  ASSERT_TRUE(
      WaitForStatus(session, [](const Session::Status& st) { return st.failed_attempts >= 8; }));
  Session::Status st = session.GetStatus();
  EXPECT_LE(st.last_backoff, absl::Milliseconds(80));
  EXPECT_GE(st.last_backoff, absl::Milliseconds(60));  // at the cap, minus jitter
  EXPECT_EQ(st.sessions, 0);
  EXPECT_TRUE(Logged(absl::StrCat("scheduler 127.0.0.1:", port, " is unreachable")));
  // Attempts 1, 2, 4, 8, ...: fewer lines than attempts.
  EXPECT_LT(LinesContaining("retrying in"), st.failed_attempts);
  // The scheduler comes up: connected within a backoff period, the count reset.
  hub_ = StartHub(port);
  ASSERT_NE(hub_, nullptr);
  ASSERT_TRUE(WaitForStatus(session, [](const Session::Status& st) {
    return st.state == Session::State::kConnected && st.failed_attempts == 0 && st.sessions == 1;
  }));
}

TEST_F(SessionTest, AnAttemptTheDelegateRefusesNeverDials) {
  {
    absl::MutexLock lock(&delegate_.mu);
    delegate_.before_connect_status =
        absl::UnavailableError("farm-cache at 127.0.0.1:1 is unreachable: connection failed");
  }
  Session session(Options(hub_->address()), &delegate_);
  session.Start();
  ASSERT_TRUE(
      WaitForStatus(session, [](const Session::Status& st) { return st.failed_attempts >= 3; }));
  EXPECT_TRUE(hub_->snapshot().hellos.empty());
  EXPECT_TRUE(Logged("farm-cache at 127.0.0.1:1 is unreachable: connection failed; retrying in"));
  {
    absl::MutexLock lock(&delegate_.mu);
    delegate_.before_connect_status = absl::OkStatus();
  }
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
}

TEST_F(SessionTest, NoWelcomeInTimeFailsTheAttempt) {
  auto silent = StartHub(0, /*welcome=*/false);
  ASSERT_NE(silent, nullptr);
  Session::Options o = Options(silent->address());
  o.welcome_timeout = absl::Milliseconds(100);
  Session session(std::move(o), &delegate_);
  session.Start();
  ASSERT_TRUE(
      WaitForStatus(session, [](const Session::Status& st) { return st.failed_attempts >= 2; }));
  EXPECT_GE(silent->snapshot().hellos.size(), 2u);
  EXPECT_EQ(session.GetStatus().sessions, 0);
  EXPECT_TRUE(Logged("no Welcome within 100ms"));
}

TEST_F(SessionTest, StoppingWhileConnectedSaysDrainingSendsTheRestThenCloses) {
  Session session(Options(hub_->address()), &delegate_);
  session.Start();
  ASSERT_TRUE(WaitForStatus(
      session, [](const Session::Status& st) { return st.state == Session::State::kConnected; }));
  session.Stop({Running("t1", "l1", "k1")});
  EXPECT_EQ(session.GetStatus().state, Session::State::kStopping);
  session.EnqueueResult(Result("t1", "l1"));  // e.g. the task cancelled by the shutdown
  absl::Time start = absl::Now();
  session.Drain(absl::Now() + absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  Snapshot s = hub_->snapshot();
  int draining = s.IndexOf([](const farm::v1::WorkerMessage& m) {
    return m.has_heartbeat() && m.heartbeat().draining();
  });
  int result = s.IndexOf([](const farm::v1::WorkerMessage& m) { return m.has_result(); });
  ASSERT_GE(draining, 0);
  ASSERT_GE(result, 0);
  EXPECT_LT(draining, result);
  ASSERT_EQ(s.received[draining].msg.heartbeat().running_size(), 1);
  EXPECT_EQ(s.received[draining].msg.heartbeat().running(0).key(), "k1");
  ASSERT_TRUE(hub_->WaitFor([](const Snapshot& s) { return !s.open[0]; }, kWait));
  EXPECT_TRUE(hub_->snapshot().closed_by_worker[0]);
  EXPECT_EQ(session.GetStatus().unsent_results, 0);
  session.MarkStopped();
  EXPECT_EQ(session.GetStatus().state, Session::State::kStopped);
}

TEST_F(SessionTest, StoppingBeforeTheWelcomeEndsTheAttemptAtOnce) {
  auto silent = StartHub(0, /*welcome=*/false);
  ASSERT_NE(silent, nullptr);
  Session::Options o = Options(silent->address());
  o.welcome_timeout = absl::Seconds(60);
  Session session(std::move(o), &delegate_);
  session.Start();
  ASSERT_TRUE(WaitForHellos(silent.get(), 1));
  absl::Time start = absl::Now();
  session.Stop({});
  session.Drain(absl::Now() + absl::Seconds(30));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  // Nothing was welcomed, so nothing was said.
  EXPECT_TRUE(silent->snapshot().received.empty());
  EXPECT_EQ(silent->snapshot().hellos.size(), 1u);
}

}  // namespace
}  // namespace farm::worker::agent
