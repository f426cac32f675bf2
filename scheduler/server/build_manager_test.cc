#include "scheduler/server/build_manager.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/server/scheduler_service.h"

namespace farm::scheduler::server {
namespace {

using ::testing::HasSubstr;

// Runs RUN steps without running anything: each "RUN ["name"]" records `name`, and a step
// named "block*" waits until released (or canceled). No layers are made.
class FakeExecutor : public executor::StepExecutor {
 public:
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override {
    std::string name = request.has_run() && request.run().args_size() > 0
                           ? request.run().args(request.run().args_size() - 1)
                           : "?";
    {
      absl::MutexLock l(&mu_);
      started_.push_back(name);
    }
    if (log) log("running " + name, false);
    if (absl::StartsWith(name, "block")) {
      absl::MutexLock l(&mu_);
      auto released = [&] {
        mu_.AssertHeld();
        return release_ || (cancel != nullptr && cancel->HasBeenNotified());
      };
      while (!released()) mu_.AwaitWithTimeout(absl::Condition(&released), absl::Milliseconds(5));
      if (!release_) {
        ++canceled_;
        return absl::CancelledError("canceled");
      }
    }
    farm::v1::StepResult r;
    r.set_exit_code(absl::StartsWith(name, "fail") ? 3 : 0);
    return r;
  }

  void Release() {
    absl::MutexLock l(&mu_);
    release_ = true;
  }
  std::vector<std::string> started() {
    absl::MutexLock l(&mu_);
    return started_;
  }
  int canceled() {
    absl::MutexLock l(&mu_);
    return canceled_;
  }
  // Waits until `n` steps have started.
  bool WaitStarted(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [&] {
      mu_.AssertHeld();
      return started_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(20));
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> started_;
  bool release_ = false;
  int canceled_ = 0;
};

// Collects one subscription's events.
struct Collector {
  absl::Mutex mu;
  std::vector<farm::v1::BuildStreamEvent> events;
  std::optional<absl::Status> end;

  BuildManager::EventFn OnEvent() {
    return [this](const farm::v1::BuildStreamEvent& e) {
      absl::MutexLock l(&mu);
      events.push_back(e);
    };
  }
  BuildManager::EndFn OnEnd() {
    return [this](const absl::Status& s) {
      absl::MutexLock l(&mu);
      end = s;
    };
  }
  std::optional<absl::Status> WaitEnd() {
    absl::MutexLock l(&mu);
    auto ended = [&] {
      mu.AssertHeld();
      return end.has_value();
    };
    mu.AwaitWithTimeout(absl::Condition(&ended), absl::Seconds(30));
    return end;
  }
  std::optional<farm::v1::BuildOutcome> Outcome() {
    absl::MutexLock l(&mu);
    for (const auto& e : events) {
      if (e.event().has_outcome()) return e.event().outcome();
    }
    return std::nullopt;
  }
  std::vector<int64_t> Seqs() {
    absl::MutexLock l(&mu);
    std::vector<int64_t> s;
    for (const auto& e : events) s.push_back(e.seq());
    return s;
  }
};

class BuildManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("build-manager");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    cache::RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cas");
    auto cas = cache::RocksDbBlobStore::Create(o);
    ASSERT_TRUE(cas.ok()) << cas.status();
    cas_ = *std::move(cas);
    auto ac = cache::RocksDbActionCache::Create(cas_);
    ASSERT_TRUE(ac.ok()) << ac.status();
    ac_ = *std::move(ac);
    // The empty context: an empty REAPI Directory.
    ASSERT_TRUE(cas_->WriteBlob(common::Digest::Empty(), "").ok());
    exec_ = std::make_shared<FakeExecutor>();
  }

  std::unique_ptr<BuildManager> Open(int max_active = 4, int max_queued = 100,
                                     int keep_events_of_builds = 1000) {
    BuildManager::Options o;
    o.state_dir = common::JoinPath(tmp_->path(), "state");
    o.cas = cas_;
    o.ac = ac_;
    o.executors = [this](const BuildSpec& spec) {
      absl::MutexLock l(&mu_);
      specs_.push_back(spec);
      return exec_;
    };
    o.max_active_builds = max_active;
    o.max_queued_builds = max_queued;
    o.keep_events_of_builds = keep_events_of_builds;
    o.cache_address = "cache.example:9092";
    o.on_finished = [this](const farm::v1::BuildInfo& info) {
      absl::MutexLock l(&mu_);
      finished_.push_back(info);
    };
    auto m = BuildManager::Create(std::move(o));
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? *std::move(m) : nullptr;
  }

  static farm::v1::SubmitBuildRequest Request(const std::string& dockerfile,
                                              const std::string& tenant = "") {
    farm::v1::SubmitBuildRequest r;
    r.set_dockerfile(dockerfile);
    r.mutable_context()->set_digest(common::Digest::Empty().OciString());
    r.mutable_context()->set_size(0);
    r.set_tenant(tenant);
    r.mutable_layer_options()->set_source_date_epoch(0);
    return r;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<cache::RocksDbBlobStore> cas_;
  std::shared_ptr<cache::ActionCache> ac_;
  std::shared_ptr<FakeExecutor> exec_;
  absl::Mutex mu_;
  std::vector<BuildSpec> specs_;
  std::vector<farm::v1::BuildInfo> finished_ ABSL_GUARDED_BY(mu_);
};

TEST_F(BuildManagerTest, RunsABuildAndStreamsItsEvents) {
  auto m = Open();
  auto req = Request("FROM scratch\nRUN [\"one\"]\nRUN [\"two\"]\n", "team-a");
  req.add_tags("example.com/app:1");
  (*req.mutable_secrets())["tok"] = "s3cret";
  auto id = m->Submit(req);
  ASSERT_TRUE(id.ok()) << id.status();
  Collector c;
  auto sub = m->Subscribe(*id, 0, c.OnEvent(), c.OnEnd());
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_TRUE(c.WaitEnd().has_value());
  EXPECT_TRUE(c.end->ok()) << *c.end;
  auto outcome = c.Outcome();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_TRUE(outcome->ok()) << outcome->error();
  EXPECT_THAT(outcome->image_id(), HasSubstr("sha256:"));
  EXPECT_THAT(outcome->tags(), ::testing::ElementsAre("example.com/app:1"));
  EXPECT_EQ(exec_->started(), (std::vector<std::string>{"one", "two"}));
  // Seqs are 1, 2, 3, ... without gaps.
  std::vector<int64_t> seqs = c.Seqs();
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], static_cast<int64_t>(i + 1));

  auto info = m->Get(*id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->state(), farm::v1::BuildInfo::SUCCEEDED);
  EXPECT_EQ(info->steps_total(), 2);
  EXPECT_EQ(info->steps_done(), 2);
  EXPECT_EQ(info->tenant(), "team-a");
  EXPECT_EQ(info->last_seq(), seqs.back());
  {
    absl::MutexLock l(&mu_);
    ASSERT_EQ(specs_.size(), 1u);
    EXPECT_EQ(specs_[0].tenant, "team-a");
    EXPECT_EQ(specs_[0].cache_instance, "main");
    EXPECT_EQ(specs_[0].secrets.at("tok"), "s3cret");
  }

  // A late subscriber gets the whole log, then the end; one from the middle gets the rest.
  Collector late;
  auto sub2 = m->Subscribe(*id, 0, late.OnEvent(), late.OnEnd());
  ASSERT_TRUE(late.WaitEnd().has_value());
  EXPECT_EQ(late.Seqs(), seqs);
  Collector mid;
  auto sub3 = m->Subscribe(*id, 3, mid.OnEvent(), mid.OnEnd());
  ASSERT_TRUE(mid.WaitEnd().has_value());
  EXPECT_EQ(mid.Seqs(), std::vector<int64_t>(seqs.begin() + 3, seqs.end()));

  // The second build is fully cached: no step runs.
  auto id2 = m->Submit(Request("FROM scratch\nRUN [\"one\"]\nRUN [\"two\"]\n", "team-b"));
  ASSERT_TRUE(id2.ok());
  Collector c2;
  auto sub4 = m->Subscribe(*id2, 0, c2.OnEvent(), c2.OnEnd());
  ASSERT_TRUE(c2.WaitEnd().has_value());
  EXPECT_EQ(exec_->started().size(), 2u);
  ASSERT_TRUE(c2.Outcome().has_value());
  EXPECT_EQ(c2.Outcome()->cached_steps(), 2);
  EXPECT_EQ(c2.Outcome()->image_id(), outcome->image_id());
}

TEST_F(BuildManagerTest, ARunningSchedulerKeepsTheEventsOfOnlyTheNewestFinishedBuilds) {
  auto m = Open(/*max_active=*/4, /*max_queued=*/100, /*keep_events_of_builds=*/1);
  std::vector<std::string> ids;
  for (const char* step : {"one", "two"}) {
    auto id = m->Submit(Request(absl::StrCat("FROM scratch\nRUN [\"", step, "\"]\n")));
    ASSERT_TRUE(id.ok()) << id.status();
    Collector c;
    auto sub = m->Subscribe(*id, 0, c.OnEvent(), c.OnEnd());
    ASSERT_TRUE(sub.ok());
    ASSERT_TRUE(c.WaitEnd().has_value());
    ids.push_back(*id);
  }
  // Trimming happens as each build's thread ends: wait until the older log is gone.
  absl::Time deadline = absl::Now() + absl::Seconds(20);
  size_t older = 1;
  while (absl::Now() < deadline) {
    Collector c;
    auto sub = m->Subscribe(ids[0], 0, c.OnEvent(), c.OnEnd());
    ASSERT_TRUE(sub.ok());
    c.WaitEnd();
    older = c.Seqs().size();
    if (older == 0) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(older, 0u);  // its record stays (Get), its events are gone
  EXPECT_TRUE(m->Get(ids[0]).ok());
  Collector newest;
  auto sub = m->Subscribe(ids[1], 0, newest.OnEvent(), newest.OnEnd());
  ASSERT_TRUE(sub.ok());
  newest.WaitEnd();
  EXPECT_FALSE(newest.Seqs().empty());
}

TEST_F(BuildManagerTest, SecretsNeverReachTheDisk) {
  {
    auto m = Open();
    auto req = Request("FROM scratch\nRUN [\"one\"]\n");
    (*req.mutable_secrets())["tok"] = "pa55w0rd-never-on-disk";
    auto id = m->Submit(req);
    ASSERT_TRUE(id.ok());
    Collector c;
    auto sub = m->Subscribe(*id, 0, c.OnEvent(), c.OnEnd());
    ASSERT_TRUE(c.WaitEnd().has_value());
  }
  // Grep every file of the state directory.
  int files = 0;
  for (const auto& e :
       std::filesystem::recursive_directory_iterator(common::JoinPath(tmp_->path(), "state"))) {
    if (!e.is_regular_file()) continue;
    auto data = common::ReadFile(e.path().string());
    if (!data.ok()) continue;
    ++files;
    EXPECT_FALSE(absl::StrContains(*data, "pa55w0rd-never-on-disk")) << e.path();
  }
  EXPECT_GT(files, 3);
}

TEST_F(BuildManagerTest, SyntaxErrorsAreRejectedAtSubmitWithTheirPosition) {
  auto m = Open();
  auto req = Request("FROM scratch\nFROB x\n");
  req.set_dockerfile_name("app.Dockerfile");
  auto id = m->Submit(req);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(id.status().message(), HasSubstr("app.Dockerfile:2"));
  EXPECT_EQ(m->Submit(Request("")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BuildManagerTest, PlanningErrorsFailTheBuild) {
  auto m = Open();
  auto id = m->Submit(Request("FROM scratch\nCOPY missing.txt /\n"));
  ASSERT_TRUE(id.ok()) << id.status();
  Collector c;
  auto sub = m->Subscribe(*id, 0, c.OnEvent(), c.OnEnd());
  ASSERT_TRUE(c.WaitEnd().has_value());
  ASSERT_TRUE(c.Outcome().has_value());
  EXPECT_FALSE(c.Outcome()->ok());
  EXPECT_THAT(c.Outcome()->error(), HasSubstr("missing.txt"));
  EXPECT_EQ(m->Get(*id)->state(), farm::v1::BuildInfo::FAILED);
}

TEST_F(BuildManagerTest, OnFinishedIsCalledOnceWithEachEndedBuild) {
  auto m = Open();
  auto ok = m->Submit(Request("FROM scratch\nRUN [\"one\"]\n", "team-a"));
  auto bad = m->Submit(Request("FROM scratch\nRUN [\"fail-now\"]\n", "team-b"));
  ASSERT_TRUE(ok.ok());
  ASSERT_TRUE(bad.ok());
  for (const std::string& id : {*ok, *bad}) {
    Collector c;
    auto sub = m->Subscribe(id, 0, c.OnEvent(), c.OnEnd());
    ASSERT_TRUE(c.WaitEnd().has_value());
  }
  absl::MutexLock l(&mu_);
  ASSERT_EQ(finished_.size(), 2u);
  std::map<std::string, farm::v1::BuildInfo> by_id;
  for (const auto& info : finished_) by_id[info.build_id()] = info;
  EXPECT_EQ(by_id[*ok].state(), farm::v1::BuildInfo::SUCCEEDED);
  EXPECT_EQ(by_id[*ok].tenant(), "team-a");
  EXPECT_GE(by_id[*ok].finished_unix_micros(), by_id[*ok].started_unix_micros());
  EXPECT_GT(by_id[*ok].started_unix_micros(), 0);
  EXPECT_EQ(by_id[*bad].state(), farm::v1::BuildInfo::FAILED);
}

TEST_F(BuildManagerTest, FailingStepFailsTheBuild) {
  auto m = Open();
  auto id = m->Submit(Request("FROM scratch\nRUN [\"fail-now\"]\n"));
  ASSERT_TRUE(id.ok());
  Collector c;
  auto sub = m->Subscribe(*id, 0, c.OnEvent(), c.OnEnd());
  ASSERT_TRUE(c.WaitEnd().has_value());
  ASSERT_TRUE(c.Outcome().has_value());
  EXPECT_FALSE(c.Outcome()->ok());
  EXPECT_THAT(c.Outcome()->error(), HasSubstr("exit code: 3"));
}

TEST_F(BuildManagerTest, ClientRequestIdMakesSubmitIdempotent) {
  auto m = Open();
  auto req = Request("FROM scratch\nRUN [\"one\"]\n");
  req.set_client_request_id("req-42");
  auto a = m->Submit(req);
  auto b = m->Submit(req);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  farm::v1::ListBuildsRequest lr;
  EXPECT_EQ(m->List(lr)->size(), 1u);
}

TEST_F(BuildManagerTest, FullQueueIsResourceExhausted) {
  auto m = Open(/*max_active=*/1, /*max_queued=*/2);
  auto first = m->Submit(Request("FROM scratch\nRUN [\"block-1\"]\n"));
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(exec_->WaitStarted(1));
  ASSERT_TRUE(m->Submit(Request("FROM scratch\nRUN [\"q1\"]\n")).ok());
  ASSERT_TRUE(m->Submit(Request("FROM scratch\nRUN [\"q2\"]\n")).ok());
  auto full = m->Submit(Request("FROM scratch\nRUN [\"q3\"]\n"));
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.status().message(), HasSubstr("queue is full"));
  EXPECT_EQ(m->Info().queued_builds(), 2);
  EXPECT_EQ(m->Info().running_builds(), 1);
  EXPECT_EQ(m->Info().cache_address(), "cache.example:9092");
  exec_->Release();
}

TEST_F(BuildManagerTest, TenantsShareAdmissionFairly) {
  auto m = Open(/*max_active=*/1);
  // The big tenant's builds queue up behind a blocked one; the small tenant submits last.
  auto blocker = m->Submit(Request("FROM scratch\nRUN [\"block-0\"]\n", "big"));
  ASSERT_TRUE(blocker.ok());
  ASSERT_TRUE(exec_->WaitStarted(1));
  std::vector<std::string> ids;
  for (int i = 1; i <= 5; ++i) {
    auto id = m->Submit(Request(absl::StrCat("FROM scratch\nRUN [\"big-", i, "\"]\n"), "big"));
    ASSERT_TRUE(id.ok());
    ids.push_back(*id);
  }
  auto small = m->Submit(Request("FROM scratch\nRUN [\"small-1\"]\n", "small"));
  ASSERT_TRUE(small.ok());
  exec_->Release();
  Collector c;
  auto sub = m->Subscribe(ids.back(), 0, c.OnEvent(), c.OnEnd());
  ASSERT_TRUE(c.WaitEnd().has_value());
  std::vector<std::string> order = exec_->started();
  ASSERT_EQ(order.size(), 7u);
  // Round robin: after the blocked build, the tenants alternate: small runs second or third,
  // not after all five of big's.
  auto pos = std::find(order.begin(), order.end(), "small-1") - order.begin();
  EXPECT_LE(pos, 2) << absl::StrJoin(order, ",");
  // FIFO within the big tenant.
  std::vector<std::string> big;
  for (const auto& s : order) {
    if (absl::StartsWith(s, "big-")) big.push_back(s);
  }
  EXPECT_EQ(big, (std::vector<std::string>{"big-1", "big-2", "big-3", "big-4", "big-5"}));
}

TEST_F(BuildManagerTest, PriorityOrdersWithinATenant) {
  auto m = Open(/*max_active=*/1);
  ASSERT_TRUE(m->Submit(Request("FROM scratch\nRUN [\"block-0\"]\n", "t")).ok());
  ASSERT_TRUE(exec_->WaitStarted(1));
  auto low = Request("FROM scratch\nRUN [\"low\"]\n", "t");
  auto high = Request("FROM scratch\nRUN [\"high\"]\n", "t");
  high.set_priority(5);
  ASSERT_TRUE(m->Submit(low).ok());
  auto last = m->Submit(high);
  ASSERT_TRUE(last.ok());
  exec_->Release();
  ASSERT_TRUE(exec_->WaitStarted(3));
  EXPECT_EQ(exec_->started()[1], "high");
}

TEST_F(BuildManagerTest, CancelStopsARunningBuildAndDropsAQueuedOne) {
  auto m = Open(/*max_active=*/1);
  auto running = m->Submit(Request("FROM scratch\nRUN [\"block-1\"]\n"));
  ASSERT_TRUE(running.ok());
  ASSERT_TRUE(exec_->WaitStarted(1));
  auto queued = m->Submit(Request("FROM scratch\nRUN [\"never\"]\n"));
  ASSERT_TRUE(queued.ok());
  auto qi = m->Cancel(*queued);
  ASSERT_TRUE(qi.ok());
  EXPECT_EQ(qi->state(), farm::v1::BuildInfo::CANCELED);

  Collector c;
  auto sub = m->Subscribe(*running, 0, c.OnEvent(), c.OnEnd());
  ASSERT_TRUE(m->Cancel(*running).ok());
  ASSERT_TRUE(c.WaitEnd().has_value());
  EXPECT_EQ(exec_->canceled(), 1);
  ASSERT_TRUE(c.Outcome().has_value());
  EXPECT_EQ(c.Outcome()->error(), "canceled");
  EXPECT_EQ(m->Get(*running)->state(), farm::v1::BuildInfo::CANCELED);
  EXPECT_EQ(exec_->started(), std::vector<std::string>{"block-1"});
  EXPECT_EQ(m->Cancel("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(BuildManagerTest, RunningAndQueuedBuildsResumeAfterARestart) {
  std::string running_id, queued_id;
  int64_t seen = 0;
  {
    auto m = Open(/*max_active=*/1);
    auto r = m->Submit(Request("FROM scratch\nRUN [\"done-before\"]\nRUN [\"block-1\"]\n"));
    ASSERT_TRUE(r.ok());
    running_id = *r;
    ASSERT_TRUE(exec_->WaitStarted(2));
    auto q = m->Submit(Request("FROM scratch\nRUN [\"after-restart\"]\n"));
    ASSERT_TRUE(q.ok());
    queued_id = *q;
    Collector c;
    auto sub = m->Subscribe(running_id, 0, c.OnEvent(), c.OnEnd());
    m->Shutdown();
    ASSERT_TRUE(c.WaitEnd().has_value());
    EXPECT_EQ(c.end->code(), absl::StatusCode::kUnavailable);
    EXPECT_FALSE(c.Outcome().has_value());
    seen = c.Seqs().back();
    EXPECT_EQ(m->Get(running_id)->state(), farm::v1::BuildInfo::RUNNING);
  }
  exec_->Release();
  auto m = Open(/*max_active=*/1);
  // The client reattaches after what it saw; seqs continue.
  Collector c;
  auto sub = m->Subscribe(running_id, seen, c.OnEvent(), c.OnEnd());
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE(c.WaitEnd().has_value());
  EXPECT_TRUE(c.end->ok());
  ASSERT_TRUE(c.Outcome().has_value());
  EXPECT_TRUE(c.Outcome()->ok()) << c.Outcome()->error();
  EXPECT_EQ(c.Seqs().front(), seen + 1);
  // The step finished before the restart was a cache hit: it ran once.
  std::vector<std::string> started = exec_->started();
  EXPECT_EQ(std::count(started.begin(), started.end(), "done-before"), 1);
  EXPECT_EQ(c.Outcome()->cached_steps(), 1);
  Collector q;
  auto qsub = m->Subscribe(queued_id, 0, q.OnEvent(), q.OnEnd());
  ASSERT_TRUE(q.WaitEnd().has_value());
  ASSERT_TRUE(q.Outcome().has_value());
  EXPECT_TRUE(q.Outcome()->ok());
}

TEST_F(BuildManagerTest, ListFiltersAndOrdersNewestFirst) {
  auto m = Open(/*max_active=*/1);
  ASSERT_TRUE(m->Submit(Request("FROM scratch\nRUN [\"block-1\"]\n", "a")).ok());
  ASSERT_TRUE(exec_->WaitStarted(1));
  ASSERT_TRUE(m->Submit(Request("FROM scratch\nRUN [\"x\"]\n", "b")).ok());
  farm::v1::ListBuildsRequest all;
  auto builds = m->List(all);
  ASSERT_EQ(builds->size(), 2u);
  EXPECT_EQ((*builds)[0].tenant(), "b");
  farm::v1::ListBuildsRequest only_a;
  only_a.set_tenant("a");
  EXPECT_EQ(m->List(only_a)->size(), 1u);
  exec_->Release();
}

// The gRPC service: SubmitBuild streams the build; AttachBuild resumes after a seq.
TEST_F(BuildManagerTest, ServiceStreamsSubmitAndAttach) {
  auto m = Open();
  SchedulerService service(m.get(), [] {
    farm::v1::WorkerInfo w;
    w.set_id("w1");
    return std::vector<farm::v1::WorkerInfo>{w};
  });
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(port, 0);
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  auto stub = farm::v1::Scheduler::NewStub(channel);

  grpc::ClientContext ctx;
  auto reader = stub->SubmitBuild(&ctx, Request("FROM scratch\nRUN [\"one\"]\n"));
  farm::v1::BuildStreamEvent e;
  std::vector<farm::v1::BuildStreamEvent> events;
  while (reader->Read(&e)) events.push_back(e);
  grpc::Status st = reader->Finish();
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_GE(events.size(), 2u);
  // The header first: seq 0, the build id and its info, no event.
  EXPECT_EQ(events[0].seq(), 0);
  EXPECT_FALSE(events[0].has_event());
  EXPECT_EQ(events[0].info().build_id(), events[0].build_id());
  EXPECT_EQ(events[1].seq(), 1);
  EXPECT_TRUE(events.back().event().has_outcome());
  EXPECT_TRUE(events.back().event().outcome().ok());
  std::string id = events.back().build_id();

  grpc::ClientContext ctx2;
  farm::v1::AttachBuildRequest ar;
  ar.set_build_id(id);
  ar.set_after_seq(2);
  auto attach = stub->AttachBuild(&ctx2, ar);
  std::vector<int64_t> seqs;
  while (attach->Read(&e)) seqs.push_back(e.seq());
  ASSERT_TRUE(attach->Finish().ok());
  ASSERT_FALSE(seqs.empty());
  EXPECT_EQ(seqs.front(), 3);
  EXPECT_EQ(seqs.back(), events.back().seq());

  // Errors: a syntax error, an unknown build.
  grpc::ClientContext ctx3;
  auto bad = stub->SubmitBuild(&ctx3, Request("FROM scratch\nFROB x\n"));
  while (bad->Read(&e)) {
  }
  grpc::Status bs = bad->Finish();
  EXPECT_EQ(bs.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bs.error_message(), HasSubstr("Dockerfile:2"));
  grpc::ClientContext ctx4;
  ar.set_build_id("b-unknown");
  auto unknown = stub->AttachBuild(&ctx4, ar);
  while (unknown->Read(&e)) {
  }
  EXPECT_EQ(unknown->Finish().error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext ctx5;
  farm::v1::ListWorkersResponse workers;
  ASSERT_TRUE(stub->ListWorkers(&ctx5, {}, &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  grpc::ClientContext ctx6;
  farm::v1::BuildInfo info;
  farm::v1::GetBuildRequest gr;
  gr.set_build_id(id);
  ASSERT_TRUE(stub->GetBuild(&ctx6, gr, &info).ok());
  EXPECT_EQ(info.state(), farm::v1::BuildInfo::SUCCEEDED);

  // A stream open when the scheduler shuts down ends UNAVAILABLE (the client reattaches).
  auto blocked = m->Submit(Request("FROM scratch\nRUN [\"block-x\"]\n"));
  ASSERT_TRUE(blocked.ok());
  grpc::ClientContext ctx7;
  ar.set_build_id(*blocked);
  ar.set_after_seq(0);
  auto live = stub->AttachBuild(&ctx7, ar);
  ASSERT_TRUE(exec_->WaitStarted(2));
  std::thread stopper([&] { m->Shutdown(); });
  while (live->Read(&e)) {
  }
  EXPECT_EQ(live->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  stopper.join();
  server->Shutdown();
}

}  // namespace
}  // namespace farm::scheduler::server

namespace farm::scheduler::server {
namespace {

TEST(PlatformsServedTest, RefusesAPlatformNoWorkerRunsUnlessThereAreNoWorkers) {
  EXPECT_TRUE(PlatformsServed({}, {"linux/s390x"}).ok());  // scaled to zero: it waits
  farm::v1::WorkerInfo amd;
  amd.set_platform("linux/amd64");
  amd.add_emulated_platforms("linux/arm64");
  EXPECT_TRUE(PlatformsServed({amd}, {"linux/amd64", "linux/arm64"}).ok());
  absl::Status s = PlatformsServed({amd}, {"linux/amd64", "linux/s390x"});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("no worker of this farm runs linux/s390x"));
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("linux/arm64 (emulated)"));
}

}  // namespace
}  // namespace farm::scheduler::server
