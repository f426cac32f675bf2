// `farm plan` output from a plan built by hand: the text layout line by line, and the JSON's
// documented fields (the golden tests in scheduler/testdata cover plans the planner makes).
#include "scheduler/plan/print.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace farm::scheduler::plan {
namespace {

const std::string kChain0(64, '0');
const std::string kRunKey = std::string(16, 'a') + std::string(48, '1');
const std::string kCopyKey = std::string(16, 'b') + std::string(48, '2');

// Two stages: "build" FROM an image (a RUN and an inherited ONBUILD ENV), then the target,
// Dockerfile stage 2, FROM build with a COPY --from.
Plan TwoStagePlan() {
  Plan plan;
  plan.filename = "Dockerfile";

  Stage build;
  build.index = 0;
  build.name = "build";
  build.base_kind = Stage::BaseKind::kImage;
  build.base_ref = "alpine:3.19";
  image::ResolvedImage img;
  img.reference = "docker.io/library/alpine:3.19";
  img.manifest_digest = "sha256:mmmm";
  img.config_digest = "sha256:cccc";
  build.base_image = img;
  build.platform = "linux/amd64";
  build.base_chain = kChain0;
  build.final_chain = kRunKey;
  build.config.config.env = {"PATH=/bin", "A=1"};

  Step run;
  run.kind = StepKind::kRun;
  run.name = "RUN";
  run.instruction = "RUN make";
  run.created_by = "RUN /bin/sh -c make # buildkit";
  run.pos = dockerfile::Position{2, 1};
  run.end_line = 3;
  run.key = kRunKey;
  run.chain = kRunKey;
  run.preimage = {{"version", "farm-key-v1"}, {"op", "RUN [\"make\"]"}, {"file", "/x sha256:ff"}};
  build.steps.push_back(run);

  Step env;
  env.kind = StepKind::kMetadata;
  env.name = "ENV";
  env.instruction = "ENV A=1";
  env.created_by = "ENV A=1";
  env.pos = dockerfile::Position{1, 1};
  env.end_line = 1;
  env.from_onbuild = true;
  env.chain = kRunKey;
  env.changes = {"Env: A=1"};
  build.steps.push_back(env);

  Stage target;
  target.index = 2;
  target.base_kind = Stage::BaseKind::kStage;
  target.base_ref = "build";
  target.base_stage = 0;
  target.platform = "linux/amd64";
  target.base_chain = kRunKey;
  target.final_chain = kCopyKey;
  target.depends_on = {0};

  Step copy;
  copy.kind = StepKind::kCopy;
  copy.name = "COPY";
  copy.instruction = "COPY --from=build [\"/out\"] /out";
  copy.created_by = "COPY /out /out # buildkit";
  copy.pos = dockerfile::Position{6, 1};
  copy.end_line = 6;
  copy.key = kCopyKey;
  copy.chain = kCopyKey;
  copy.preimage = {{"version", "farm-key-v1"}, {"inputs", "from build chain 1111"}};
  copy.copy_from = SourceRef{0, std::nullopt, kRunKey};
  target.steps.push_back(copy);

  plan.stages = {build, target};
  plan.target = 1;
  plan.warnings = {"Dockerfile:4:1: something to know"};
  plan.unused_build_args = {"UNUSED"};
  return plan;
}

TEST(PlanToTextTest, StagesStepsKeysInputsChangesAndWarnings) {
  EXPECT_EQ(PlanToText(TwoStagePlan()),
            "stage 0 (build)\n"
            "  from image docker.io/library/alpine:3.19@sha256:mmmm  platform linux/amd64\n"
            "  base chain 0000000000000000\n"
            "  2: RUN make\n"
            "      key aaaaaaaaaaaaaaaa\n"
            "      file /x sha256:ff\n"
            "  1: (ONBUILD) ENV A=1\n"
            "      config Env: A=1\n"
            "stage 2 [target]\n"
            "  from stage build  platform linux/amd64\n"
            "  base chain aaaaaaaaaaaaaaaa\n"
            "  depends on stages 0\n"
            "  6: COPY --from=build [\"/out\"] /out\n"
            "      key bbbbbbbbbbbbbbbb\n"
            "      inputs from build chain 1111\n"
            "warning: Dockerfile:4:1: something to know\n");
}

TEST(PlanToTextTest, ScratchAndUnresolvedBases) {
  Plan plan;
  Stage scratch;
  scratch.base_kind = Stage::BaseKind::kScratch;
  scratch.base_ref = "scratch";
  scratch.platform = "linux/arm64/v8";
  scratch.base_chain = kChain0;
  Stage unresolved;
  unresolved.index = 1;
  unresolved.base_kind = Stage::BaseKind::kImage;
  unresolved.base_ref = "example.com/tool:1";
  unresolved.base_resolved = false;
  unresolved.platform = "linux/amd64";
  unresolved.base_chain = kChain0;
  plan.stages = {scratch, unresolved};
  plan.target = 1;
  std::string text = PlanToText(plan);
  EXPECT_TRUE(absl::StrContains(text, "stage 0\n  from scratch  platform linux/arm64/v8\n"))
      << text;
  EXPECT_TRUE(absl::StrContains(
      text, "stage 1 [target]\n  from image example.com/tool:1 (not resolved)  platform"))
      << text;
}

TEST(PlanToJsonTest, DocumentedFields) {
  const std::string out = PlanToJson(TwoStagePlan());
  ASSERT_TRUE(absl::StartsWith(out, "{\n  \"file\": \"Dockerfile\",\n  \"target\": 2,\n")) << out;
  ASSERT_TRUE(absl::EndsWith(out, "}\n"));
  nlohmann::json j = nlohmann::json::parse(out);
  EXPECT_EQ(j["target"], 2);  // the Dockerfile's stage index, not the position in "stages"
  ASSERT_EQ(j["stages"].size(), 2u);

  const nlohmann::json& build = j["stages"][0];
  EXPECT_EQ(build["index"], 0);
  EXPECT_EQ(build["name"], "build");
  EXPECT_EQ(build["base"]["kind"], "image");
  EXPECT_EQ(build["base"]["ref"], "alpine:3.19");
  EXPECT_EQ(build["base"]["resolved"], true);
  EXPECT_EQ(build["base"]["reference"], "docker.io/library/alpine:3.19");
  EXPECT_EQ(build["base"]["manifest_digest"], "sha256:mmmm");
  EXPECT_EQ(build["base"]["config_digest"], "sha256:cccc");
  EXPECT_EQ(build["base"]["chain"], kChain0);
  EXPECT_EQ(build["platform"], "linux/amd64");
  EXPECT_EQ(build["depends_on"], nlohmann::json::array());
  EXPECT_EQ(build["final_chain"], kRunKey);
  EXPECT_EQ(build["config"]["Env"], nlohmann::json({"PATH=/bin", "A=1"}));

  const nlohmann::json& run = build["steps"][0];
  EXPECT_EQ(run["line"], 2);
  EXPECT_EQ(run["end_line"], 3);
  EXPECT_EQ(run["name"], "RUN");
  EXPECT_EQ(run["kind"], "run");
  EXPECT_EQ(run["instruction"], "RUN make");
  EXPECT_EQ(run["created_by"], "RUN /bin/sh -c make # buildkit");
  EXPECT_EQ(run["key"], kRunKey);
  EXPECT_EQ(run["chain"], kRunKey);
  EXPECT_EQ(run["preimage"], nlohmann::json::parse(R"([["version","farm-key-v1"],)"
                                                   R"(["op","RUN [\"make\"]"],)"
                                                   R"(["file","/x sha256:ff"]])"));
  EXPECT_FALSE(run.contains("from_onbuild"));
  EXPECT_EQ(run["changes"], nlohmann::json::array());

  // A metadata step has no key, chain or preimage in the JSON.
  const nlohmann::json& env = build["steps"][1];
  EXPECT_EQ(env["kind"], "metadata");
  EXPECT_EQ(env["from_onbuild"], true);
  EXPECT_FALSE(env.contains("key"));
  EXPECT_FALSE(env.contains("chain"));
  EXPECT_FALSE(env.contains("preimage"));
  EXPECT_EQ(env["changes"], nlohmann::json({"Env: A=1"}));

  const nlohmann::json& target = j["stages"][1];
  EXPECT_EQ(target["index"], 2);
  EXPECT_EQ(target["name"], "");
  EXPECT_EQ(target["base"]["kind"], "stage");
  EXPECT_EQ(target["base"]["stage"], 0);
  EXPECT_FALSE(target["base"].contains("resolved"));
  EXPECT_EQ(target["depends_on"], nlohmann::json({0}));
  EXPECT_EQ(target["steps"][0]["kind"], "copy");
  EXPECT_EQ(target["steps"][0]["copy_from_stage"], 0);
  EXPECT_FALSE(target["steps"][0].contains("copy_from_image"));

  EXPECT_EQ(j["warnings"], nlohmann::json({"Dockerfile:4:1: something to know"}));
  EXPECT_EQ(j["unused_build_args"], nlohmann::json({"UNUSED"}));
}

TEST(PlanToJsonTest, CopyFromAnImageAndAnEmptyPlan) {
  Plan plan = TwoStagePlan();
  image::ResolvedImage img;
  img.reference = "docker.io/library/busybox:1";
  plan.stages[1].steps[0].copy_from = SourceRef{-1, img, "chain"};
  nlohmann::json j = nlohmann::json::parse(PlanToJson(plan));
  EXPECT_EQ(j["stages"][1]["steps"][0]["copy_from_image"], "docker.io/library/busybox:1");
  EXPECT_FALSE(j["stages"][1]["steps"][0].contains("copy_from_stage"));

  nlohmann::json empty = nlohmann::json::parse(PlanToJson(Plan()));
  EXPECT_EQ(empty["target"], -1);
  EXPECT_EQ(empty["stages"], nlohmann::json::array());
}

}  // namespace
}  // namespace farm::scheduler::plan
