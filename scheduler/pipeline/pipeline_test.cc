#include "scheduler/pipeline/pipeline.h"

#include <algorithm>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/pipeline/contexts.h"

namespace farm::scheduler::pipeline {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Runs nothing: a RUN step's last argument names what it does ("fail" exits 2, "block" waits
// for the cancel); every step succeeds without a layer otherwise.
class FakeExecutor : public executor::StepExecutor {
 public:
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override {
    std::string what = request.has_run() && request.run().args_size() > 0
                           ? request.run().args(request.run().args_size() - 1)
                           : "copy";
    {
      absl::MutexLock l(&mu_);
      ran_.push_back(what);
    }
    if (log) log("ran " + what, false);
    if (what == "block") {
      while (!cancel->WaitForNotificationWithTimeout(absl::Milliseconds(5))) {
      }
      return absl::CancelledError("killed");
    }
    farm::v1::StepResult r;
    r.set_exit_code(what == "fail" ? 2 : 0);
    if (what == "fail") r.add_output_tail("it broke");
    return r;
  }
  std::vector<std::string> ran() {
    absl::MutexLock l(&mu_);
    return ran_;
  }
  absl::Status Sync() override {
    absl::MutexLock l(&mu_);
    ++syncs_;
    return absl::OkStatus();
  }
  int syncs() {
    absl::MutexLock l(&mu_);
    return syncs_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> ran_;
  int syncs_ = 0;
};

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("pipeline");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    dir_ = common::JoinPath(tmp_->path(), "ctx");
    ASSERT_TRUE(common::MakeDirs(dir_, 0755).ok());
    ASSERT_TRUE(common::WriteFileAtomic(common::JoinPath(dir_, "a.txt"), "alpha").ok());
    auto images = image::RocksDbImageStore::Create(common::JoinPath(tmp_->path(), "images"));
    ASSERT_TRUE(images.ok()) << images.status();
    deps_.images = *std::move(images);
    deps_.cas = cas_;
    deps_.ac = ac_;
    deps_.executor = [this]() -> absl::StatusOr<std::shared_ptr<executor::StepExecutor>> {
      ++executors_made_;
      return std::shared_ptr<executor::StepExecutor>(executor_);
    };
  }

  // Runs `dockerfile` over the context; events land in events_.
  Result Build(const std::string& dockerfile, const absl::Notification* cancel = nullptr,
               std::vector<std::string> tags = {}) {
    events_.clear();
    LocalContext context(dir_, "", {});
    Request req;
    req.dockerfile = dockerfile;
    req.dockerfile_name = "Dockerfile";
    req.context = &context;
    req.engine.max_parallel = 2;
    req.platforms = platforms_;
    for (const std::string& t : tags) req.tags.push_back(*oci::Reference::ParseWithDefaultTag(t));
    req.export_outputs = [this](const Exported& e,
                                const std::function<void(const std::string&)>& log) {
      exported_ = e.image->digest;
      log("exported it");
      return absl::OkStatus();
    };
    return pipeline::Run(
        deps_, req, [this](const farm::v1::BuildEvent& e) { events_.push_back(e); }, cancel);
  }

  // "name STATE" for each vertex event with a name, in order.
  std::vector<std::string> VertexNames() {
    std::vector<std::string> out;
    std::map<int, std::string> names;
    for (const auto& e : events_) {
      if (!e.has_vertex()) continue;
      if (!e.vertex().name().empty()) names[e.vertex().id()] = e.vertex().name();
      out.push_back(names[e.vertex().id()] + " " +
                    farm::v1::VertexUpdate::State_Name(e.vertex().state()));
    }
    return out;
  }
  std::vector<std::string> Logs(int vertex) {
    std::vector<std::string> out;
    for (const auto& e : events_) {
      if (e.has_log() && e.log().id() == vertex) out.push_back(e.log().data());
    }
    return out;
  }
  const farm::v1::BuildOutcome* LastOutcome() {
    return !events_.empty() && events_.back().has_outcome() ? &events_.back().outcome() : nullptr;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::string dir_;
  std::shared_ptr<cache::testing::MemoryBlobStore> cas_ =
      std::make_shared<cache::testing::MemoryBlobStore>();
  std::shared_ptr<cache::testing::MemoryActionCache> ac_ =
      std::make_shared<cache::testing::MemoryActionCache>();
  std::shared_ptr<FakeExecutor> executor_ = std::make_shared<FakeExecutor>();
  int executors_made_ = 0;
  Deps deps_;
  std::vector<farm::v1::BuildEvent> events_;
  std::string exported_;
  std::vector<std::string> platforms_;  // Request.platforms
};

TEST_F(PipelineTest, BuildsStoresTagsAndReportsEveryPhaseInOrder) {
  Result r = Build("FROM scratch\nCOPY a.txt /a.txt\nRUN [\"one\"]\nENV X=1\n", nullptr, {"app:1"});
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_THAT(
      VertexNames(),
      ElementsAre("[internal] load build definition from Dockerfile STARTED",
                  "[internal] load build context STARTED", "[internal] load build context DONE",
                  "[internal] load build definition from Dockerfile DONE",
                  "[1/2] COPY [\"a.txt\"] /a.txt STARTED", "[1/2] COPY [\"a.txt\"] /a.txt DONE",
                  "[2/2] RUN [\"one\"] STARTED", "[2/2] RUN [\"one\"] DONE",
                  "exporting to image STARTED", "exporting to image DONE"));
  EXPECT_THAT(Logs(2), ElementsAre(HasSubstr("context: 1 files")));
  std::vector<std::string> export_logs = Logs(5);
  ASSERT_EQ(export_logs.size(), 3u);
  EXPECT_THAT(export_logs[0], HasSubstr("writing image sha256:"));
  EXPECT_EQ(export_logs[1], "naming to docker.io/library/app:1 done");
  EXPECT_EQ(export_logs[2], "exported it");
  EXPECT_EQ(executor_->ran(), (std::vector<std::string>{"copy", "one"}));

  const farm::v1::BuildOutcome* o = LastOutcome();
  ASSERT_NE(o, nullptr);
  EXPECT_TRUE(o->ok());
  EXPECT_EQ(o->image_id(), r.output()->image.config.digest);
  EXPECT_THAT(o->tags(), ElementsAre("docker.io/library/app:1"));
  EXPECT_EQ(o->steps(), 2);
  EXPECT_EQ(o->cached_steps(), 0);
  EXPECT_EQ(exported_, r.image.digest);
  absl::StatusOr<image::ImageRecord> tagged = image::LookupImage(*deps_.images, "app:1");
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(tagged->digest, r.image.digest);
}

TEST_F(PipelineTest, ASecondBuildIsAllCachedAndRunsNothing) {
  const std::string df = "FROM scratch\nCOPY a.txt /a.txt\nRUN [\"one\"]\n";
  Result first = Build(df);
  ASSERT_TRUE(first.status.ok()) << first.status;
  // The engine waited for the executor (behind the lazy one) to store its layers.
  EXPECT_GE(executor_->syncs(), 1);
  Result second = Build(df);
  ASSERT_TRUE(second.status.ok()) << second.status;
  EXPECT_EQ(executor_->ran().size(), 2u);  // from the first build only
  EXPECT_EQ(second.output()->image.config.digest, first.output()->image.config.digest);
  const farm::v1::BuildOutcome* o = LastOutcome();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->steps(), 2);
  EXPECT_EQ(o->cached_steps(), 2);
}

TEST_F(PipelineTest, AFrontEndErrorFailsTheDefinitionVertexWithItsPosition) {
  Result r = Build("FROM scratch\nFROBNICATE now\n");
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(r.plan(), nullptr);
  EXPECT_EQ(executors_made_, 0);
  EXPECT_THAT(VertexNames(),
              ElementsAre("[internal] load build definition from Dockerfile STARTED",
                          "[internal] load build definition from Dockerfile FAILED"));
  const farm::v1::BuildOutcome* o = LastOutcome();
  ASSERT_NE(o, nullptr);
  EXPECT_FALSE(o->ok());
  EXPECT_THAT(o->error(), HasSubstr("failed to build: Dockerfile:2:1"));
}

TEST_F(PipelineTest, AFailingStepFailsItsVertexAndTheBuild) {
  Result r = Build("FROM scratch\nRUN [\"one\"]\nRUN [\"fail\"]\n");
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status)) << r.status;
  ASSERT_NE(r.plan(), nullptr);  // for build records
  const farm::v1::VertexUpdate* failed = nullptr;
  for (const auto& e : events_) {
    if (e.has_vertex() && e.vertex().state() == farm::v1::VertexUpdate::FAILED) {
      failed = &e.vertex();
    }
  }
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ(failed->line(), 3);
  EXPECT_THAT(failed->error(), HasSubstr("exit code: 2"));
  EXPECT_THAT(failed->output_tail(), ElementsAre("it broke"));
  const farm::v1::BuildOutcome* o = LastOutcome();
  ASSERT_NE(o, nullptr);
  EXPECT_FALSE(o->ok());
  EXPECT_EQ(o->steps(), 1);  // the step that finished before
  for (const auto& e : events_) {
    if (e.has_vertex()) EXPECT_NE(e.vertex().name(), "exporting to image");
  }
}

TEST_F(PipelineTest, CancelStopsTheRunningStepAndSaysCanceled) {
  absl::Notification cancel;
  std::thread canceller([&] {
    while (executor_->ran().empty()) absl::SleepFor(absl::Milliseconds(2));
    cancel.Notify();
  });
  Result r = Build("FROM scratch\nRUN [\"block\"]\n", &cancel);
  canceller.join();
  EXPECT_TRUE(absl::IsCancelled(r.status)) << r.status;
  const farm::v1::BuildOutcome* o = LastOutcome();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->error(), "canceled");
}

TEST_F(PipelineTest, AMissingCasContextIsAClearError) {
  farm::v1::ContextRoot root;
  root.set_digest(common::DigestOf("nothing uploaded").OciString());
  root.set_size(16);
  CasContext context(cas_, root);
  Request req;
  req.dockerfile = "FROM scratch\nCOPY . /\n";
  req.dockerfile_name = "Dockerfile";
  req.context = &context;
  Result r = pipeline::Run(
      deps_, req, [this](const farm::v1::BuildEvent& e) { events_.push_back(e); }, nullptr);
  EXPECT_TRUE(absl::IsNotFound(r.status)) << r.status;
  EXPECT_THAT(std::string(r.status.message()), HasSubstr("is not in the cache"));
}

TEST_F(PipelineTest, SeveralPlatformsBuildEachShareBuildPlatformStepsAndMakeAnIndex) {
  platforms_ = {"linux/amd64", "linux/arm64"};
  Result r = Build(
      "FROM --platform=$BUILDPLATFORM scratch AS b\nCOPY a.txt /a.txt\nRUN [\"shared\"]\n"
      "FROM scratch\nCOPY --from=b /a.txt /a.txt\nRUN [\"own\"]\n",
      nullptr, {"multi:1"});
  ASSERT_TRUE(r.status.ok()) << r.status;
  ASSERT_EQ(r.builds.size(), 2u);
  EXPECT_EQ(r.builds[1].platform, "linux/arm64");
  std::vector<std::string> ran = executor_->ran();
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "shared"), 1);  // the build platform's, once
  EXPECT_EQ(std::count(ran.begin(), ran.end(), "own"), 2);     // once per target platform
  EXPECT_TRUE(r.image.is_index());
  ASSERT_EQ(r.image.manifests.size(), 2u);
  EXPECT_EQ(r.image.manifests[0].platform, "linux/amd64");
  EXPECT_EQ(r.image.manifests[1].platform, "linux/arm64");
  const farm::v1::BuildOutcome* o = LastOutcome();
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->image_id(), r.image.digest);
  EXPECT_EQ(o->manifest_media_type(), "application/vnd.oci.image.index.v1+json");
  EXPECT_EQ(exported_, r.image.digest);
  absl::StatusOr<std::string> tagged =
      deps_.images->ResolveReference(*oci::Reference::ParseWithDefaultTag("multi:1"));
  ASSERT_TRUE(tagged.ok()) << tagged.status();
  EXPECT_EQ(*tagged, r.image.digest);
  // Each platform's steps are named with it, and every id is used once.
  std::map<int, std::string> names;
  bool labeled = false;
  for (const auto& e : events_) {
    if (!e.has_vertex() || e.vertex().name().empty()) continue;
    auto [it, fresh] = names.emplace(e.vertex().id(), e.vertex().name());
    EXPECT_EQ(it->second, e.vertex().name()) << "vertex id " << e.vertex().id() << " reused";
    labeled |= absl::StartsWith(e.vertex().name(), "[linux/arm64 stage-1 ");
  }
  EXPECT_TRUE(labeled);
}

TEST_F(PipelineTest, OnePlatformFailingFailsTheBuild) {
  platforms_ = {"linux/amd64", "linux/arm64"};
  Result r = Build("FROM scratch\nARG TARGETARCH\nRUN [\"fail\"]\n");
  EXPECT_FALSE(r.status.ok());
  EXPECT_FALSE(LastOutcome()->ok());
}

TEST(ParsePlatformListTest, NormalizesAndRefusesRepeatsAndJunk) {
  absl::StatusOr<std::vector<std::string>> p = ParsePlatformList("linux/x86_64, linux/aarch64");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(*p, ElementsAre("linux/amd64", "linux/arm64"));
  EXPECT_THAT(ParsePlatformList("linux/amd64,linux/x86_64").status().message(),
              HasSubstr("listed twice"));
  EXPECT_THAT(ParsePlatformList("linux/amd64,bogus").status().message(), HasSubstr("bogus"));
  std::string many;
  for (int i = 0; i < 17; ++i) absl::StrAppend(&many, i ? "," : "", "linux/arch", i);
  EXPECT_THAT(ParsePlatformList(many).status().message(), HasSubstr("more than 16"));
  EXPECT_THAT(ParsePlatformList(std::string(2000, 'a')).status().message(), HasSubstr("bytes"));
}

}  // namespace
}  // namespace farm::scheduler::pipeline
