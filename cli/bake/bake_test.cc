// farm bake's definition: bake JSON and Compose parsing, variables, file lookup, resolution
// (groups, inherits, target contexts), --print, and the errors (with file:line:col).
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/bake/definition.h"
#include "cli/bake/files.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cli::bake {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

Env MapEnv(std::map<std::string, std::string> m) {
  return [m](const std::string& name) -> std::optional<std::string> {
    auto it = m.find(name);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
}

constexpr char kBake[] = R"({
  "variable": {"TAG": {"default": "latest"}, "REGISTRY": {"default": "farm.local"}},
  "group": {"default": {"targets": ["api", "web"]}, "all": {"targets": ["default", "worker"]}},
  "target": {
    "_common": {"context": ".", "args": {"BASE": "debian", "MODE": "dev"},
                "labels": {"org": "acme"}},
    "api": {"inherits": ["_common"], "dockerfile": "api/Dockerfile",
            "args": {"MODE": "prod"}, "tags": ["${REGISTRY}/api:${TAG}"],
            "contexts": {"shared": "./shared", "alpine": "docker-image://busybox:1"}},
    "web": {"inherits": ["_common"], "target": "final", "tags": ["web:$${TAG}"],
            "contexts": {"apibin": "target:api"}, "platforms": ["linux/amd64"],
            "cache-from": [{"type": "farm", "scope": "pr/1"}], "no-cache": true},
    "worker": {"context": "worker", "output": ["type=oci,dest=w.tar"]}
  }
})";

TEST(BakeJsonTest, ReadsTargetsGroupsAndVariablesWithEnvOverride) {
  Definition def;
  ASSERT_TRUE(ParseBakeJson("docker-bake.json", kBake, MapEnv({{"TAG", "v2"}}), &def).ok());
  ASSERT_EQ(def.targets.size(), 4u);
  const Target& api = def.targets["api"];
  EXPECT_EQ(api.tags, std::vector<std::string>({"farm.local/api:v2"}));  // env wins over default
  EXPECT_EQ(*api.dockerfile, "api/Dockerfile");
  EXPECT_THAT(api.inherits, ElementsAre("_common"));
  EXPECT_EQ(def.targets["web"].tags, std::vector<std::string>({"web:${TAG}"}));  // $${ escape
  EXPECT_EQ(*def.targets["web"].cache_from, std::vector<std::string>({"scope=pr/1,type=farm"}));
  EXPECT_EQ(*def.targets["web"].no_cache, true);
  EXPECT_THAT(def.groups["all"].targets, ElementsAre("default", "worker"));
}

TEST(BakeJsonTest, ResolvesInheritsGroupsAndTargetContextsFirst) {
  Definition def;
  ASSERT_TRUE(ParseBakeJson("docker-bake.json", kBake, MapEnv({}), &def).ok());
  absl::StatusOr<Resolved> r = Resolve(def, {"web"});
  ASSERT_TRUE(r.ok()) << r.status();
  // web needs api (its "apibin" context): api is built, and first.
  ASSERT_EQ(r->targets.size(), 2u);
  EXPECT_EQ(r->targets[0].name, "api");
  EXPECT_EQ(r->targets[1].name, "web");
  EXPECT_THAT(r->needs["web"], ElementsAre("api"));
  EXPECT_THAT(r->requested, ElementsAre("web"));
  const Target& api = r->targets[0];
  // Inherited, with the target's own value winning; defaults filled.
  EXPECT_THAT(api.args, UnorderedElementsAre(Pair("BASE", "debian"), Pair("MODE", "prod")));
  EXPECT_THAT(api.labels, ElementsAre(Pair("org", "acme")));
  EXPECT_EQ(*api.context, ".");
  EXPECT_EQ(*r->targets[1].dockerfile, "Dockerfile");

  absl::StatusOr<Resolved> all = Resolve(def, {"all"});
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_THAT(all->requested, ElementsAre("api", "web", "worker"));
  absl::StatusOr<Resolved> dflt = Resolve(def, {});
  ASSERT_TRUE(dflt.ok());
  EXPECT_THAT(dflt->requested, ElementsAre("api", "web"));
}

TEST(BakeJsonTest, PrintIsBuildxShape) {
  Definition def;
  ASSERT_TRUE(ParseBakeJson("docker-bake.json", kBake, MapEnv({}), &def).ok());
  absl::StatusOr<Resolved> r = Resolve(def, {"api"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(PrintJson(*r), R"({
  "group": {
    "default": {
      "targets": [
        "api"
      ]
    }
  },
  "target": {
    "api": {
      "context": ".",
      "contexts": {
        "alpine": "docker-image://busybox:1",
        "shared": "./shared"
      },
      "dockerfile": "api/Dockerfile",
      "args": {
        "BASE": "debian",
        "MODE": "prod"
      },
      "labels": {
        "org": "acme"
      },
      "tags": [
        "farm.local/api:latest"
      ]
    }
  }
})");
}

TEST(BakeJsonTest, ErrorsNamePositionsAndPaths) {
  Definition def;
  absl::Status s =
      ParseBakeJson("docker-bake.json", "{\n  \"target\": {\n    \"a\": {,}\n}", MapEnv({}), &def);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("docker-bake.json:3:11: "));
  s = ParseBakeJson("f.json", R"({"target": {"a": {"tags": ["x:${NOPE}"]}}})", MapEnv({}), &def);
  EXPECT_THAT(s.message(), HasSubstr("f.json: target.a.tags[0]: unknown variable \"NOPE\""));
  s = ParseBakeJson("f.json", R"({"target": {"a": {"args": ["x"]}}})", MapEnv({}), &def);
  EXPECT_THAT(s.message(), HasSubstr("f.json: target.a.args: expected an object"));
}

TEST(ResolveTest, UnknownNamesAndCyclesAreErrors) {
  Definition def;
  ASSERT_TRUE(ParseBakeJson("b.json", R"({"target": {
      "a": {"inherits": ["b"]}, "b": {"inherits": ["a"]},
      "c": {"inherits": ["missing"]},
      "d": {"contexts": {"x": "target:e"}}, "e": {"contexts": {"y": "target:d"}},
      "f": {"contexts": {"z": "https://example.com/x.git"}}}})",
                            MapEnv({}), &def)
                  .ok());
  absl::StatusOr<Resolved> r = Resolve(def, {"nope"});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("failed to find target \"nope\""));
  r = Resolve(def, {"a"});
  EXPECT_THAT(r.status().message(), HasSubstr("inherits cycle: a -> b -> a"));
  r = Resolve(def, {"c"});
  EXPECT_THAT(r.status().message(), HasSubstr("inherits \"missing\", which is not defined"));
  r = Resolve(def, {"d"});
  EXPECT_THAT(r.status().message(), HasSubstr("context cycle between targets: d -> e -> d"));
  r = Resolve(def, {"f"});
  EXPECT_THAT(r.status().message(), HasSubstr("contexts.z"));
  Definition empty;
  EXPECT_EQ(Resolve(empty, {}).status().code(), absl::StatusCode::kNotFound);
}

constexpr char kCompose[] = R"(services:
  api:
    image: ${REGISTRY:-farm.local}/api:${TAG:-dev}
    build:
      context: ./api
      dockerfile: Dockerfile.prod
      args:
        - MODE=prod
        - FROM_ENV
      labels:
        team: ${TEAM:?set TEAM}
      additional_contexts:
        shared: ../shared
        base: service:base
        img: docker-image://busybox
      x-bake:
        no-cache: true
  base:
    build: ./base
  db:
    image: postgres:16
)";

TEST(ComposeTest, ServicesWithBuildBecomeTargetsAndTheDefaultGroup) {
  Definition def;
  absl::Status s =
      ParseCompose("proj/compose.yaml", kCompose,
                   MapEnv({{"TAG", "v3"}, {"TEAM", "core"}, {"FROM_ENV", "yes"}}), &def);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(def.targets.size(), 2u);  // db has no build section
  const Target& api = def.targets["api"];
  EXPECT_EQ(*api.context, "proj/api");  // relative to the compose file
  EXPECT_EQ(*api.dockerfile, "Dockerfile.prod");
  EXPECT_EQ(*api.tags, std::vector<std::string>({"farm.local/api:v3"}));
  EXPECT_THAT(api.args, UnorderedElementsAre(Pair("MODE", "prod"), Pair("FROM_ENV", "yes")));
  EXPECT_THAT(api.labels, ElementsAre(Pair("team", "core")));
  EXPECT_THAT(api.contexts,
              UnorderedElementsAre(Pair("shared", "shared"), Pair("base", "target:base"),
                                   Pair("img", "docker-image://busybox")));
  EXPECT_TRUE(*api.no_cache);
  EXPECT_EQ(*def.targets["base"].context, "proj/base");
  EXPECT_THAT(def.groups["default"].targets, UnorderedElementsAre("api", "base"));
}

TEST(ComposeTest, RequiredVariableAndYamlErrorsCarryLineAndColumn) {
  Definition def;
  absl::Status s = ParseCompose("compose.yaml", kCompose, MapEnv({}), &def);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("compose.yaml:11:15: required variable TEAM is missing a "
                                     "value: set TEAM"));
  s = ParseCompose("compose.yaml", "services:\n  a:\n    build: [\n", MapEnv({}), &def);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("compose.yaml:4:1: "));
  s = ParseCompose("compose.yaml", "services:\n  a:\n    build:\n      - x\n", MapEnv({}), &def);
  EXPECT_THAT(s.message(), HasSubstr("compose.yaml:4:7: services.a.build: expected a path or"));
}

TEST(ComposeTest, Interpolation) {
  Env env = MapEnv({{"A", "1"}, {"E", ""}});
  std::vector<std::string> unset;
  auto I = [&](const char* s) { return *InterpolateCompose(s, env, "f", &unset); };
  EXPECT_EQ(I("$A-${A}"), "1-1");
  EXPECT_EQ(I("${E:-d}|${E-d}|${U-d}|${U:-${A}x}"), "d||d|1x");
  EXPECT_EQ(I("${A:+set}|${U:+set}|$$A"), "set||$A");
  EXPECT_EQ(I("${U}"), "");
  EXPECT_THAT(unset, ElementsAre("U"));
  EXPECT_FALSE(InterpolateCompose("${A", env, "f", nullptr).ok());
  EXPECT_FALSE(InterpolateCompose("${U:?}", env, "f", nullptr).ok());
}

class FilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("bake");
    ASSERT_TRUE(t.ok());
    dir_ = std::make_unique<common::TempDir>(*std::move(t));
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string p = common::JoinPath(dir_->path(), name);
    EXPECT_TRUE(common::WriteFileAtomic(p, text).ok());
    return p;
  }
  std::unique_ptr<common::TempDir> dir_;
};

TEST_F(FilesTest, DefaultLookupOrderMergesLaterFilesOver) {
  EXPECT_EQ(FindFiles(dir_->path(), {}).status().code(), absl::StatusCode::kNotFound);
  Write("docker-bake.override.json",
        R"({"variable": {"V": {"default": "o"}}, "target": {"api": {"tags": ["api:${V}"]}}})");
  Write("compose.yaml", "services:\n  api:\n    image: api:c\n    build: .\n");
  Write("docker-bake.json", R"({"target": {"api": {"args": {"X": "${V}"}, "dockerfile": "D"}}})");
  absl::StatusOr<std::vector<std::string>> files = FindFiles(dir_->path(), {});
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 3u);
  EXPECT_THAT((*files)[0], HasSubstr("compose.yaml"));
  EXPECT_THAT((*files)[1], HasSubstr("docker-bake.json"));
  EXPECT_THAT((*files)[2], HasSubstr("docker-bake.override.json"));
  absl::StatusOr<Definition> def = LoadFiles(*files, MapEnv({}));
  ASSERT_TRUE(def.ok()) << def.status();
  const Target& api = def->targets.at("api");
  EXPECT_EQ(*api.tags, std::vector<std::string>({"api:o"}));  // the last file's tags
  EXPECT_EQ(api.args.at("X"), "o");  // a variable of another file of the set
  EXPECT_EQ(*api.dockerfile, "D");
}

TEST_F(FilesTest, HclIsRefusedWithTheWayToConvertIt) {
  Write("docker-bake.hcl", "target \"a\" {}\n");
  absl::StatusOr<std::vector<std::string>> files = FindFiles(dir_->path(), {});
  EXPECT_EQ(files.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(files.status().message(), HasSubstr("docker-bake.hcl: HCL bake files are not "
                                                  "supported: convert it with `docker buildx "
                                                  "bake --print"));
  EXPECT_FALSE(FindFiles(".", {"x/bake.hcl"}).ok());
  EXPECT_FALSE(LoadFiles({"x/bake.hcl"}, MapEnv({})).ok());
}

}  // namespace
}  // namespace farm::cli::bake
