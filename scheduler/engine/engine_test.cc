// The engine on its own: plans made by the real planner over a small context, steps run by a
// fake executor, stores in memory.
#include "scheduler/engine/engine.h"

#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/context/context.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"

namespace farm::scheduler::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// A RUN's last argument says what it does: "fail" exits 1, "slow" takes 150 ms, "layer" makes
// a (fake) layer; the executor notes when each step ran.
class FakeExecutor : public executor::StepExecutor {
 public:
  explicit FakeExecutor(std::shared_ptr<cache::BlobStore> cas) : cas_(std::move(cas)) {}

  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override {
    std::string what = request.has_run() && request.run().args_size() > 0
                           ? request.run().args(request.run().args_size() - 1)
                           : "copy";
    absl::Time start = absl::Now();
    if (log) log("doing " + what, what == "fail");
    if (log && absl::StartsWith(what, "chatty")) {
      for (int i = 0; i < 100; ++i) log(std::string(99, 'x'), false);  // 10000 bytes
    }
    if (request.has_run()) last_timeout_ = request.run().timeout_seconds();
    if (absl::StartsWith(what, "slow")) {
      if (cancel != nullptr && cancel->WaitForNotificationWithTimeout(absl::Milliseconds(150))) {
        return absl::CancelledError("killed");
      }
    }
    farm::v1::StepResult r;
    r.set_exit_code(what == "fail" ? 1 : 0);
    if (absl::StartsWith(what, "layer")) {
      farm::v1::Layer* l = r.mutable_layer();
      absl::StatusOr<common::Digest> d = common::DigestOf(what);
      if (store_behind_) {
        // Stored later, by Sync (as LocalStepExecutor::Options::store_layers_behind).
        r.set_store_pending(true);
        absl::MutexLock lock(&mu_);
        pending_.push_back(what);
      } else {
        d = cas_->Put(what);  // the "layer" blob
      }
      if (!d.ok()) return d.status();
      l->set_digest(d->OciString());
      l->set_size(d->size_bytes);
      l->set_diff_id(common::DigestOf("diff " + what).OciString());
      l->set_media_type("application/vnd.oci.image.layer.v1.tar+gzip");
    }
    absl::MutexLock lock(&mu_);
    runs_.push_back({what, start, absl::Now()});
    return r;
  }

  absl::Status Sync() override {
    absl::MutexLock lock(&mu_);
    ++syncs_;
    if (!sync_error_.ok()) return sync_error_;
    for (const std::string& what : pending_) {
      if (absl::StatusOr<common::Digest> d = cas_->Put(what); !d.ok()) return d.status();
    }
    pending_.clear();
    return absl::OkStatus();
  }
  bool store_behind_ = false;
  absl::Status sync_error_;
  int syncs() {
    absl::MutexLock lock(&mu_);
    return syncs_;
  }

  struct Run {
    std::string what;
    absl::Time start, end;
  };
  std::vector<Run> runs() {
    absl::MutexLock lock(&mu_);
    return runs_;
  }
  int64_t last_timeout_ = -1;
  std::vector<std::string> names() {
    std::vector<std::string> out;
    for (const Run& r : runs()) out.push_back(r.what);
    return out;
  }

 private:
  std::shared_ptr<cache::BlobStore> cas_;
  absl::Mutex mu_;
  std::vector<Run> runs_;
  std::vector<std::string> pending_;
  int syncs_ = 0;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("engine");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    ASSERT_TRUE(common::WriteFileAtomic(common::JoinPath(tmp_->path(), "a.txt"), "alpha").ok());
    auto snap = context::Snapshot::FromDirectory(tmp_->path(), {}, {});
    ASSERT_TRUE(snap.ok()) << snap.status();
    snapshot_ = *std::move(snap);
  }

  plan::Plan MakePlan(const std::string& dockerfile) {
    auto tree = dockerfile::Parse(dockerfile, "Dockerfile");
    EXPECT_TRUE(tree.ok()) << tree.status();
    auto df = dockerfile::BuildInstructions(*tree);
    EXPECT_TRUE(df.ok()) << df.status();
    plan::PlanOptions po;
    po.context = &snapshot_->tree();
    po.context_root = snapshot_->root();
    auto p = plan::MakePlan(*df, po);
    EXPECT_TRUE(p.ok()) << p.status();
    return *std::move(p);
  }

  absl::StatusOr<BuildOutput> Build(const plan::Plan& plan, BuildRequest req = {},
                                    const absl::Notification* cancel = nullptr) {
    req.plan = &plan;
    req.dockerfile = "Dockerfile";
    events_.clear();
    EngineDeps deps{cas_, ac_, executor_};
    return RunBuild(
        deps, req, [this](const farm::v1::BuildEvent& e) { events_.push_back(e); }, cancel);
  }

  std::vector<std::string> States() {
    std::vector<std::string> out;
    for (const auto& e : events_) {
      if (e.has_vertex() && !e.vertex().name().empty()) {
        out.push_back(e.vertex().name() + " " +
                      farm::v1::VertexUpdate::State_Name(e.vertex().state()));
      }
    }
    return out;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::unique_ptr<context::Snapshot> snapshot_;
  std::shared_ptr<cache::testing::MemoryBlobStore> cas_ =
      std::make_shared<cache::testing::MemoryBlobStore>();
  std::shared_ptr<cache::testing::MemoryActionCache> ac_ =
      std::make_shared<cache::testing::MemoryActionCache>();
  std::shared_ptr<FakeExecutor> executor_ = std::make_shared<FakeExecutor>(cas_);
  std::vector<farm::v1::BuildEvent> events_;
};

TEST_F(EngineTest, RunsMissesRecordsThemAndHitsThemNextTime) {
  plan::Plan p = MakePlan("FROM scratch\nCOPY a.txt /\nRUN [\"layer1\"]\nRUN [\"plain\"]\n");
  absl::StatusOr<BuildOutput> first = Build(p);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(executor_->names(), (std::vector<std::string>{"copy", "layer1", "plain"}));
  EXPECT_EQ(first->steps_total, 3);
  EXPECT_EQ(first->steps_cached, 0);
  // Only "layer1" made a layer; as in Docker, the COPY and RUN that changed nothing get an
  // empty one (a tar of no entries), so the image has three.
  ASSERT_EQ(first->image.layers.size(), 3u);
  const std::string empty =
      "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
  EXPECT_EQ(first->image.layers[0].diff_id(), empty);
  EXPECT_NE(first->image.layers[1].diff_id(), empty);
  EXPECT_EQ(first->image.layers[2].diff_id(), empty);
  EXPECT_EQ(first->next_vertex_id, 4);  // steps had ids 1..3

  absl::StatusOr<BuildOutput> second = Build(p);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(executor_->names().size(), 3u);  // nothing ran again
  EXPECT_EQ(second->steps_cached, 3);
  EXPECT_EQ(second->image.config.digest, first->image.config.digest);
  for (const auto& e : events_) {
    if (e.has_vertex()) EXPECT_EQ(e.vertex().state(), farm::v1::VertexUpdate::CACHED);
  }
}

TEST_F(EngineTest, LayersStoredBehindAreRecordedOnlyOnceStored) {
  executor_->store_behind_ = true;
  plan::Plan p = MakePlan("FROM scratch\nRUN [\"layer1\"]\nRUN [\"layer2\"]\n");
  absl::StatusOr<BuildOutput> first = Build(p);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_GE(executor_->syncs(), 1);
  for (const farm::v1::Layer& l : first->image.layers) {
    auto d = common::Digest::ParseOci(l.digest(), l.size());
    ASSERT_TRUE(d.ok());
    EXPECT_TRUE(*cas_->Has(*d)) << l.digest();  // assembled after Sync stored them
  }
  ASSERT_TRUE(Build(p).ok());
  EXPECT_EQ(executor_->names().size(), 2u);  // recorded: nothing ran again

  // A layer that could not be stored fails the build, and none of its steps is recorded.
  plan::Plan q = MakePlan("FROM scratch\nRUN [\"layer3\"]\n");
  executor_->sync_error_ = absl::ResourceExhaustedError("storing layer sha256:ab: disk full");
  absl::StatusOr<BuildOutput> failed = Build(q);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("disk full"));
  executor_->sync_error_ = absl::OkStatus();
  ASSERT_TRUE(Build(q).ok());
  EXPECT_EQ(executor_->names().size(), 4u);  // layer3 ran again
}

TEST_F(EngineTest, WritesOnlyItsOwnScopeAndReadsThroughTheOthers) {
  plan::Plan p = MakePlan("FROM scratch\nRUN [\"one\"]\n");
  BuildRequest pr;
  pr.cache_read_scopes = {"pr/7"};
  pr.cache_write_scope = "pr/7";
  ASSERT_TRUE(Build(p, pr).ok());
  ASSERT_EQ(executor_->names().size(), 1u);

  // main does not see pr/7's entry...
  BuildRequest main;
  ASSERT_TRUE(Build(p, main).ok());
  EXPECT_EQ(executor_->names().size(), 2u);
  // ...and another PR reads main's through its fallback.
  BuildRequest other;
  other.cache_read_scopes = {"pr/8", "main"};
  other.cache_write_scope = "pr/8";
  absl::StatusOr<BuildOutput> r = Build(p, other);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(executor_->names().size(), 2u);
  EXPECT_EQ(r->steps_cached, 1);
}

TEST_F(EngineTest, StepOutputIsClippedAtTheLimitWithANotice) {
  plan::Plan p = MakePlan("FROM scratch\nRUN chatty\n");
  BuildRequest req;
  req.max_step_log_bytes = 1000;
  req.default_step_timeout_seconds = 3600;
  ASSERT_TRUE(Build(p, req).ok());
  int64_t logged = 0;
  int notices = 0;
  for (const auto& e : events_) {
    if (!e.has_log()) continue;
    if (absl::StrContains(e.log().data(), "output clipped, log limit")) ++notices;
    logged += static_cast<int64_t>(e.log().data().size()) + 1;
  }
  EXPECT_EQ(notices, 1);
  EXPECT_LT(logged, 1200);  // the limit, and the notice; not the 10 KB the step wrote
  EXPECT_EQ(executor_->last_timeout_, 3600);  // a RUN without a timeout gets the default
}

TEST_F(EngineTest, NoCacheRunsEverythingAndStillRecords) {
  plan::Plan p = MakePlan("FROM scratch\nRUN [\"one\"]\n");
  ASSERT_TRUE(Build(p).ok());
  BuildRequest nc;
  nc.no_cache = true;
  ASSERT_TRUE(Build(p, nc).ok());
  EXPECT_EQ(executor_->names().size(), 2u);
}

TEST_F(EngineTest, IndependentStagesRunAtTheSameTime) {
  plan::Plan p = MakePlan(
      "FROM scratch AS a\nRUN [\"slow-a\"]\n"
      "FROM scratch AS b\nRUN [\"slow-b\"]\n"
      "FROM scratch\nCOPY --from=a /x /a\nCOPY --from=b /y /b\n");
  BuildRequest req;
  req.max_parallel = 4;
  ASSERT_TRUE(Build(p, req).ok());
  std::map<std::string, FakeExecutor::Run> by;
  for (const auto& r : executor_->runs()) by[r.what] = r;
  ASSERT_TRUE(by.count("slow-a") && by.count("slow-b"));
  // Overlapping intervals: each started before the other ended.
  EXPECT_LT(by["slow-a"].start, by["slow-b"].end);
  EXPECT_LT(by["slow-b"].start, by["slow-a"].end);
}

TEST_F(EngineTest, AStepWantedTwiceInOneBuildRunsOnce) {
  // Two stages with the same first step: one key, one execution.
  plan::Plan p = MakePlan(
      "FROM scratch AS a\nRUN [\"layer-same\"]\n"
      "FROM scratch AS b\nRUN [\"layer-same\"]\n"
      "FROM scratch\nCOPY --from=a /x /a\nCOPY --from=b /y /b\n");
  ASSERT_TRUE(Build(p).ok());
  int same = 0;
  for (const std::string& n : executor_->names()) same += n == "layer-same" ? 1 : 0;
  EXPECT_EQ(same, 1);
}

TEST_F(EngineTest, BuildsSharingInflightStepsRunACommonStepOnce) {
  // Two builds at once (farm bake's targets) whose first step is the same slow one: with one
  // InflightSteps it executes once, the other build waits and shows it CACHED.
  plan::Plan a = MakePlan("FROM scratch\nRUN [\"slow-base\"]\nRUN [\"layer-a\"]\n");
  plan::Plan b = MakePlan("FROM scratch\nRUN [\"slow-base\"]\nRUN [\"layer-b\"]\n");
  EngineDeps deps{cas_, ac_, executor_, std::make_shared<InflightSteps>()};
  absl::StatusOr<BuildOutput> ra, rb;
  auto run = [&](const plan::Plan& p, absl::StatusOr<BuildOutput>* out) {
    BuildRequest req;
    req.plan = &p;
    *out = RunBuild(deps, req, nullptr, nullptr);
  };
  std::thread ta(run, std::cref(a), &ra);
  std::thread tb(run, std::cref(b), &rb);
  ta.join();
  tb.join();
  ASSERT_TRUE(ra.ok()) << ra.status();
  ASSERT_TRUE(rb.ok()) << rb.status();
  int base = 0;
  for (const std::string& n : executor_->names()) base += n == "slow-base" ? 1 : 0;
  EXPECT_EQ(base, 1);
  EXPECT_EQ(ra->steps_cached + rb->steps_cached, 1);
  EXPECT_THAT(executor_->names(), ::testing::IsSupersetOf({"layer-a", "layer-b"}));
}

TEST_F(EngineTest, AStepTakenFromAnotherBuildInFlightKeepsItsTime) {
  // A step one build took from another build of the process (InflightSteps) gets the time the
  // other build knew for it, here an action-cache entry from long ago, in its image's history.
  plan::Plan a = MakePlan("FROM scratch\nRUN [\"slow-base\"]\nRUN [\"layer-a\"]\n");
  plan::Plan b = MakePlan("FROM scratch\nRUN [\"slow-base\"]\nRUN [\"layer-b\"]\n");
  ASSERT_TRUE(Build(a).ok());
  const plan::Step* base = nullptr;
  for (const plan::Step& st : a.stages[0].steps) {
    if (!st.key.empty() && absl::StrContains(st.instruction, "slow-base")) base = &st;
  }
  ASSERT_NE(base, nullptr);
  absl::StatusOr<std::string> entry = ac_->Get({"main"}, ActionKey(*base));
  ASSERT_TRUE(entry.ok()) << entry.status();
  absl::StatusOr<CachedStep> cached = CachedStepFromActionResult(*entry);
  ASSERT_TRUE(cached.ok());
  ASSERT_TRUE(
      ac_->Update("main", ActionKey(*base), StepActionResult(*base, cached->layer, "h", 1600000000))
          .ok());
  EngineDeps deps{cas_, ac_, executor_, std::make_shared<InflightSteps>()};
  BuildRequest ra, rb;
  ra.plan = &a;
  rb.plan = &b;
  absl::StatusOr<BuildOutput> oa = RunBuild(deps, ra, nullptr, nullptr);
  absl::StatusOr<BuildOutput> ob = RunBuild(deps, rb, nullptr, nullptr);  // takes a's slow-base
  ASSERT_TRUE(oa.ok()) << oa.status();
  ASSERT_TRUE(ob.ok()) << ob.status();
  EXPECT_EQ(oa->image.image_config.history[0].created, "2020-09-13T12:26:40Z");
  EXPECT_EQ(ob->image.image_config.history[0].created, "2020-09-13T12:26:40Z");
}

TEST_F(EngineTest, AFailedCommandFailsItsVertexWithTheLineAndTheBuild) {
  plan::Plan p = MakePlan("FROM scratch\nRUN [\"one\"]\nRUN [\"fail\"]\n");
  absl::StatusOr<BuildOutput> r = Build(p);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("process \"fail\" did not complete successfully: exit code: 1"));
  const farm::v1::VertexUpdate* failed = nullptr;
  std::vector<std::string> stderr_lines;
  for (const auto& e : events_) {
    if (e.has_vertex() && e.vertex().state() == farm::v1::VertexUpdate::FAILED) {
      failed = &e.vertex();
    }
    if (e.has_log() && e.log().stderr()) stderr_lines.push_back(e.log().data());
  }
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->line(), 3);
  EXPECT_EQ(failed->dockerfile(), "Dockerfile");
  EXPECT_THAT(stderr_lines, ElementsAre("doing fail"));
  // The failure is not recorded: the next build runs it again.
  ASSERT_FALSE(Build(p).ok());
  EXPECT_EQ(executor_->names(), (std::vector<std::string>{"one", "fail", "fail"}));
}

TEST_F(EngineTest, CancelKillsTheRunningStep) {
  plan::Plan p = MakePlan("FROM scratch\nRUN [\"slow-1\"]\nRUN [\"after\"]\n");
  absl::Notification cancel;
  cancel.Notify();
  absl::StatusOr<BuildOutput> r = Build(p, {}, &cancel);
  EXPECT_TRUE(absl::IsCancelled(r.status())) << r.status();
  for (const std::string& n : executor_->names()) EXPECT_NE(n, "after");
}

TEST_F(EngineTest, AForeignActionCacheEntryIsIgnoredWithAWarning) {
  plan::Plan p = MakePlan("FROM scratch\nRUN [\"one\"]\n");
  const plan::Step& step = p.stages[0].steps[0];
  ASSERT_TRUE(ac_->Update("main", ActionKey(step), "not an ActionResult at all").ok());
  ASSERT_TRUE(Build(p).ok());
  EXPECT_EQ(executor_->names().size(), 1u);  // ran despite the entry
  bool warned = false;
  for (const auto& e : events_) warned |= absl::StrContains(e.warning(), "foreign action-cache");
  EXPECT_TRUE(warned);
}

TEST(ActionResultTest, RoundTripsTheLayerAndRejectsOthers) {
  plan::Step step;
  step.key = common::Sha256Hex("k");
  step.instruction = "RUN x";
  farm::v1::Layer l;
  l.set_digest(common::DigestOf("blob").OciString());
  l.set_size(4);
  absl::StatusOr<CachedStep> back =
      CachedStepFromActionResult(StepActionResult(step, l, "host", 1700000000));
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_TRUE(back->layer.has_value());
  EXPECT_EQ(back->layer->digest(), l.digest());
  EXPECT_EQ(back->created_unix, 1700000000);
  absl::StatusOr<CachedStep> none =
      CachedStepFromActionResult(StepActionResult(step, std::nullopt, "host", 0));
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->layer.has_value());
  EXPECT_EQ(none->created_unix, 0);
  // A time far in the future is not believed.
  absl::StatusOr<CachedStep> future =
      CachedStepFromActionResult(StepActionResult(step, l, "host", 4102444800));
  ASSERT_TRUE(future.ok());
  EXPECT_EQ(future->created_unix, 0);
  EXPECT_FALSE(CachedStepFromActionResult("garbage").ok());
}

TEST(VertexNameTest, NumbersFromAndExecutedStepsPerStage) {
  plan::Plan p;
  p.stages.resize(2);
  p.stages[0].name = "build";
  p.stages[0].base_kind = plan::Stage::BaseKind::kImage;
  p.stages[0].steps.resize(3);
  p.stages[0].steps[0].key = "k1";
  p.stages[0].steps[0].instruction = "RUN make";
  p.stages[0].steps[2].key = "k2";  // steps[1] is metadata-only
  p.stages[0].steps[2].instruction = "RUN test";
  EXPECT_EQ(VertexName(p, p.stages[0], -1), "[build 1/3]");
  EXPECT_EQ(VertexName(p, p.stages[0], 0), "[build 2/3] RUN make");
  EXPECT_EQ(VertexName(p, p.stages[0], 2), "[build 3/3] RUN test");
  EXPECT_EQ(VertexName(p, p.stages[0], 2, "linux/arm64"), "[linux/arm64 build 3/3] RUN test");
  EXPECT_EQ(VertexCount(p), 3);  // the FROM and two keyed steps; stage 1 is scratch, no steps
}

}  // namespace
}  // namespace farm::scheduler::engine
