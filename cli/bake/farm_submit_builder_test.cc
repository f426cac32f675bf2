// farm bake on a farm: the farm submit command line of a target, the security flags passed on,
// the steps counted from the child's lines, and a build through a stand-in farm binary (its
// image ID read back, its context marked ready once submitted, a failing submit).
#include "cli/bake/farm_submit_builder.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/bake/definition.h"
#include "cli/bake/graph.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cli::bake {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

class FarmSubmitBuilderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<common::TempDir> tmp = common::TempDir::Create("farm-submit-builder-test");
    ASSERT_OK(tmp);
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    for (const char* d : {"base", "app", "shared"}) ASSERT_OK(common::MakeDirs(Path(d)));
    ASSERT_OK(common::WriteFileAtomic(Path("base/Dockerfile"), "FROM scratch\n"));
    ASSERT_OK(common::WriteFileAtomic(Path("app/Dockerfile"), "FROM base\n"));
  }

  std::string Path(const std::string& rel) const { return common::JoinPath(tmp_->path(), rel); }

  // base, and app reading base, a directory and an image as named contexts.
  void MakeGraph() {
    Target base;
    base.name = "base";
    base.context = Path("base");
    Target app;
    app.name = "app";
    app.context = Path("app");
    app.target = "final";
    app.args = {{"V", "1"}};
    app.labels = {{"team", "x"}};
    app.contexts = {
        {"lib", Path("shared")}, {"alpine", "docker-image://alpine"}, {"img", "target:base"}};
    app.tags = std::vector<std::string>{"example/app:1"};
    app.platforms = std::vector<std::string>{"linux/arm64"};
    app.output = std::vector<std::string>{"type=registry", "type=oci,dest=app.tar"};
    app.cache_from = std::vector<std::string>{"scope=pr/1"};
    app.no_cache = true;
    Resolved r;
    r.targets = {base, app};
    Graph::Options o;
    o.check_host_platforms = false;
    absl::StatusOr<std::unique_ptr<Graph>> g = Graph::Create(r, o);
    ASSERT_OK(g);
    graph_ = *std::move(g);
  }

  // A stand-in for the farm binary: prints `lines`, writes "sha256:feed" to its --iidfile,
  // copies its -f file to "dockerfile.seen" and exits with `exit_code`.
  std::string FakeFarm(const std::string& lines, int exit_code) {
    std::string script = absl::StrCat(
        "#!/bin/sh\n"
        "while [ $# -gt 0 ]; do\n"
        "  case $1 in --iidfile) iid=$2 ;; -f) df=$2 ;; esac\n"
        "  shift\n"
        "done\n"
        "cat <<'EOF'\n",
        lines, "EOF\nprintf sha256:feed >\"$iid\"\ncp \"$df\" '", Path("dockerfile.seen"),
        "'\nexit ", exit_code, "\n");
    std::string path = Path("fake-farm");
    EXPECT_OK(common::WriteFileAtomic(path, script, 0755));
    return path;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::unique_ptr<Graph> graph_;
};

TEST_F(FarmSubmitBuilderTest, SubmitArgsCarryTheTargetAndTheFlags) {
  MakeGraph();
  FarmSubmitBuilder::Options o;
  o.defaults.pull = true;
  o.scheduler = "farm:7070";
  o.load = true;
  o.insecure_registries = {"reg:5000"};
  o.security_args = {"--tls-ca", "ca.pem"};
  FarmSubmitBuilder builder(graph_.get(), o);

  absl::StatusOr<std::vector<std::string>> app =
      builder.SubmitArgs(graph_->run("app"), "/tmp/iid", "/df");
  ASSERT_OK(app);
  EXPECT_THAT(*app, ElementsAreArray(std::vector<std::string>{
                        "farm",
                        "submit",
                        "--progress",
                        "plain",
                        "--iidfile",
                        "/tmp/iid",
                        "--scheduler",
                        "farm:7070",
                        "-f",
                        "/df",
                        "--build-arg",
                        "V=1",
                        "--label",
                        "team=x",
                        "-t",
                        "docker.io/example/app:1",
                        "--build-context",
                        "lib=" + Path("shared"),
                        "--build-context",
                        "alpine=docker-image://alpine",
                        "--build-context",
                        "img=docker-image://docker.io/farm-bake/base:latest",
                        "--target",
                        "final",
                        "--platform",
                        "linux/arm64",
                        "--no-cache",
                        "--pull",
                        "--push",
                        "--load",
                        "-o",
                        "type=oci,dest=app.tar",
                        "--cache-from-scope",
                        "pr/1",
                        "--cache-scope",
                        "main",
                        "--insecure-registry",
                        "reg:5000",
                        "--tls-ca",
                        "ca.pem",
                        Path("app"),
                    }));

  // base has no tag of its own: app reads it under bake's local name, which it is tagged with.
  absl::StatusOr<std::vector<std::string>> base =
      builder.SubmitArgs(graph_->run("base"), "/tmp/iid", "/df");
  ASSERT_OK(base);
  EXPECT_THAT(
      std::vector<std::string>(base->begin() + 10, base->end()),
      ElementsAre("-t", "docker.io/farm-bake/base:latest", "--pull", "--load", "--cache-scope",
                  "main", "--insecure-registry", "reg:5000", "--tls-ca", "ca.pem", Path("base")));
}

TEST(SecurityArgsTest, PicksTheSecurityFlagsWithTheirValues) {
  EXPECT_THAT(
      FarmSubmitBuilder::SecurityArgs({"bake", "--tls", "--tls-ca", "ca.pem", "--token-file=t",
                                       "--push", "-f", "x.json", "--insecure", "--tls-key"}),
      ElementsAre("--tls", "--tls-ca", "ca.pem", "--token-file=t", "--insecure"));
}

TEST(StepCounterTest, CountsDockerfileStepsRunAndCached) {
  StepCounter c;
  for (const char* line :
       {"#1 [internal] load build definition from Dockerfile", "#1 DONE 0.0s",
        "#2 [1/3] FROM busybox", "#2 CACHED", "#3 [2/3] RUN make", "#3 0.512 compiling",
        "#3 DONE 1.2s", "#4 [3/3] COPY a b", "#4 DONE 0.1s", "", "not a vertex", "#5"}) {
    c.OnLine(line);
  }
  EXPECT_EQ(c.steps_run(), 2);
  EXPECT_EQ(c.steps_cached(), 1);
  EXPECT_EQ(c.vertices(), 4u);
}

TEST_F(FarmSubmitBuilderTest, BuildRunsTheFarmBinaryAndReadsWhatCameOfIt) {
  MakeGraph();
  FarmSubmitBuilder::Options o;
  o.defaults.quiet = true;
  o.scheduler = "farm:7070";
  o.program = FakeFarm(
      "#1 [internal] send build context\n#1 DONE 0.1s\n#2 [internal] load build definition\n"
      "#2 DONE 0.0s\n#3 [1/2] FROM busybox\n#3 CACHED\n#4 [2/2] RUN make\n#4 DONE 1.0s\n",
      0);
  FarmSubmitBuilder builder(graph_.get(), o);
  TargetRun& base = graph_->run("base");
  ASSERT_OK(builder.Build(&base));
  EXPECT_EQ(base.image_id, "sha256:feed");
  EXPECT_EQ(base.steps_run, 1);
  EXPECT_EQ(base.steps_cached, 1);
  EXPECT_TRUE(base.context_ready.HasBeenNotified());
}

TEST_F(FarmSubmitBuilderTest, DockerfileInlineGoesAsAFile) {
  Target t;
  t.name = "inline";
  t.context = Path("app");
  t.dockerfile_inline = "FROM busybox\nRUN true\n";
  Resolved r;
  r.targets = {t};
  absl::StatusOr<std::unique_ptr<Graph>> g = Graph::Create(r, {});
  ASSERT_OK(g);
  FarmSubmitBuilder::Options o;
  o.defaults.quiet = true;
  o.program = FakeFarm("", 0);
  FarmSubmitBuilder builder(g->get(), o);
  ASSERT_OK(builder.Build(&(*g)->run("inline")));
  absl::StatusOr<std::string> seen = common::ReadFile(Path("dockerfile.seen"));
  ASSERT_OK(seen);
  EXPECT_EQ(*seen, "FROM busybox\nRUN true\n");
}

TEST_F(FarmSubmitBuilderTest, AFailedSubmitIsUnknownAndKeepsItsCounts) {
  MakeGraph();
  FarmSubmitBuilder::Options o;
  o.defaults.quiet = true;
  o.program = FakeFarm("#3 [1/2] FROM busybox\n#3 CACHED\n#4 [2/2] RUN false\n#4 ERROR\n", 1);
  FarmSubmitBuilder builder(graph_.get(), o);
  TargetRun& base = graph_->run("base");
  absl::Status s = builder.Build(&base);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnknown);
  EXPECT_EQ(s.message(), "farm submit failed (see its lines above)");
  EXPECT_EQ(base.steps_cached, 1);
  EXPECT_EQ(base.image_id, "");
  // Two vertices: not known to be submitted (BuildAll marks it ready once it is done).
  EXPECT_FALSE(base.context_ready.HasBeenNotified());
}

}  // namespace
}  // namespace farm::cli::bake
