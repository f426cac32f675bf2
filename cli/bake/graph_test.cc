// farm bake's graph: targets made ready (contexts sorted and listed once, tags, outputs,
// platforms, errors naming the target), BuildAll's order (context targets first, a failure
// cancels the targets that read it, shared contexts staggered for builders that upload), the
// cache scopes read and the summary.
#include "cli/bake/graph.h"

#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "cli/bake/definition.h"
#include "cli/bake/target_builder.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cli::bake {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// A checkout: dirs "a", "b" (with a Dockerfile each), "shared" (no Dockerfile).
class GraphTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<common::TempDir> tmp = common::TempDir::Create("graph-test");
    ASSERT_OK(tmp);
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    for (const char* d : {"a", "b", "shared"}) ASSERT_OK(common::MakeDirs(Path(d)));
    ASSERT_OK(common::WriteFileAtomic(Path("a/Dockerfile"), "FROM scratch\n"));
    ASSERT_OK(common::WriteFileAtomic(Path("b/Dockerfile"), "FROM busybox\n"));
  }

  std::string Path(const std::string& rel) const { return common::JoinPath(tmp_->path(), rel); }

  Target Make(const std::string& name, const std::string& context) const {
    Target t;
    t.name = name;
    t.context = Path(context);
    return t;
  }

  static absl::StatusOr<std::unique_ptr<Graph>> Build(std::vector<Target> targets,
                                                      bool check_host_platforms = true) {
    Resolved r;
    r.targets = std::move(targets);
    Graph::Options o;
    o.check_host_platforms = check_host_platforms;
    return Graph::Create(r, o);
  }

  std::unique_ptr<common::TempDir> tmp_;
};

TEST_F(GraphTest, ListsEachContextOnceAndSortsNamedContexts) {
  Target a = Make("a", "a");
  a.tags = std::vector<std::string>{"example/a:1", "example/a:latest"};
  Target b1 = Make("b1", "b");
  b1.contexts = {
      {"lib", Path("shared")}, {"base", "target:a"}, {"alpine", "docker-image://alpine"}};
  Target b2 = Make("b2", "b");
  b2.dockerfile_inline = "FROM a\n";
  b2.contexts = {{"lib", Path("shared")}};
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({a, b1, b2});
  ASSERT_OK(g);
  const Graph& graph = **g;

  ASSERT_EQ(graph.runs().size(), 3u);
  // a's dir, b's dir, shared: b1 and b2 read the same two.
  ASSERT_EQ(graph.contexts().size(), 3u);
  EXPECT_EQ(graph.contexts()[0].dir, Path("a"));
  EXPECT_EQ(graph.contexts()[1].dir, Path("b"));
  EXPECT_EQ(graph.contexts()[2].dir, Path("shared"));
  const TargetRun& rb1 = graph.run("b1");
  const TargetRun& rb2 = graph.run("b2");
  EXPECT_EQ(rb1.context_key, rb2.context_key);
  EXPECT_EQ(graph.FindContext(rb1.context_key)->dir, Path("b"));
  EXPECT_EQ(graph.FindContext("nope"), nullptr);
  EXPECT_EQ(graph.run("a").shares_context_with, nullptr);
  EXPECT_EQ(rb1.shares_context_with, nullptr);
  EXPECT_EQ(rb2.shares_context_with, &rb1);

  EXPECT_THAT(rb1.named, ElementsAre(Pair("lib", graph.contexts()[2].key)));
  EXPECT_THAT(rb1.images, ElementsAre(Pair("alpine", "alpine")));
  EXPECT_THAT(rb1.targets, ElementsAre(Pair("base", "a")));
  EXPECT_EQ(rb1.dockerfile_path, Path("b/Dockerfile"));
  EXPECT_EQ(rb1.dockerfile_text, "FROM busybox\n");
  EXPECT_EQ(rb2.dockerfile_path, "");
  EXPECT_EQ(rb2.dockerfile_text, "FROM a\n");

  EXPECT_TRUE(graph.IsContextOfAnother("a"));
  EXPECT_FALSE(graph.IsContextOfAnother("b1"));
  EXPECT_EQ(Graph::ContextTag(graph.run("a")).String(), "docker.io/example/a:1");
  EXPECT_EQ(Graph::ContextTag(rb1).String(), "docker.io/farm-bake/b1:latest");
}

TEST_F(GraphTest, ADockerfileIgnoreFileMakesADistinctContext) {
  ASSERT_OK(common::WriteFileAtomic(Path("a/other.Dockerfile"), "FROM scratch\n"));
  ASSERT_OK(common::WriteFileAtomic(Path("a/other.Dockerfile.dockerignore"), "*.log\n"));
  Target plain = Make("plain", "a");
  Target other = Make("other", "a");
  other.dockerfile = "other.Dockerfile";
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({plain, other});
  ASSERT_OK(g);
  ASSERT_EQ((*g)->contexts().size(), 2u);
  EXPECT_EQ((*g)->contexts()[0].ignore_owner, "");
  EXPECT_EQ((*g)->contexts()[1].ignore_owner, Path("a/other.Dockerfile"));
  EXPECT_EQ((*g)->run("other").shares_context_with, nullptr);
}

TEST_F(GraphTest, ParsesTagsOutputsAndPlatforms) {
  Target a = Make("a", "a");
  a.tags = std::vector<std::string>{"example/a"};
  a.output = std::vector<std::string>{"type=registry", "type=local,dest=" + Path("out")};
  a.platforms = std::vector<std::string>{"linux/s390x", "linux/ppc64le"};
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({a}, /*check_host_platforms=*/false);
  ASSERT_OK(g);
  const TargetRun& r = (*g)->run("a");
  ASSERT_EQ(r.tags.size(), 1u);
  EXPECT_EQ(r.tags[0].String(), "docker.io/example/a:latest");
  EXPECT_TRUE(r.push);
  ASSERT_EQ(r.outputs.size(), 1u);
  EXPECT_EQ(r.outputs[0].type, "local");
  EXPECT_EQ(r.outputs[0].dest, Path("out"));
  EXPECT_THAT(r.platforms, ElementsAre("linux/s390x", "linux/ppc64le"));
}

TEST_F(GraphTest, ErrorsNameTheTarget) {
  Target missing = Make("web", "nowhere");
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({missing});
  EXPECT_EQ(g.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(g.status().message(), HasSubstr("target \"web\""));
  EXPECT_THAT(g.status().message(), HasSubstr("does not exist"));

  Target no_dir = Make("api", "a");
  no_dir.contexts = {{"lib", Path("missing")}};
  g = Build({no_dir});
  EXPECT_EQ(g.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(g.status().message(), HasSubstr("contexts.lib"));

  Target bad_platform = Make("api", "a");
  bad_platform.platforms = std::vector<std::string>{"linux/amd64", "linux/amd64"};
  g = Build({bad_platform}, /*check_host_platforms=*/false);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(g.status().message(), HasSubstr("target api: platforms"));

  Target bad_context = Make("api", "a");
  bad_context.contexts = {{"x", "oci-layout://somewhere"}};
  g = Build({bad_context});
  EXPECT_EQ(g.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(g.status().message(), HasSubstr("target \"api\""));
}

// A builder that runs each target's `on_build` (a no-op when unset) and records the order.
class FakeBuilder : public TargetBuilder {
 public:
  explicit FakeBuilder(bool staggers) : staggers_(staggers) {}

  absl::Status Build(TargetRun* run) override {
    {
      absl::MutexLock l(&mu_);
      started_.push_back(run->def.name);
    }
    auto it = on_build.find(run->def.name);
    return it == on_build.end() ? absl::OkStatus() : it->second(run);
  }
  bool StaggersSharedContexts() const override { return staggers_; }

  std::vector<std::string> started() {
    absl::MutexLock l(&mu_);
    return started_;
  }

  std::map<std::string, std::function<absl::Status(TargetRun*)>> on_build;

 private:
  bool staggers_;
  absl::Mutex mu_;
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
};

TEST_F(GraphTest, BuildAllBuildsContextTargetsFirst) {
  Target base = Make("base", "a");
  Target app = Make("app", "b");
  app.contexts = {{"base", "target:base"}};
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({base, app});
  ASSERT_OK(g);
  FakeBuilder builder(/*staggers=*/false);
  builder.on_build["app"] = [&](TargetRun*) {
    EXPECT_TRUE((*g)->run("base").done.HasBeenNotified());
    return absl::OkStatus();
  };
  builder.on_build["base"] = [](TargetRun* r) {
    r->image_id = "sha256:base";
    return absl::OkStatus();
  };
  absl::Notification cancel;
  (*g)->BuildAll(&builder, &cancel);
  EXPECT_THAT(builder.started(), ElementsAre("base", "app"));
  for (const auto& r : (*g)->runs()) {
    EXPECT_OK(r->status);
    EXPECT_TRUE(r->done.HasBeenNotified());
    EXPECT_TRUE(r->context_ready.HasBeenNotified());
  }
  EXPECT_EQ((*g)->run("base").image_id, "sha256:base");
  EXPECT_FALSE(cancel.HasBeenNotified());
}

TEST_F(GraphTest, AFailureCancelsWhatReadsItAndNotifiesCancel) {
  Target base = Make("base", "a");
  Target app = Make("app", "b");
  app.contexts = {{"img", "target:base"}};
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({base, app});
  ASSERT_OK(g);
  FakeBuilder builder(/*staggers=*/false);
  builder.on_build["base"] = [](TargetRun*) { return absl::InternalError("RUN exited 1"); };
  absl::Notification cancel;
  (*g)->BuildAll(&builder, &cancel);
  EXPECT_THAT(builder.started(), ElementsAre("base"));  // app was never built
  EXPECT_EQ((*g)->run("base").status.code(), absl::StatusCode::kInternal);
  const absl::Status& app_status = (*g)->run("app").status;
  EXPECT_EQ(app_status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(app_status.message(), "target \"base\" (context img) failed");
  EXPECT_TRUE(cancel.HasBeenNotified());
}

TEST_F(GraphTest, StaggeringBuildersStartASharedContextOnceTheFirstHasItReady) {
  Target first = Make("first", "a");
  Target second = Make("second", "a");
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({first, second});
  ASSERT_OK(g);
  FakeBuilder builder(/*staggers=*/true);
  absl::Notification second_started;
  builder.on_build["first"] = [&](TargetRun* r) {
    r->context_ready.Notify();
    // second starts now, while this one is still building.
    EXPECT_TRUE(second_started.WaitForNotificationWithTimeout(absl::Seconds(30)));
    return absl::OkStatus();
  };
  builder.on_build["second"] = [&](TargetRun* r) {
    EXPECT_TRUE(r->shares_context_with->context_ready.HasBeenNotified());
    second_started.Notify();
    return absl::OkStatus();
  };
  (*g)->BuildAll(&builder, nullptr);
  EXPECT_THAT(builder.started(), ElementsAre("first", "second"));
}

TEST_F(GraphTest, OtherBuildersStartTargetsSharingAContextAtOnce) {
  Target first = Make("first", "a");
  Target second = Make("second", "a");
  absl::StatusOr<std::unique_ptr<Graph>> g = Build({first, second});
  ASSERT_OK(g);
  FakeBuilder builder(/*staggers=*/false);
  absl::Notification second_started;
  builder.on_build["first"] = [&](TargetRun*) {
    EXPECT_TRUE(second_started.WaitForNotificationWithTimeout(absl::Seconds(30)));
    return absl::OkStatus();
  };
  builder.on_build["second"] = [&](TargetRun* r) {
    EXPECT_FALSE(r->shares_context_with->context_ready.HasBeenNotified());
    second_started.Notify();
    return absl::OkStatus();
  };
  (*g)->BuildAll(&builder, nullptr);
}

TEST(ReadScopesTest, WriteScopeFirstThenCacheFromScopesOnce) {
  Target t;
  t.name = "api";
  t.cache_from = std::vector<std::string>{"pr/1", "type=farm,scope=nightly", "scope=main",
                                          "scope=pr/1", "type=registry,ref=example/cache"};
  std::ostringstream warnings;
  EXPECT_THAT(ReadScopes(t, "main", warnings), ElementsAre("main", "pr/1", "nightly"));
  EXPECT_EQ(warnings.str(),
            "WARNING: target api: cache-from type=registry,ref=example/cache ignored (farm reads "
            "action-cache scopes: scope=NAME)\n");

  Target none;
  EXPECT_THAT(ReadScopes(none, "main", warnings), ElementsAre("main"));
}

class SummaryTest : public GraphTest {
 protected:
  void SetUp() override {
    GraphTest::SetUp();
    absl::StatusOr<std::unique_ptr<Graph>> g =
        Build({Make("api", "a"), Make("web", "b"), Make("docs", "a")});
    ASSERT_OK(g);
    graph_ = *std::move(g);
    TargetRun& api = graph_->run("api");
    api.image_id = "sha256:0123456789abcdef0123456789abcdef";
    api.steps_run = 2;
    api.steps_cached = 3;
    api.took = absl::Milliseconds(1300);
  }

  void Fail() {
    TargetRun& web = graph_->run("web");
    web.status = absl::UnknownError("farm submit failed");
    web.steps_run = 1;
    web.took = absl::Seconds(2);
    graph_->run("docs").status = absl::CancelledError("stopped");
  }

  std::unique_ptr<Graph> graph_;
};

TEST_F(SummaryTest, TableRowsAndTotal) {
  Fail();
  EXPECT_EQ(SummaryTable(*graph_, absl::Seconds(3)),
            "\n"
            "TARGET               IMAGE ID              RUN CACHED      TIME\n"
            "api                  0123456789ab            2      3      1.3s\n"
            "web                  (failed)                1      0      2.0s\n"
            "docs                 (canceled)              0      0      0.0s\n"
            "3 target(s) in 3.0s\n");
}

TEST_F(SummaryTest, FailuresPrintTheTableAndTheirErrors) {
  Fail();
  std::ostringstream out, err;
  EXPECT_EQ(ReportSummary(*graph_, absl::Seconds(3), /*quiet=*/true, out, err), 1);
  EXPECT_EQ(out.str(), "api sha256:0123456789abcdef0123456789abcdef\n");
  EXPECT_THAT(err.str(), HasSubstr("3 target(s) in 3.0s\n"));
  // The cancellation is the failure's consequence: only the failure has an ERROR line.
  EXPECT_THAT(err.str(), HasSubstr("ERROR: target \"web\": farm submit failed\n"));
  EXPECT_THAT(err.str(), ::testing::Not(HasSubstr("ERROR: target \"docs\"")));
}

TEST_F(SummaryTest, QuietSuccessPrintsOnlyTheImageIds) {
  for (const char* name : {"web", "docs"}) graph_->run(name).image_id = "sha256:ff";
  std::ostringstream out, err;
  EXPECT_EQ(ReportSummary(*graph_, absl::Seconds(3), /*quiet=*/true, out, err), 0);
  EXPECT_EQ(err.str(), "");
  EXPECT_EQ(out.str(),
            "api sha256:0123456789abcdef0123456789abcdef\nweb sha256:ff\ndocs sha256:ff\n");

  std::ostringstream out2, err2;
  EXPECT_EQ(ReportSummary(*graph_, absl::Seconds(3), /*quiet=*/false, out2, err2), 0);
  EXPECT_EQ(out2.str(), "");
  EXPECT_THAT(err2.str(), HasSubstr("TARGET"));
}

}  // namespace
}  // namespace farm::cli::bake
