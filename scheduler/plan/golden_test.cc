// Golden tests of the whole front end. Each directory under scheduler/testdata/ is a case:
//
//   Dockerfile        the input (named "Dockerfile" in messages)
//   args              optional: one flag per line: --build-arg K=V, --target T, --platform P
//   context/          optional: the build context (default: an empty directory)
//   parse.json        expected `farm parse` output, or
//   parse-error.txt   the expected parse error (FILE:LINE:COL: message)
//   plan.txt          expected `farm plan` output (text form), or
//   plan.json         expected `farm plan --format json` output (with key preimages), or
//   plan-error.txt    the expected error of stage 2 or 3
//
// A case has a parse expectation, a plan expectation, or both. Base images come from a fake
// resolver (below). To rewrite the expectations after a deliberate change:
//   FARM_UPDATE_GOLDEN=$PWD/scheduler/testdata bazel run //scheduler/plan:golden_test
// and review the diff.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <fstream>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "scheduler/context/context.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"
#include "scheduler/plan/planner.h"
#include "scheduler/plan/print.h"

namespace farm::scheduler::plan {
namespace {

const char kTestdata[] = "scheduler/testdata";

class FakeResolver : public image::BaseImageResolver {
 public:
  FakeResolver() {
    auto path_env = std::vector<std::string>{absl::StrCat("PATH=", kDefaultPath)};
    Add("alpine:3.19", [&](oci::ImageConfig& c) {
      c.config.env = path_env;
      c.config.cmd = std::vector<std::string>{"/bin/sh"};
    });
    Add("debian:bookworm", [&](oci::ImageConfig& c) {
      c.config.env = path_env;
      c.config.env.push_back("LANG=C.UTF-8");
      c.config.cmd = std::vector<std::string>{"bash"};
    });
    Add("onbuild-base", [&](oci::ImageConfig& c) {
      c.config.env = path_env;
      c.config.working_dir = "/base";
      c.config.on_build = {"ARG TRIGGER_ARG=from-trigger", "RUN echo triggered $TRIGGER_ARG",
                           "WORKDIR src"};
    });
    Add("entry-base", [&](oci::ImageConfig& c) {
      c.config.env = path_env;
      c.config.entrypoint = std::vector<std::string>{"/entry"};
      c.config.cmd = std::vector<std::string>{"default-arg"};
      c.config.user = "base-user";
    });
    Add("localhost:5000/team/tool:1.2", [&](oci::ImageConfig& c) { c.config.env = path_env; });
    Add("alpine@sha256:0000000000000000000000000000000000000000000000000000000000000001",
        [&](oci::ImageConfig& c) { c.config.env = path_env; });
  }

  absl::StatusOr<image::ResolvedImage> Resolve(const std::string& reference,
                                               const std::string& platform) override {
    auto it = images_.find(reference);
    if (it == images_.end()) {
      return absl::NotFoundError(absl::StrCat("image ", reference, " not found"));
    }
    image::ResolvedImage r = it->second;
    std::vector<std::string> parts = absl::StrSplit(platform, '/');
    r.config.os = parts[0];
    r.config.architecture = parts[1];
    return r;
  }

 private:
  template <typename F>
  void Add(const std::string& ref, F fill) {
    image::ResolvedImage r;
    r.reference = ref;
    r.manifest_digest = "sha256:" + common::Sha256Hex("manifest " + ref);
    r.config_digest = "sha256:" + common::Sha256Hex("config " + ref);
    fill(r.config);
    r.config.diff_ids = {"sha256:" + common::Sha256Hex("layer " + ref)};
    farm::v1::Layer l;
    l.set_diff_id(r.config.diff_ids[0]);
    r.layers.push_back(l);
    images_[ref] = r;
  }
  std::map<std::string, image::ResolvedImage> images_;
};

std::vector<std::string> Cases() {
  std::vector<std::string> out;
  DIR* d = opendir(kTestdata);
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (common::PathExists(common::JoinPath(common::JoinPath(kTestdata, n), "Dockerfile"))) {
      out.push_back(n);
    }
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string Read(const std::string& path) {
  absl::StatusOr<std::string> s = common::ReadFile(path);
  return s.ok() ? *s : std::string();
}

// Compares `got` with the expectation file `name` of case `c`; false if that file does not
// exist (the outcome differs from what the case expects). In update mode writes it instead,
// removing `other` (the opposite outcome's file).
bool Expect(const std::string& c, const std::string& name, const std::string& other,
            const std::string& got) {
  std::string dir = common::JoinPath(kTestdata, c);
  const char* update = getenv("FARM_UPDATE_GOLDEN");
  if (update != nullptr && *update) {
    std::string out_dir = common::JoinPath(update, c);
    EXPECT_TRUE(common::WriteFileAtomic(common::JoinPath(out_dir, name), got).ok());
    unlink(common::JoinPath(out_dir, other).c_str());
    return true;
  }
  std::string path = common::JoinPath(dir, name);
  if (!common::PathExists(path)) return false;
  EXPECT_EQ(got, Read(path)) << "golden mismatch: " << path;
  return true;
}

std::string ErrorText(const absl::Status& s) { return std::string(s.message()) + "\n"; }

TEST(GoldenTest, AllCases) {
  std::vector<std::string> cases = Cases();
  ASSERT_GE(cases.size(), 60u) << "the golden set must cover at least 60 cases";
  const char* update = getenv("FARM_UPDATE_GOLDEN");
  bool updating = update != nullptr && *update;
  for (const std::string& c : cases) {
    SCOPED_TRACE(c);
    std::string dir = common::JoinPath(kTestdata, c);
    std::string text = Read(common::JoinPath(dir, "Dockerfile"));
    bool want_parse = common::PathExists(common::JoinPath(dir, "parse.json")) ||
                      common::PathExists(common::JoinPath(dir, "parse-error.txt"));
    bool want_json = common::PathExists(common::JoinPath(dir, "plan.json"));
    bool want_plan = want_json || common::PathExists(common::JoinPath(dir, "plan.txt")) ||
                     common::PathExists(common::JoinPath(dir, "plan-error.txt"));
    if (updating) {
      // In update mode a case keeps the kinds of expectations it already has; a new case
      // (none yet) gets both.
      if (!want_parse && !want_plan) want_parse = want_plan = true;
    }
    ASSERT_TRUE(want_parse || want_plan) << c << " has no expectation file";
    absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(text, "Dockerfile");
    if (want_parse) {
      bool ok = tree.ok() ? Expect(c, "parse.json", "parse-error.txt",
                                   dockerfile::SyntaxTreeToJson(*tree))
                          : Expect(c, "parse-error.txt", "parse.json", ErrorText(tree.status()));
      EXPECT_TRUE(ok) << c << ": parse " << (tree.ok() ? "succeeded" : "failed: ")
                      << (tree.ok() ? "" : tree.status().message()) << ", unlike its expectation";
    }
    if (!want_plan) continue;
    PlanOptions po;
    for (absl::string_view line : absl::StrSplit(Read(common::JoinPath(dir, "args")), '\n')) {
      line = absl::StripAsciiWhitespace(line);
      if (absl::ConsumePrefix(&line, "--build-arg ")) {
        size_t eq = line.find('=');
        po.build_args[std::string(line.substr(0, eq))] =
            eq == absl::string_view::npos ? "" : std::string(line.substr(eq + 1));
      } else if (absl::ConsumePrefix(&line, "--target ")) {
        po.target = std::string(line);
      } else if (absl::ConsumePrefix(&line, "--platform ")) {
        po.platform = std::string(line);
      } else if (absl::ConsumePrefix(&line, "--compression ")) {
        po.layer_options.set_compression(line == "zstd" ? farm::v1::LayerOptions::ZSTD
                                                        : farm::v1::LayerOptions::GZIP);
      }
    }
    // Runfiles are symlinks into the source tree; a build context must be the real directory
    // (its own symlinks are part of what is tested).
    char real[PATH_MAX];
    ASSERT_NE(realpath(common::JoinPath(dir, "Dockerfile").c_str(), real), nullptr);
    std::string src_dir(real);
    src_dir = src_dir.substr(0, src_dir.rfind('/'));
    std::string ctx_dir = common::JoinPath(src_dir, "context");
    absl::StatusOr<common::TempDir> empty = common::TempDir::Create("golden-ctx");
    ASSERT_TRUE(empty.ok());
    if (!common::PathExists(ctx_dir)) ctx_dir = empty->path();
    absl::StatusOr<std::vector<std::string>> ignore = context::LoadIgnorePatterns(ctx_dir, "");
    ASSERT_TRUE(ignore.ok()) << ignore.status();
    // Git records only the executable bit, and a checkout's other permission bits follow the
    // umask: normalize them (0644/0755) so that the golden keys are the same in every checkout.
    context::SnapshotOptions so;
    so.normalize_permissions = true;
    po.layer_options.set_normalize_permissions(true);
    absl::StatusOr<std::unique_ptr<context::Snapshot>> snap =
        context::Snapshot::FromDirectory(ctx_dir, *ignore, so);
    ASSERT_TRUE(snap.ok()) << snap.status();
    FakeResolver resolver;
    po.resolver = &resolver;
    po.context = &(*snap)->tree();
    po.context_root = (*snap)->root();
    absl::Status err = tree.status();
    std::string text_plan;
    if (tree.ok()) {
      absl::StatusOr<dockerfile::Dockerfile> df = dockerfile::BuildInstructions(*tree);
      err = df.status();
      if (df.ok()) {
        absl::StatusOr<Plan> p = MakePlan(*df, po);
        err = p.status();
        if (p.ok()) text_plan = want_json ? PlanToJson(*p) : PlanToText(*p);
      }
    }
    bool ok = err.ok()
                  ? Expect(c, want_json ? "plan.json" : "plan.txt", "plan-error.txt", text_plan)
                  : Expect(c, "plan-error.txt", "plan.txt", ErrorText(err));
    EXPECT_TRUE(ok) << c << ": planning " << (err.ok() ? "succeeded" : "failed: ")
                    << (err.ok() ? "" : err.message()) << ", unlike its expectation";
  }
}

}  // namespace
}  // namespace farm::scheduler::plan
