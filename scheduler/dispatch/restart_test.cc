// Durability: the dispatcher's tasks and leases survive a restart (a second Dispatcher on the
// same state_dir), workers' running tasks are adopted, results that arrive before the build
// comes back are kept, secrets never reach the disk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "auth/secret_key.h"
#include "common/fs.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/state_store.h"
#include "scheduler/dispatch/testing/fake_worker.h"

namespace farm::scheduler::dispatch {
namespace {

using ::farm::scheduler::dispatch::testing::FakeWorker;
using ::farm::scheduler::dispatch::testing::FakeWorkerOptions;
using ::farm::scheduler::dispatch::testing::kWait;
using ::farm::scheduler::dispatch::testing::Spec;
using ::farm::scheduler::dispatch::testing::Start;
using ::testing::HasSubstr;

FakeWorkerOptions W(const std::string& id) {
  FakeWorkerOptions o;
  o.id = id;
  return o;
}

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/dispatch-",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    options_.state_dir = dir_;
    options_.clock = &clock_;
    options_.lease_timeout = absl::Seconds(30);
    options_.heartbeat_interval = absl::Seconds(5);
    options_.restart_grace = absl::Seconds(20);
    options_.event_log = [this](absl::string_view line) {
      absl::MutexLock l(&events_mu_);
      events_.emplace_back(line);
    };
  }

  void TearDown() override { d_.reset(); }

  Dispatcher* Start1() {
    auto d = Dispatcher::Create(options_);
    EXPECT_TRUE(d.ok()) << d.status();
    d_ = std::move(*d);
    return d_.get();
  }

  // Stops the current dispatcher (state committed, streams closed) and starts a new one on
  // the same state_dir, as a scheduler restart does.
  Dispatcher* Restart() {
    EXPECT_TRUE(d_->FlushState().ok());
    d_.reset();
    return Start1();
  }

  std::unique_ptr<FakeWorker> Connect(const std::string& id,
                                      const std::vector<farm::v1::RunningTask>& running = {}) {
    auto w = std::make_unique<FakeWorker>(d_->sessions(), W(id));
    absl::Status s = w->Connect(running);
    EXPECT_TRUE(s.ok()) << s;
    return w;
  }

  // Waits until an event line containing `needle` was logged.
  bool WaitEvent(const std::string& needle) {
    absl::MutexLock l(&events_mu_);
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(events_mu_) {
      for (const std::string& e : events_) {
        if (absl::StrContains(e, needle)) return true;
      }
      return false;
    };
    return events_mu_.AwaitWithTimeout(absl::Condition(&seen), kWait);
  }

  std::string dir_;
  SimulatedClock clock_;
  Options options_;
  std::unique_ptr<Dispatcher> d_;
  absl::Mutex events_mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(events_mu_);
};

TEST_F(RestartTest, QueuedTasksKeepTheirPlaceAndUnclaimedOnesAreDropped) {
  Start1();
  auto first = Start(d_.get(), Spec("k1", "t"));
  Start(d_.get(), Spec("k2", "t"));
  Start(d_.get(), Spec("k3", "t"));
  Restart();
  ASSERT_TRUE(first->Wait());
  EXPECT_EQ(first->result.status().code(), absl::StatusCode::kUnavailable);
  DispatchStats s = d_->Stats();
  EXPECT_EQ(s.restored, 3);
  EXPECT_EQ(s.queued, 3);
  // Nobody asked again yet: a worker gets nothing.
  auto w = Connect("w1");
  EXPECT_TRUE(w->Idle());
  w->Disconnect();
  // The builds come back in another order, and a new build queues k4 after them.
  auto o2 = Start(d_.get(), Spec("k2", "t"));
  auto o1 = Start(d_.get(), Spec("k1", "t"));
  auto o4 = Start(d_.get(), Spec("k4", "t"));
  w = Connect("w1");
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    farm::v1::Task t = w->NextTask();
    order.push_back(t.request().key());
    ASSERT_TRUE(w->Finish(t).ok());
  }
  EXPECT_THAT(order, ::testing::ElementsAre("k1", "k2", "k4"));
  ASSERT_TRUE(o1->Wait() && o2->Wait() && o4->Wait());
  EXPECT_TRUE(o1->result.ok());
  // k3's build never came back: dropped after the grace period.
  EXPECT_EQ(d_->Stats().queued, 1);
  clock_.Advance(options_.restart_grace);
  ASSERT_TRUE(WaitEvent("dropping 1 restored tasks"));
  EXPECT_EQ(d_->Stats().queued, 0);
  EXPECT_TRUE(w->Idle());
}

TEST_F(RestartTest, RunningTaskIsAdoptedWhenItsWorkerReconnects) {
  Start1();
  auto w = Connect("w1");
  Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  Restart();
  EXPECT_EQ(d_->Stats().running, 1);
  auto o = Start(d_.get(), Spec("k1"));  // the build manager runs the build again
  w = Connect("w1", {FakeWorker::Running(t)});
  EXPECT_TRUE(w->Idle());  // not sent again
  ASSERT_TRUE(w->Log(t, "still going").ok());
  ASSERT_TRUE(w->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(o->result->layer().digest(), "sha256:k1");
  EXPECT_THAT(o->Logs(), ::testing::ElementsAre("still going"));
  DispatchStats s = d_->Stats();
  EXPECT_EQ(s.dispatched, 0);
  EXPECT_EQ(s.adopted, 1);
  EXPECT_EQ(s.completed, 1);
}

TEST_F(RestartTest, ResultThatArrivesBeforeTheBuildReturnsIsKept) {
  Start1();
  auto w = Connect("w1");
  Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  Restart();
  w = Connect("w1");  // finished while the scheduler was down
  ASSERT_TRUE(w->Finish(t, 7).ok());
  // The result survives another restart too.
  Restart();
  auto o = Start(d_.get(), Spec("k1"));
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(o->result->exit_code(), 7);
  EXPECT_EQ(d_->Stats().queued, 0);
  EXPECT_EQ(d_->Stats().running, 0);
}

TEST_F(RestartTest, RestoredLeaseWhoseWorkerDoesNotReturnIsRequeued) {
  Start1();
  auto w1 = Connect("w1");
  Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  Restart();
  auto o = Start(d_.get(), Spec("k1"));
  auto w2 = Connect("w2");
  EXPECT_TRUE(w2->Idle());
  clock_.Advance(absl::Seconds(15));
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  clock_.Advance(absl::Seconds(15));
  farm::v1::Task again = w2->NextTask();
  EXPECT_EQ(again.request().key(), "k1");
  EXPECT_EQ(again.attempt(), 2);
  ASSERT_TRUE(w2->Finish(again).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok());
  std::vector<farm::v1::WorkerInfo> workers = d_->Workers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_EQ(workers[0].id(), "w1");
  EXPECT_FALSE(workers[0].connected());
}

TEST_F(RestartTest, UnclaimedRunningTaskIsCanceledOnItsWorkerAfterTheGracePeriod) {
  Start1();
  auto w = Connect("w1");
  Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  Restart();
  w = Connect("w1", {FakeWorker::Running(t)});
  clock_.Advance(options_.restart_grace);
  farm::v1::CancelTask c = w->NextCancel();
  EXPECT_EQ(c.lease_id(), t.lease_id());
  EXPECT_THAT(c.reason(), HasSubstr("restarted"));
}

TEST_F(RestartTest, WorkerRunningATaskTheSchedulerForgotIsAdoptedByKey) {
  Start1();
  auto o = Start(d_.get(), Spec("k1"));
  // The worker runs k1 under a lease this scheduler issued but never wrote down (the write was
  // lost in a crash): the lease id verifies with the scheduler's lease key, so the run is
  // adopted, not run a second time.
  auto key = auth::SecretKey::Load(common::JoinPath(dir_, "lease.key"));
  ASSERT_TRUE(key.ok()) << key.status();
  farm::v1::RunningTask r;
  r.set_task_id("old-task");
  r.set_lease_id(MakeLeaseId(**key, "w1", "k1"));
  r.set_key("k1");
  auto w = Connect("w1", {r});
  EXPECT_TRUE(w->Idle());
  farm::v1::Task t;
  t.set_task_id("old-task");
  t.set_lease_id(r.lease_id());
  ASSERT_TRUE(w->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(d_->Stats().adopted, 1);
  // An unknown task with no matching key is told to stop.
  r.set_lease_id("other-lease");
  r.set_key("nobody-wants-this");
  farm::v1::WorkerMessage hb;
  *hb.mutable_heartbeat()->add_running() = r;
  ASSERT_TRUE(w->Send(hb).ok());
  EXPECT_EQ(w->NextCancel().lease_id(), "other-lease");
}

TEST_F(RestartTest, ALeaseIdTheSchedulerDidNotIssueIsNeverAdopted) {
  Start1();
  auto o = Start(d_.get(), Spec("k1"));
  auto key = auth::SecretKey::Load(common::JoinPath(dir_, "lease.key"));
  ASSERT_TRUE(key.ok()) << key.status();
  // Made up, or issued to another worker, or for another task: each is told to stop.
  for (const std::string& lease :
       {std::string("made-up"), MakeLeaseId(**key, "w2", "k1"), MakeLeaseId(**key, "w1", "k2")}) {
    farm::v1::RunningTask r;
    r.set_task_id("claimed");
    r.set_lease_id(lease);
    r.set_key("k1");
    auto w = Connect("w1", {r});
    EXPECT_EQ(w->NextCancel().lease_id(), lease);
    w->Disconnect();
  }
  EXPECT_EQ(d_->Stats().adopted, 0);
}

TEST_F(RestartTest, SecretsAreSentToTheWorkerButNeverWritten) {
  const std::string secret = "s3cr3t-value-a8f41c";
  Start1();
  TaskSpec spec = Spec("k1");
  spec.secrets = {{"token", secret}};
  Start(d_.get(), spec);
  Start(d_.get(), Spec("k2"));
  auto w = Connect("w1");
  farm::v1::Task t = w->NextTask();
  EXPECT_EQ(t.secrets().at("token"), secret);
  Restart();
  d_.reset();  // closes the database
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    EXPECT_FALSE(absl::StrContains(buf.str(), secret)) << e.path();
    EXPECT_FALSE(absl::StrContains(buf.str(), "token")) << e.path();
  }
  // After the restart the build supplies its secrets again with the claim.
  Start1();
  TaskSpec again = Spec("k2");
  again.secrets = {{"token", secret}};
  Start(d_.get(), again);
  auto w2 = Connect("w2");
  EXPECT_EQ(w2->NextTask().secrets().at("token"), secret);
}

TEST_F(RestartTest, StateDirInUseIsAClearError) {
  Start1();
  auto second = Dispatcher::Create(options_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr(dir_));
}

TEST(StateStoreTest, RoundTripAndCoalescing) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/state-store");
  std::filesystem::remove_all(dir);
  {
    auto store = StateStore::Open(dir);
    ASSERT_TRUE(store.ok()) << store.status();
    farm::dispatch::TaskSpecRecord spec;
    spec.set_key("k");
    for (int i = 0; i < 100; ++i) {
      spec.set_task_id(absl::StrCat("t", i));
      (*store)->PutSpec(spec.task_id(), spec);
      farm::dispatch::TaskStateRecord state;
      state.set_priority(i);
      (*store)->PutState(spec.task_id(), state);
      if (i % 2 == 1) (*store)->Delete(spec.task_id());
    }
    ASSERT_TRUE((*store)->Flush().ok());
    auto all = (*store)->LoadAll();
    ASSERT_TRUE(all.ok());
    ASSERT_EQ(all->size(), 50u);
    for (const StoredTask& t : *all)
      EXPECT_EQ(t.spec.task_id(), absl::StrCat("t", t.state.priority()));
  }
  // Reopened: the same 50.
  auto store = StateStore::Open(dir);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->LoadAll()->size(), 50u);
}

TEST(StateStoreTest, ForeignOrNewerDatabasesAreRefused) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/not-dispatch");
  for (const char* format : {"", "farm-dispatch-v9"}) {
    std::filesystem::remove_all(dir);
    {
      rocksdb::Options o;
      o.create_if_missing = true;
      rocksdb::DB* db = nullptr;
      ASSERT_TRUE(rocksdb::DB::Open(o, dir, &db).ok());
      if (*format != 0) {
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "format", format).ok());
      } else {
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "someone-else", "x").ok());
      }
      delete db;
    }
    absl::StatusOr<std::unique_ptr<StateStore>> store = StateStore::Open(dir);
    EXPECT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition) << format;
    EXPECT_THAT(store.status().message(), HasSubstr(dir));
  }
}

}  // namespace
}  // namespace farm::scheduler::dispatch
