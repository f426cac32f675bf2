// The dispatcher's scheduling core, driven through its transport seam with in-memory fake
// workers and a simulated clock: no gRPC, no sleeping. Calls into the dispatcher are
// synchronous (whatever they dispatch is flushed to the fake stream before they return), so
// "nothing was sent" is checked right after the call; timer-driven behaviour (lease loss,
// locality waits) is waited for with a deadline after advancing the clock.
#include "scheduler/dispatch/dispatcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "scheduler/dispatch/testing/fake_worker.h"

namespace farm::scheduler::dispatch {
namespace {

using ::farm::scheduler::dispatch::testing::FakeWorker;
using ::farm::scheduler::dispatch::testing::FakeWorkerOptions;
using ::farm::scheduler::dispatch::testing::kWait;
using ::farm::scheduler::dispatch::testing::Outcome;
using ::farm::scheduler::dispatch::testing::Spec;
using ::farm::scheduler::dispatch::testing::Start;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

FakeWorkerOptions W(const std::string& id, int slots = 1, const std::string& platform = "",
                    std::vector<std::string> chain_ids = {}) {
  FakeWorkerOptions o;
  o.id = id;
  o.slots = slots;
  o.platform = platform.empty() ? "linux/amd64" : platform;
  o.chain_ids = std::move(chain_ids);
  return o;
}

class DispatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.clock = &clock_;
    options_.lease_timeout = absl::Seconds(30);
    options_.heartbeat_interval = absl::Seconds(5);
    options_.locality_wait = absl::Seconds(2);
    options_.event_log = [this](absl::string_view line) {
      absl::MutexLock l(&events_mu_);
      events_.emplace_back(line);
    };
  }

  Dispatcher* Make() {
    absl::StatusOr<std::unique_ptr<Dispatcher>> d = Dispatcher::Create(options_);
    EXPECT_TRUE(d.ok()) << d.status();
    d_ = std::move(*d);
    return d_.get();
  }

  std::unique_ptr<FakeWorker> Connect(FakeWorkerOptions o,
                                      const std::vector<farm::v1::RunningTask>& running = {}) {
    auto w = std::make_unique<FakeWorker>(d_->sessions(), std::move(o));
    absl::Status s = w->Connect(running);
    EXPECT_TRUE(s.ok()) << s;
    return w;
  }

  void Advance(absl::Duration d) { clock_.Advance(d); }

  // Waits until the dispatcher logged an event containing `needle` (for effects of its timer
  // thread that no worker observes).
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

  SimulatedClock clock_;
  Options options_;
  std::unique_ptr<Dispatcher> d_;
  absl::Mutex events_mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(events_mu_);
};

TEST_F(DispatcherTest, RunsOnAWorkerAndReturnsItsResultAndLogs) {
  Make();
  auto w = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  EXPECT_EQ(t.request().key(), "k1");
  EXPECT_EQ(t.attempt(), 1);
  EXPECT_FALSE(t.lease_id().empty());
  ASSERT_TRUE(w->Log(t, "hello").ok());
  ASSERT_TRUE(w->Log(t, "oops", true).ok());
  EXPECT_EQ(d_->Stats().running, 1);
  ASSERT_TRUE(w->Finish(t, 3).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(o->result->exit_code(), 3);  // a failed command is an OK result
  EXPECT_EQ(o->result->layer().digest(), "sha256:k1");
  EXPECT_THAT(o->Logs(), ElementsAre("hello", "oops"));
  DispatchStats s = d_->Stats();
  EXPECT_EQ(s.dispatched, 1);
  EXPECT_EQ(s.completed, 1);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.queued, 0);
  std::vector<farm::v1::WorkerInfo> workers = d_->Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].id(), "w1");
  EXPECT_TRUE(workers[0].connected());
  EXPECT_EQ(workers[0].tasks_done(), 1);
  EXPECT_EQ(workers[0].busy(), 0);
}

TEST_F(DispatcherTest, BlockingRunReturnsTheWorkersResult) {
  Make();
  auto w = Connect(W("w1"));
  absl::StatusOr<farm::v1::StepResult> result;
  std::thread caller([&] { result = d_->Run(Spec("k1"), nullptr, nullptr); });
  farm::v1::Task t = w->NextTask();
  ASSERT_TRUE(w->Finish(t).ok());
  caller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->layer().digest(), "sha256:k1");
}

TEST_F(DispatcherTest, WorkerErrorIsReturnedAsIs) {
  Make();
  auto w = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  ASSERT_TRUE(w->Fail(t, absl::NotFoundError("COPY source app/ not found")).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_EQ(o->result.status(), absl::NotFoundError("COPY source app/ not found"));
}

TEST_F(DispatcherTest, RejectsSpecsWithoutKeyOrOperation) {
  Make();
  TaskSpec no_key = Spec("");
  EXPECT_EQ(d_->Submit(no_key, nullptr, [](auto) {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  TaskSpec no_op = Spec("k");
  no_op.request.clear_run();
  EXPECT_EQ(d_->Submit(no_op, nullptr, [](auto) {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(DispatcherTest, SmallTenantIsNotStarvedByABigOne) {
  Make();
  auto w = Connect(W("w1"));
  std::vector<std::shared_ptr<Outcome>> big;
  for (int i = 0; i < 1000; ++i)
    big.push_back(Start(d_.get(), Spec(absl::StrCat("big", i), "big")));
  auto small = Start(d_.get(), Spec("small0", "small"));
  // One slot: the big tenant's first task is running; the small tenant's task is next.
  std::vector<std::string> order;
  for (int i = 0; i < 5; ++i) {
    farm::v1::Task t = w->NextTask();
    order.push_back(t.request().key());
    ASSERT_TRUE(w->Finish(t).ok());
  }
  EXPECT_THAT(order, ElementsAre("big0", "small0", "big1", "big2", "big3"));
  ASSERT_TRUE(small->Wait());
  EXPECT_TRUE(small->result.ok());
}

TEST_F(DispatcherTest, FairShareCountsRunningTasksAcrossWorkers) {
  Make();
  auto w1 = Connect(W("w1", 2));
  auto w2 = Connect(W("w2", 2));
  for (int i = 0; i < 100; ++i) Start(d_.get(), Spec(absl::StrCat("a", i), "a"));
  // Tenant a fills all 4 slots; then b and c arrive with 2 tasks each.
  for (int i = 0; i < 2; ++i) {
    Start(d_.get(), Spec(absl::StrCat("b", i), "b"));
    Start(d_.get(), Spec(absl::StrCat("c", i), "c"));
  }
  std::vector<std::pair<FakeWorker*, farm::v1::Task>> running;
  for (FakeWorker* w : {w1.get(), w1.get(), w2.get(), w2.get()}) {
    running.emplace_back(w, w->NextTask());
  }
  // Each freed slot goes to the tenant running the fewest tasks: b0 (a runs 3), c0 (a 2, b 1).
  // Then a 1, b 1, c 1 are even and a, b, c have had the same service since b and c joined:
  // the oldest head (a4) wins; then a has had more: b1.
  std::vector<std::string> next;
  for (auto& [w, t] : running) {
    ASSERT_TRUE(w->Finish(t).ok());
    next.push_back(w->NextTask().request().key());
  }
  EXPECT_THAT(next, ElementsAre("b0", "c0", "a4", "b1"));
}

TEST_F(DispatcherTest, TenantWeightsShareASingleSlot) {
  options_.tenant_weights = {{"heavy", 3.0}};
  Make();
  auto w = Connect(W("w1"));
  for (int i = 0; i < 100; ++i) {
    Start(d_.get(), Spec(absl::StrCat("h", i), "heavy"));
    Start(d_.get(), Spec(absl::StrCat("l", i), "light"));
  }
  int heavy = 0;
  for (int i = 0; i < 40; ++i) {
    farm::v1::Task t = w->NextTask();
    if (t.request().key()[0] == 'h') ++heavy;
    ASSERT_TRUE(w->Finish(t).ok());
  }
  EXPECT_NEAR(heavy, 30, 1);  // 3:1
}

TEST_F(DispatcherTest, HigherPriorityFirstWithinATenant) {
  Make();
  auto w = Connect(W("w1"));
  Start(d_.get(), Spec("first", "t"));  // takes the slot
  Start(d_.get(), Spec("low", "t", -5));
  Start(d_.get(), Spec("mid", "t", 0));
  Start(d_.get(), Spec("high", "t", 7));
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    farm::v1::Task t = w->NextTask();
    order.push_back(t.request().key());
    ASSERT_TRUE(w->Finish(t).ok());
  }
  EXPECT_THAT(order, ElementsAre("first", "high", "mid", "low"));
}

TEST_F(DispatcherTest, FifoWithinEqualPriority) {
  Make();
  for (int i = 0; i < 6; ++i) Start(d_.get(), Spec(absl::StrCat("k", i), "t"));
  auto w = Connect(W("w1"));
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) {
    farm::v1::Task t = w->NextTask();
    order.push_back(t.request().key());
    ASSERT_TRUE(w->Finish(t).ok());
  }
  EXPECT_THAT(order, ElementsAre("k0", "k1", "k2", "k3", "k4", "k5"));
}

TEST_F(DispatcherTest, JoiningWithHigherPriorityRaisesTheTask) {
  Make();
  auto w = Connect(W("w1"));
  Start(d_.get(), Spec("first", "t"));
  Start(d_.get(), Spec("a", "t"));
  Start(d_.get(), Spec("b", "t"));
  Start(d_.get(), Spec("b", "t", 5));  // another build wants b, urgently
  std::vector<std::string> order;
  for (int i = 0; i < 3; ++i) {
    farm::v1::Task t = w->NextTask();
    order.push_back(t.request().key());
    ASSERT_TRUE(w->Finish(t).ok());
  }
  EXPECT_THAT(order, ElementsAre("first", "b", "a"));
}

TEST_F(DispatcherTest, QueueIsBounded) {
  options_.max_queued_tasks = 3;
  Make();
  for (int i = 0; i < 3; ++i) Start(d_.get(), Spec(absl::StrCat("k", i)));
  absl::StatusOr<uint64_t> full = d_->Submit(Spec("k3"), nullptr, [](auto) {});
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("max_queued_tasks 3"));
  // Joining a queued task adds no task: still accepted.
  EXPECT_TRUE(d_->Submit(Spec("k1"), nullptr, [](auto) {}).ok());
  EXPECT_EQ(d_->Stats().rejected, 1);
  // A worker takes one: there is room again.
  auto w = Connect(W("w1"));
  w->NextTask();
  EXPECT_TRUE(d_->Submit(Spec("k3"), nullptr, [](auto) {}).ok());
}

TEST_F(DispatcherTest, SameKeyFromTwoBuildsRunsOnceAndBothGetResultAndLogs) {
  Make();
  auto w = Connect(W("w1", 4));
  TaskSpec a = Spec("shared", "tenant-a");
  a.build_id = "build-a";
  TaskSpec b = Spec("shared", "tenant-b");
  b.build_id = "build-b";
  auto oa = Start(d_.get(), a);
  farm::v1::Task t = w->NextTask();
  ASSERT_TRUE(w->Log(t, "before b joined").ok());
  auto ob = Start(d_.get(), b);
  EXPECT_TRUE(w->Idle());  // no second dispatch
  ASSERT_TRUE(w->Log(t, "after b joined").ok());
  ASSERT_TRUE(w->Finish(t).ok());
  ASSERT_TRUE(oa->Wait());
  ASSERT_TRUE(ob->Wait());
  ASSERT_TRUE(oa->result.ok());
  ASSERT_TRUE(ob->result.ok());
  EXPECT_EQ(oa->result->layer().digest(), "sha256:shared");
  EXPECT_EQ(ob->result->layer().digest(), "sha256:shared");
  EXPECT_THAT(oa->Logs(), ElementsAre("before b joined", "after b joined"));
  EXPECT_THAT(ob->Logs(), ElementsAre("after b joined"));
  DispatchStats s = d_->Stats();
  EXPECT_EQ(s.dispatched, 1);
  EXPECT_EQ(s.deduplicated, 1);
  EXPECT_EQ(s.submitted, 1);
}

TEST_F(DispatcherTest, QueuesSummarizesWaitingTasksByPlatformAndTenantAndReportsDispatches) {
  std::vector<std::pair<std::string, absl::Duration>> dispatched;
  options_.on_dispatch = [&](const std::string& platform, absl::Duration wait) {
    dispatched.emplace_back(platform, wait);
  };
  Make();
  const absl::Time t0 = clock_.Now();
  auto a1 = Start(d_.get(), Spec("a1", "team-a"));
  Advance(absl::Seconds(3));
  auto a2 = Start(d_.get(), Spec("a2", "team-a"));
  auto b1 = Start(d_.get(), Spec("b1", "team-b", 0, "linux/arm64"));
  std::vector<QueueSummary> q = d_->Queues();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].platform, "linux/amd64");
  EXPECT_EQ(q[0].tenant, "team-a");
  EXPECT_EQ(q[0].queued, 2);
  EXPECT_EQ(q[0].oldest_queued_at, t0);  // a1, the longest waiting
  EXPECT_EQ(q[1].platform, "linux/arm64");
  EXPECT_EQ(q[1].tenant, "team-b");
  EXPECT_EQ(q[1].queued, 1);

  Advance(absl::Seconds(2));
  auto w = Connect(W("w1"));
  farm::v1::Task t = w->NextTask();
  EXPECT_EQ(t.request().key(), "a1");
  ASSERT_EQ(dispatched.size(), 1u);
  EXPECT_EQ(dispatched[0].first, "linux/amd64");
  EXPECT_EQ(dispatched[0].second, absl::Seconds(5));
  q = d_->Queues();
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].queued, 1);  // a2 is left, and is now the oldest
  EXPECT_EQ(q[0].oldest_queued_at, t0 + absl::Seconds(3));
  ASSERT_TRUE(w->Finish(t).ok());
  ASSERT_TRUE(a1->Wait());
}

TEST_F(DispatcherTest, WrongPlatformNeverGetsTheTask) {
  Make();
  auto amd = Connect(W("amd", 4, "linux/amd64"));
  auto o = Start(d_.get(), Spec("arm-step", "", 0, "linux/arm64"));
  EXPECT_TRUE(amd->Idle());
  EXPECT_EQ(d_->Stats().queued, 1);
  // Aliases normalize: an aarch64 worker is linux/arm64.
  auto arm = Connect(W("arm", 1, "linux/aarch64"));
  farm::v1::Task t = arm->NextTask();
  EXPECT_EQ(t.request().key(), "arm-step");
  ASSERT_TRUE(arm->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  // The amd64 worker, free all along, saw nothing.
  EXPECT_TRUE(amd->Idle());
  auto amd_task = Start(d_.get(), Spec("amd-step"));
  EXPECT_EQ(amd->NextTask().request().key(), "amd-step");
  EXPECT_TRUE(arm->Idle());
}

FakeWorkerOptions Emulating(const std::string& id, const std::string& native,
                            std::vector<std::string> emulated, int slots = 1,
                            std::vector<std::string> chain_ids = {}) {
  FakeWorkerOptions o = W(id, slots, native, std::move(chain_ids));
  o.emulated_platforms = std::move(emulated);
  return o;
}

TEST_F(DispatcherTest, AnEmulatingWorkerGetsTheTaskWhenNoWorkerRunsItsPlatformNatively) {
  Make();
  auto amd = Connect(Emulating("amd", "linux/amd64", {"linux/aarch64"}));  // normalized
  auto o = Start(d_.get(), Spec("arm-step", "", 0, "linux/arm64"));
  farm::v1::Task t = amd->NextTask();
  EXPECT_EQ(t.request().key(), "arm-step");
  ASSERT_TRUE(amd->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(o->result->worker(), "amd");
  std::vector<farm::v1::WorkerInfo> workers = d_->Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].platform(), "linux/amd64");
  EXPECT_THAT(workers[0].emulated_platforms(), ElementsAre("linux/arm64"));
  // Its native platform's steps still reach it.
  Start(d_.get(), Spec("amd-step"));
  EXPECT_EQ(amd->NextTask().request().key(), "amd-step");
}

TEST_F(DispatcherTest, ANativeWorkerIsPreferredAndTheEmulatedOneWaits) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}, 4));
  auto arm = Connect(W("arm", 1, "linux/arm64"));
  auto first = Start(d_.get(), Spec("arm1", "", 0, "linux/arm64"));
  auto second = Start(d_.get(), Spec("arm2", "", 0, "linux/arm64"));
  farm::v1::Task t1 = arm->NextTask();
  EXPECT_EQ(t1.request().key(), "arm1");
  // The native worker is busy, the emulating one free with 4 slots: arm2 waits for the native.
  EXPECT_TRUE(emu->Idle());
  EXPECT_EQ(d_->Stats().queued, 1);
  ASSERT_TRUE(arm->Finish(t1).ok());
  farm::v1::Task t2 = arm->NextTask();
  EXPECT_EQ(t2.request().key(), "arm2");
  ASSERT_TRUE(arm->Finish(t2).ok());
  ASSERT_TRUE(second->Wait());
  EXPECT_EQ(second->result->worker(), "arm");
  EXPECT_TRUE(emu->Idle());
}

TEST_F(DispatcherTest, ANativeWorkerIsPreferredEvenWhenTheEmulatingOneHoldsTheLayers) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}, 1, {"sha256:c1"}));
  auto arm = Connect(W("arm", 1, "linux/arm64"));
  TaskSpec s = Spec("arm1", "", 0, "linux/arm64");
  s.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), s);
  EXPECT_EQ(arm->NextTask().request().key(), "arm1");
  EXPECT_TRUE(emu->Idle());
}

TEST_F(DispatcherTest, EmulatingWorkersTakeOverWhenTheLastNativeWorkerLeaves) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}));
  auto arm = Connect(W("arm", 1, "linux/arm64"));
  auto o1 = Start(d_.get(), Spec("arm1", "", 0, "linux/arm64"));
  auto o2 = Start(d_.get(), Spec("arm2", "", 0, "linux/arm64"));
  farm::v1::Task t1 = arm->NextTask();
  ASSERT_TRUE(arm->Finish(t1).ok());
  farm::v1::Task t2 = arm->NextTask();
  EXPECT_EQ(t2.request().key(), "arm2");
  auto o3 = Start(d_.get(), Spec("arm3", "", 0, "linux/arm64"));
  EXPECT_TRUE(emu->Idle());
  // The native worker goes: the queued arm3 moves to the emulating worker at once (arm2, still
  // leased to the gone worker, waits lease_timeout for it as usual).
  arm->Disconnect();
  farm::v1::Task t3 = emu->NextTask();
  EXPECT_EQ(t3.request().key(), "arm3");
  ASSERT_TRUE(emu->Finish(t3).ok());
  ASSERT_TRUE(o3->Wait());
  EXPECT_EQ(o3->result->worker(), "emu");
  // It also gets arm2 once that lease is lost.
  Advance(absl::Seconds(20));
  ASSERT_TRUE(emu->Heartbeat({}).ok());  // emu stays alive
  Advance(absl::Seconds(11));
  farm::v1::Task again = emu->NextTask();
  EXPECT_EQ(again.request().key(), "arm2");
  ASSERT_TRUE(emu->Finish(again).ok());
  ASSERT_TRUE(o2->Wait());
}

TEST_F(DispatcherTest, EmulatingWorkersTakeOverWhenTheNativeWorkerDrains) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}));
  auto arm = Connect(W("arm", 1, "linux/arm64"));
  Start(d_.get(), Spec("arm1", "", 0, "linux/arm64"));
  farm::v1::Task t1 = arm->NextTask();
  Start(d_.get(), Spec("arm2", "", 0, "linux/arm64"));
  EXPECT_TRUE(emu->Idle());
  farm::v1::WorkerMessage hb;
  hb.mutable_heartbeat()->set_draining(true);
  *hb.mutable_heartbeat()->add_running() = FakeWorker::Running(t1);
  ASSERT_TRUE(arm->Send(hb).ok());
  EXPECT_EQ(emu->NextTask().request().key(), "arm2");
}

TEST_F(DispatcherTest, AFreedSlotServesTheNativeQueueFirst) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}));
  auto o = Start(d_.get(), Spec("amd0"));
  farm::v1::Task t0 = emu->NextTask();
  Start(d_.get(), Spec("arm1", "", 0, "linux/arm64"));
  Start(d_.get(), Spec("amd1"));
  ASSERT_TRUE(emu->Finish(t0).ok());
  farm::v1::Task t1 = emu->NextTask();
  EXPECT_EQ(t1.request().key(), "amd1");
  ASSERT_TRUE(emu->Finish(t1).ok());
  EXPECT_EQ(emu->NextTask().request().key(), "arm1");
}

TEST_F(DispatcherTest, AnEmulatedTaskThatWaitedLongGoesBeforeNewNativeWork) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}));
  auto o = Start(d_.get(), Spec("amd0"));
  farm::v1::Task t0 = emu->NextTask();
  Start(d_.get(), Spec("arm1", "", 0, "linux/arm64"));
  Start(d_.get(), Spec("amd1"));
  Advance(absl::Seconds(6));  // arm1 has waited past the starvation bound
  ASSERT_TRUE(emu->Finish(t0).ok());
  EXPECT_EQ(emu->NextTask().request().key(), "arm1");
}

TEST_F(DispatcherTest, ATaskForAPlatformNobodyServesStaysQueued) {
  Make();
  auto emu = Connect(Emulating("emu", "linux/amd64", {"linux/arm64"}, 4));
  auto o = Start(d_.get(), Spec("riscv-step", "", 0, "linux/riscv64"));
  EXPECT_TRUE(emu->Idle());
  EXPECT_EQ(d_->Stats().queued, 1);
  auto riscv = Connect(Emulating("other", "linux/amd64", {"linux/riscv64"}));
  EXPECT_EQ(riscv->NextTask().request().key(), "riscv-step");
  EXPECT_TRUE(emu->Idle());
}

TEST_F(DispatcherTest, AReconnectWithoutEmulationStopsTheEmulatedTasks) {
  Make();
  auto emu = Connect(Emulating("w1", "linux/amd64", {"linux/arm64"}));
  emu->Disconnect();
  auto plain = Connect(W("w1"));
  Start(d_.get(), Spec("arm1", "", 0, "linux/arm64"));
  EXPECT_TRUE(plain->Idle());
  EXPECT_TRUE(d_->Workers()[0].emulated_platforms().empty());
}

TEST_F(DispatcherTest, JunkEmulatedPlatformsAreRefusedNamingTheWorker) {
  Make();
  FakeWorker bad(d_->sessions(),
                 Emulating("w-bad", "linux/amd64", {"linux/arm64", "not a/pl@tform"}));
  absl::Status s = bad.Connect();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("w-bad"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a/pl@tform"));
  std::vector<std::string> many;
  for (int i = 0; i < 17; ++i) many.push_back(absl::StrCat("linux/arch", i));
  FakeWorker too_many(d_->sessions(), Emulating("w-many", "linux/amd64", many));
  s = too_many.Connect();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("w-many"));
  FakeWorker empty(d_->sessions(), Emulating("w-empty", "linux/amd64", {""}));
  EXPECT_EQ(empty.Connect().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(d_->Workers().empty());
  // Duplicates, aliases and the native platform itself are folded away.
  auto ok = Connect(Emulating("w-ok", "linux/amd64",
                              {"linux/arm64", "Linux/AArch64", "linux/amd64", "linux/x86_64"}));
  std::vector<farm::v1::WorkerInfo> workers = d_->Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_THAT(workers[0].emulated_platforms(), ElementsAre("linux/arm64"));
}

TEST_F(DispatcherTest, PrefersAFreeWorkerHoldingTheParentLayers) {
  Make();
  auto cold = Connect(W("cold", 4));
  auto warm = Connect(W("warm", 4, "", {"sha256:c1", "sha256:c2"}));
  auto half = Connect(W("half", 4, "", {"sha256:c1"}));
  TaskSpec s = Spec("k1");
  s.parent_chain_ids = {"sha256:c1", "sha256:c2", "sha256:c3"};
  Start(d_.get(), s);
  EXPECT_EQ(warm->NextTask().request().key(), "k1");
  EXPECT_TRUE(cold->Idle());
  EXPECT_TRUE(half->Idle());
}

TEST_F(DispatcherTest, WaitsBrieflyForABusyWarmWorkerWhileOthersTakeFreeSlots) {
  Make();
  auto warm = Connect(W("warm", 1, "", {"sha256:c1"}));
  TaskSpec filler = Spec("filler");
  filler.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), filler);
  farm::v1::Task running = warm->NextTask();
  auto cold = Connect(W("cold", 1));
  TaskSpec s = Spec("wants-warm");
  s.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), s);
  Start(d_.get(), Spec("no-parents"));
  // The cold worker's free slot goes to the task without locality, not to "wants-warm".
  EXPECT_EQ(cold->NextTask().request().key(), "no-parents");
  // When the warm worker frees up, it gets "wants-warm".
  ASSERT_TRUE(warm->Finish(running).ok());
  EXPECT_EQ(warm->NextTask().request().key(), "wants-warm");
}

TEST_F(DispatcherTest, LocalityNeverStarvesAnIdleWorkerBeyondTheWait) {
  Make();
  auto warm = Connect(W("warm", 1, "", {"sha256:c1"}));
  TaskSpec filler = Spec("filler");
  filler.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), filler);
  warm->NextTask();  // stays busy
  auto cold = Connect(W("cold", 1));
  TaskSpec s = Spec("wants-warm");
  s.parent_chain_ids = {"sha256:c1"};
  auto o = Start(d_.get(), s);
  EXPECT_TRUE(cold->Idle());
  Advance(options_.locality_wait);
  EXPECT_EQ(cold->NextTask().request().key(), "wants-warm");
}

TEST_F(DispatcherTest, NoMoreTasksWaitForAWarmWorkerThanItHasSlots) {
  Make();
  auto warm = Connect(W("warm", 1, "", {"sha256:c1"}));
  TaskSpec filler = Spec("filler");
  filler.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), filler);
  farm::v1::Task running = warm->NextTask();
  for (int i = 0; i < 3; ++i) {
    TaskSpec s = Spec(absl::StrCat("wants-warm", i));
    s.parent_chain_ids = {"sha256:c1"};
    Start(d_.get(), s);
  }
  // One waits for the warm worker's single slot; the others go to idle workers at once.
  auto cold1 = Connect(W("cold1", 1));
  auto cold2 = Connect(W("cold2", 1));
  std::set<std::string> cold_keys = {cold1->NextTask().request().key(),
                                     cold2->NextTask().request().key()};
  EXPECT_EQ(cold_keys, (std::set<std::string>{"wants-warm1", "wants-warm2"}));
  ASSERT_TRUE(warm->Finish(running).ok());
  EXPECT_EQ(warm->NextTask().request().key(), "wants-warm0");
}

TEST_F(DispatcherTest, LocalityWaitingCanBeTurnedOff) {
  options_.locality_wait = absl::ZeroDuration();
  Make();
  auto warm = Connect(W("warm", 1, "", {"sha256:c1"}));
  TaskSpec filler = Spec("filler");
  filler.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), filler);
  warm->NextTask();
  auto cold = Connect(W("cold", 1));
  TaskSpec s = Spec("wants-warm");
  s.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), s);
  EXPECT_EQ(cold->NextTask().request().key(), "wants-warm");
}

TEST_F(DispatcherTest, ParkedTaskReturnsWhenItsWarmWorkerLeaves) {
  Make();
  auto warm = Connect(W("warm", 1, "", {"sha256:c1"}));
  TaskSpec filler = Spec("filler");
  filler.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), filler);
  warm->NextTask();
  auto cold = Connect(W("cold", 1));
  TaskSpec s = Spec("wants-warm");
  s.parent_chain_ids = {"sha256:c1"};
  Start(d_.get(), s);
  EXPECT_TRUE(cold->Idle());
  warm->Disconnect();
  EXPECT_EQ(cold->NextTask().request().key(), "wants-warm");
}

TEST_F(DispatcherTest, MissedHeartbeatsLoseTheLeaseAndTheTaskMovesToAnotherWorker) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task first = w1->NextTask();
  auto w2 = Connect(W("w2"));
  Advance(absl::Seconds(20));
  ASSERT_TRUE(w2->Heartbeat({}).ok());  // w2 stays alive, w1 is silent
  Advance(absl::Seconds(11));
  farm::v1::Task second = w2->NextTask();
  EXPECT_EQ(second.request().key(), "k1");
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_NE(second.lease_id(), first.lease_id());
  farm::v1::CancelTask cancel = w1->NextCancel();
  EXPECT_EQ(cancel.lease_id(), first.lease_id());
  EXPECT_THAT(cancel.reason(), HasSubstr("stopped heartbeating"));
  // w1's late result is ignored: the caller still waits for w2.
  ASSERT_TRUE(w1->Finish(first, 99).ok());
  EXPECT_FALSE(o->done.HasBeenNotified());
  EXPECT_EQ(d_->Stats().late_messages, 1);
  ASSERT_TRUE(w2->Finish(second, 0).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok());
  EXPECT_EQ(o->result->exit_code(), 0);
  EXPECT_EQ(d_->Stats().requeued, 1);
}

TEST_F(DispatcherTest, AStepTheWorkerCancelsOnItsOwnRunsElsewhere) {
  // A worker shutting down reports its running steps CANCELLED: that is not the build's
  // answer, the step is requeued.
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task first = w1->NextTask();
  auto w2 = Connect(W("w2"));
  ASSERT_TRUE(w1->Fail(first, absl::CancelledError("worker w1 is shutting down")).ok());
  farm::v1::Task second = w2->NextTask();
  EXPECT_EQ(second.request().key(), "k1");
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_FALSE(o->done.HasBeenNotified());
  ASSERT_TRUE(w2->Finish(second, 0).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(d_->Stats().requeued, 1);
  EXPECT_TRUE(WaitEvent("worker w1 stopped it: worker w1 is shutting down"));
}

TEST_F(DispatcherTest, ADrainingWorkerGetsNoTasksAndWhatItRefusesRunsElsewhere) {
  Make();
  auto w1 = Connect(W("w1", 2));
  auto a = Start(d_.get(), Spec("a"));
  farm::v1::Task ta = w1->NextTask();
  auto b = Start(d_.get(), Spec("b"));
  farm::v1::Task tb = w1->NextTask();  // sent before w1 says it drains
  auto w2 = Connect(W("w2"));
  farm::v1::WorkerMessage m;
  m.mutable_heartbeat()->set_draining(true);
  *m.mutable_heartbeat()->add_running() = FakeWorker::Running(ta);
  *m.mutable_heartbeat()->add_running() = FakeWorker::Running(tb);
  ASSERT_TRUE(w1->Send(m).ok());
  EXPECT_TRUE(WaitEvent("worker w1 is shutting down"));
  // Its running step is cancelled by the worker: it goes to w2, never back to w1.
  ASSERT_TRUE(w1->Fail(ta, absl::CancelledError("worker w1 is shutting down")).ok());
  farm::v1::Task again = w2->NextTask();
  EXPECT_EQ(again.request().key(), "a");
  EXPECT_TRUE(w1->Idle());
  // The step it refuses (UNAVAILABLE while draining) is requeued too; w2 takes it once free.
  ASSERT_TRUE(w1->Fail(tb, absl::UnavailableError("worker w1 is shutting down")).ok());
  EXPECT_TRUE(w1->Idle());
  EXPECT_FALSE(b->done.HasBeenNotified());
  ASSERT_TRUE(w2->Finish(again).ok());
  ASSERT_TRUE(a->Wait());
  EXPECT_TRUE(a->result.ok()) << a->result.status();
  farm::v1::Task tb2 = w2->NextTask();
  EXPECT_EQ(tb2.request().key(), "b");
  ASSERT_TRUE(w2->Finish(tb2).ok());
  ASSERT_TRUE(b->Wait());
  EXPECT_TRUE(b->result.ok()) << b->result.status();
  EXPECT_EQ(d_->Stats().requeued, 2);
}

TEST_F(DispatcherTest, UnavailableFromAWorkerThatIsNotDrainingIsTheStepsError) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  ASSERT_TRUE(w1->Fail(t, absl::UnavailableError("farm-cache unreachable")).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_EQ(o->result.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(DispatcherTest, ACancelTheSchedulerAskedForEndsTheTask) {
  // CANCELLED for a step the scheduler canceled is the expected confirmation: no requeue.
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  auto w2 = Connect(W("w2"));
  d_->Cancel(o->ticket);
  ASSERT_TRUE(o->Wait());
  EXPECT_EQ(o->result.status().code(), absl::StatusCode::kCancelled);
  farm::v1::CancelTask c = w1->NextCancel();
  EXPECT_EQ(c.lease_id(), t.lease_id());
  ASSERT_TRUE(w1->Fail(t, absl::CancelledError("cancelled")).ok());
  EXPECT_TRUE(w2->Idle());
  EXPECT_EQ(d_->Stats().requeued, 0);
}

TEST_F(DispatcherTest, HeartbeatsListingTheTaskKeepTheLease) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  auto w2 = Connect(W("w2"));
  for (int i = 0; i < 10; ++i) {  // 100 s of a long step
    Advance(absl::Seconds(10));
    ASSERT_TRUE(w1->Heartbeat({t}).ok());
    ASSERT_TRUE(w2->Heartbeat({}).ok());
  }
  EXPECT_TRUE(w2->Idle());
  ASSERT_TRUE(w1->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok());
  EXPECT_EQ(d_->Stats().requeued, 0);
}

TEST_F(DispatcherTest, ATaskTheWorkerStopsReportingIsLost) {
  Make();
  auto w1 = Connect(W("w1", 2));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  for (int i = 0; i < 4; ++i) {  // w1 heartbeats, but without the task (it lost it)
    Advance(absl::Seconds(10));
    ASSERT_TRUE(w1->Heartbeat({}).ok());
  }
  farm::v1::SchedulerMessage m1 = *w1->NextMessage(kWait);
  farm::v1::SchedulerMessage m2 = *w1->NextMessage(kWait);
  // The cancel of the old lease and the new attempt, in that order.
  ASSERT_TRUE(m1.has_cancel()) << m1.ShortDebugString();
  EXPECT_THAT(m1.cancel().reason(), HasSubstr("stopped reporting the task"));
  ASSERT_TRUE(m2.has_task());
  EXPECT_EQ(m2.task().attempt(), 2);
}

TEST_F(DispatcherTest, DroppedStreamLosesLeasesAfterTheTimeout) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  w1->NextTask();
  auto w2 = Connect(W("w2"));
  Advance(absl::Seconds(20));
  w1->Disconnect();
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  Advance(absl::Seconds(29));  // 29 s after the drop: still w1's
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  EXPECT_TRUE(w2->Idle());
  Advance(absl::Seconds(1));
  farm::v1::Task t = w2->NextTask();
  EXPECT_EQ(t.attempt(), 2);
  ASSERT_TRUE(w2->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok());
  std::vector<farm::v1::WorkerInfo> workers = d_->Workers();
  ASSERT_EQ(workers.size(), 2u);
  EXPECT_FALSE(workers[0].connected());
}

TEST_F(DispatcherTest, ReconnectListingTheTaskKeepsTheLease) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  auto w2 = Connect(W("w2"));
  w1->Disconnect();
  Advance(absl::Seconds(10));
  ASSERT_TRUE(w1->Connect({FakeWorker::Running(t)}).ok());
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  Advance(absl::Seconds(25));  // past the drop's timeout: the reconnect renewed the lease
  ASSERT_TRUE(w1->Heartbeat({t}).ok());
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  EXPECT_TRUE(w2->Idle());
  ASSERT_TRUE(w1->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok());
  EXPECT_EQ(d_->Stats().dispatched, 1);
}

TEST_F(DispatcherTest, ResultSentRightAfterReconnectingIsAccepted) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  w1->Disconnect();
  Advance(absl::Seconds(5));
  ASSERT_TRUE(w1->Connect({}).ok());  // finished while away: not running any more
  ASSERT_TRUE(w1->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok()) << o->result.status();
}

TEST_F(DispatcherTest, LeaseNotListedAtTheFirstHeartbeatAfterReconnectIsRequeued) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  w1->Disconnect();
  ASSERT_TRUE(w1->Connect({}).ok());  // the Task never reached it
  ASSERT_TRUE(w1->Heartbeat({}).ok());
  EXPECT_EQ(w1->NextCancel().lease_id(), t.lease_id());
  farm::v1::Task again = w1->NextTask();  // requeued at once, not after the lease timeout
  EXPECT_EQ(again.request().key(), "k1");
  EXPECT_EQ(again.attempt(), 2);
}

TEST_F(DispatcherTest, MaxAttemptsAbortsWithTheHistory) {
  options_.max_attempts = 2;
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  w1->NextTask();
  auto w2 = Connect(W("w2"));
  w1->Disconnect();
  Advance(absl::Seconds(15));
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  Advance(absl::Seconds(15));
  w2->NextTask();
  Advance(absl::Seconds(31));  // w2 goes silent too
  ASSERT_TRUE(o->Wait());
  EXPECT_EQ(o->result.status().code(), absl::StatusCode::kAborted);
  EXPECT_THAT(o->result.status().message(), HasSubstr("RUN k1"));
  EXPECT_THAT(o->result.status().message(), HasSubstr("attempt 1 on worker w1 (lease "));
  EXPECT_THAT(o->result.status().message(), HasSubstr("did not come back within 30s"));
  EXPECT_THAT(o->result.status().message(), HasSubstr("attempt 2 on worker w2"));
  EXPECT_THAT(o->result.status().message(), HasSubstr("stopped heartbeating"));
  EXPECT_EQ(d_->Stats().aborted, 1);
}

TEST_F(DispatcherTest, LateLogOfALostLeaseIsIgnoredAndAnsweredWithCancel) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task first = w1->NextTask();
  w1->Disconnect();
  auto w2 = Connect(W("w2"));
  Advance(absl::Seconds(15));
  ASSERT_TRUE(w2->Heartbeat({}).ok());
  Advance(absl::Seconds(15));
  farm::v1::Task second = w2->NextTask();
  ASSERT_TRUE(w1->Connect({}).ok());
  ASSERT_TRUE(w1->Log(first, "zombie output").ok());
  farm::v1::CancelTask c = w1->NextCancel();
  EXPECT_EQ(c.lease_id(), first.lease_id());
  ASSERT_TRUE(w2->Log(second, "real output").ok());
  ASSERT_TRUE(w2->Finish(second).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_THAT(o->Logs(), ElementsAre("real output"));
}

TEST_F(DispatcherTest, WorkerBackAfterItsLeaseWasLostIsAdoptedIfTheTaskStillWaits) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  w1->Disconnect();
  Advance(absl::Seconds(30));  // lost; requeued, but no other worker is there
  ASSERT_TRUE(WaitEvent("requeued"));
  ASSERT_TRUE(w1->Connect({FakeWorker::Running(t)}).ok());  // it kept running it
  EXPECT_TRUE(w1->Idle());                                  // no CancelTask, no second run
  ASSERT_TRUE(w1->Finish(t).ok());
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(d_->Stats().adopted, 1);
  EXPECT_EQ(d_->Stats().dispatched, 1);
}

TEST_F(DispatcherTest, AWorkerCannotClaimQueuedWorkWithALeaseIdOfItsOwn) {
  Make();
  auto o = Start(d_.get(), Spec("k1"));  // queued: no worker yet
  farm::v1::RunningTask forged;
  forged.set_task_id("mine");
  forged.set_lease_id("made-up-lease");
  forged.set_key("k1");
  auto rogue = Connect(W("rogue"), {forged});
  // It is told to stop the run it claims and gets the task only as a fresh lease.
  EXPECT_EQ(rogue->NextCancel().lease_id(), "made-up-lease");
  farm::v1::Task t = rogue->NextTask();
  EXPECT_NE(t.lease_id(), "made-up-lease");
  EXPECT_EQ(t.lease_id().size(), 65u);  // 128 random bits and a 128-bit MAC
  EXPECT_EQ(d_->Stats().adopted, 0);
}

TEST_F(DispatcherTest, OnlyTheWorkerALostLeaseWasIssuedToCanAdoptIt) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  w1->Disconnect();
  Advance(absl::Seconds(30));  // lost; requeued
  ASSERT_TRUE(WaitEvent("requeued"));
  // Another worker presents w1's lease: refused, and it is not adopted.
  auto w2 = Connect(W("w2"), {FakeWorker::Running(t)});
  EXPECT_EQ(w2->NextCancel().lease_id(), t.lease_id());
  EXPECT_EQ(d_->Stats().adopted, 0);
}

// A worker cannot finish another worker's task, nor its own with a lease id it changed: the
// result is refused (CancelTask for that lease, one log line naming the worker) and the real
// lease holder's result still counts.
TEST_F(DispatcherTest, AResultForALeaseTheWorkerDoesNotHoldIsRefusedAndLogged) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  auto rogue = Connect(W("rogue"));
  ASSERT_TRUE(rogue->Finish(t, 0).ok());  // w1's task and lease
  EXPECT_EQ(rogue->NextCancel().lease_id(), t.lease_id());
  ASSERT_TRUE(WaitEvent("worker rogue: result for task"));
  ASSERT_TRUE(WaitEvent("refused: that lease is worker w1's, not rogue's"));
  farm::v1::Task forged = t;
  forged.mutable_lease_id()->back() ^= 1;  // its own lease, one byte changed
  ASSERT_TRUE(w1->Finish(forged, 0).ok());
  EXPECT_EQ(w1->NextCancel().lease_id(), forged.lease_id());
  ASSERT_TRUE(WaitEvent("worker w1: result for task"));
  ASSERT_TRUE(WaitEvent("refused: no current lease has that id"));
  EXPECT_FALSE(o->done.HasBeenNotified());
  EXPECT_EQ(d_->Stats().completed, 0);
  ASSERT_TRUE(w1->Finish(t, 0).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(d_->Stats().completed, 1);
}

// The result says which worker it came from, whatever the worker wrote there.
TEST_F(DispatcherTest, TheResultNamesTheWorkerItCameFrom) {
  Make();
  auto w = Connect(W("w3"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  farm::v1::WorkerMessage m;
  m.mutable_result()->set_task_id(t.task_id());
  m.mutable_result()->set_lease_id(t.lease_id());
  m.mutable_result()->mutable_result()->set_worker("w1");  // framing another worker
  ASSERT_TRUE(w->Send(m).ok());
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_EQ(o->result->worker(), "w3");
}

TEST_F(DispatcherTest, TaskCanceledWhileItsWorkerWasAwayIsCanceledWhenItReturns) {
  Make();
  auto w1 = Connect(W("w1"));
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w1->NextTask();
  w1->Disconnect();
  d_->Cancel(o->ticket);
  ASSERT_TRUE(w1->Connect({FakeWorker::Running(t)}).ok());
  EXPECT_EQ(w1->NextCancel().lease_id(), t.lease_id());
}

TEST_F(DispatcherTest, CancelingTheLastCallerCancelsTheTaskOnItsWorker) {
  Make();
  auto w = Connect(W("w1"));
  auto a = Start(d_.get(), Spec("k1"));
  auto b = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  d_->Cancel(a->ticket);
  ASSERT_TRUE(a->Wait());
  EXPECT_EQ(a->result.status().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(w->Idle());  // b still waits for it
  d_->Cancel(b->ticket);
  ASSERT_TRUE(b->Wait());
  farm::v1::CancelTask c = w->NextCancel();
  EXPECT_EQ(c.task_id(), t.task_id());
  EXPECT_EQ(c.lease_id(), t.lease_id());
  // The slot stays taken until the worker confirms (its result); then it is free again.
  Start(d_.get(), Spec("k2"));
  EXPECT_TRUE(w->Idle());
  ASSERT_TRUE(w->Fail(t, absl::CancelledError("killed")).ok());
  EXPECT_EQ(w->NextTask().request().key(), "k2");
  EXPECT_EQ(d_->Stats().canceled, 1);
}

TEST_F(DispatcherTest, RunReturnsCancelledWhenTheBuildCancels) {
  Make();
  auto w = Connect(W("w1"));
  absl::Notification cancel;
  absl::StatusOr<farm::v1::StepResult> result;
  std::thread caller([&] { result = d_->Run(Spec("k1"), nullptr, &cancel); });
  farm::v1::Task t = w->NextTask();
  cancel.Notify();
  caller.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  farm::v1::CancelTask c = w->NextCancel();
  EXPECT_EQ(c.lease_id(), t.lease_id());
}

TEST_F(DispatcherTest, CancelingAQueuedTaskDropsIt) {
  Make();
  auto o = Start(d_.get(), Spec("k1"));
  EXPECT_EQ(d_->Stats().queued, 1);
  d_->Cancel(o->ticket);
  ASSERT_TRUE(o->Wait());
  EXPECT_EQ(d_->Stats().queued, 0);
  auto w = Connect(W("w1"));
  EXPECT_TRUE(w->Idle());
}

TEST_F(DispatcherTest, ASecondConnectionOfTheSameWorkerReplacesTheFirst) {
  Make();
  auto first = Connect(W("w1"));
  auto second = std::make_unique<FakeWorker>(d_->sessions(), W("w1"));
  ASSERT_TRUE(second->Connect().ok());
  ASSERT_TRUE(first->stream().WaitClosed(kWait));
  EXPECT_EQ(first->stream().close_status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(first->Heartbeat({}).code(), absl::StatusCode::kAborted);
  Start(d_.get(), Spec("k1"));
  EXPECT_EQ(second->NextTask().request().key(), "k1");
  EXPECT_EQ(d_->Workers().size(), 1u);
}

TEST_F(DispatcherTest, BadHellosAreRejected) {
  Make();
  FakeWorker no_slots(d_->sessions(), W("w1", 0));
  EXPECT_EQ(no_slots.Connect().code(), absl::StatusCode::kInvalidArgument);
  FakeWorker no_id(d_->sessions(), W("", 1));
  EXPECT_EQ(no_id.Connect().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(DispatcherTest, ShutdownFailsWaitingCallersWithUnavailable) {
  Make();
  auto o = Start(d_.get(), Spec("k1"));
  d_->Shutdown();
  ASSERT_TRUE(o->Wait());
  EXPECT_EQ(o->result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(d_->Submit(Spec("k2"), nullptr, [](auto) {}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST(NormalizePlatformTest, Aliases) {
  EXPECT_EQ(NormalizePlatform(""), "linux/amd64");
  EXPECT_EQ(NormalizePlatform("Linux/X86_64"), "linux/amd64");
  EXPECT_EQ(NormalizePlatform("linux/aarch64"), "linux/arm64");
  EXPECT_EQ(NormalizePlatform("linux/arm64/v8"), "linux/arm64");
  EXPECT_EQ(NormalizePlatform("linux/arm/v7"), "linux/arm/v7");
  EXPECT_EQ(NormalizePlatform("arm64"), "linux/arm64");
}

TEST(DispatcherOptionsTest, BadOptionsAreRejected) {
  Options o;
  o.heartbeat_interval = absl::Seconds(40);
  EXPECT_EQ(Dispatcher::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.max_attempts = 0;
  EXPECT_EQ(Dispatcher::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.tenant_weights = {{"a", 0}};
  EXPECT_EQ(Dispatcher::Create(o).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace farm::scheduler::dispatch
