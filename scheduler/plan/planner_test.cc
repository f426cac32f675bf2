// Properties of the cache keys, each a test: what must change a key, and what must not.
#include "scheduler/plan/planner.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/context/context.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"

namespace farm::scheduler::plan {
namespace {

using ::testing::HasSubstr;

class TwoTagResolver : public image::BaseImageResolver {
 public:
  absl::StatusOr<image::ResolvedImage> Resolve(const std::string& ref,
                                               const std::string& platform) override {
    image::ResolvedImage r;
    r.reference = ref;
    // "base:a" and "base:b" are two tags of the same image; "other" differs.
    std::string layer = ref == "other" ? "other-layer" : "base-layer";
    r.config.diff_ids = {"sha256:" + common::Sha256Hex(layer)};
    r.config.config.env = {"PATH=/bin"};
    r.manifest_digest = "sha256:" + common::Sha256Hex("manifest " + ref);
    return r;
  }
};

struct Dir {
  common::TempDir tmp;
  void Write(const std::string& rel, const std::string& content, int mode = 0644) {
    std::string p = common::JoinPath(tmp.path(), rel);
    ASSERT_TRUE(common::MakeDirs(p.substr(0, p.rfind('/'))).ok());
    ASSERT_TRUE(common::WriteFileAtomic(p, content, mode).ok());
    ASSERT_EQ(chmod(p.c_str(), mode), 0);
  }
  void Touch(const std::string& rel, time_t when) {
    struct timeval tv[2] = {{when, 0}, {when, 0}};
    ASSERT_EQ(utimes(common::JoinPath(tmp.path(), rel).c_str(), tv), 0);
  }
  std::string path() const { return tmp.path(); }
};

Dir NewDir() {
  absl::StatusOr<common::TempDir> t = common::TempDir::Create("keys");
  EXPECT_TRUE(t.ok());
  return Dir{*std::move(t)};
}

struct Keys {
  std::vector<std::string> key;  // per step ("" for metadata-only steps)
  std::vector<std::string> chain;
  std::vector<std::string> line;
};

absl::StatusOr<Plan> PlanOf(const std::string& dockerfile, const std::string& context_dir,
                            const std::map<std::string, std::string>& build_args = {},
                            bool normalize = false,
                            const std::map<std::string, std::string>& secret_digests = {}) {
  absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(dockerfile, "Dockerfile");
  if (!tree.ok()) return tree.status();
  absl::StatusOr<dockerfile::Dockerfile> df = dockerfile::BuildInstructions(*tree);
  if (!df.ok()) return df.status();
  absl::StatusOr<std::vector<std::string>> ignore = context::LoadIgnorePatterns(context_dir, "");
  if (!ignore.ok()) return ignore.status();
  context::SnapshotOptions so;
  so.normalize_permissions = normalize;
  absl::StatusOr<std::unique_ptr<context::Snapshot>> snap =
      context::Snapshot::FromDirectory(context_dir, *ignore, so);
  if (!snap.ok()) return snap.status();
  TwoTagResolver resolver;
  PlanOptions po;
  po.build_args = build_args;
  po.resolver = &resolver;
  po.context = &(*snap)->tree();
  po.context_root = (*snap)->root();
  po.layer_options.set_normalize_permissions(normalize);
  po.secret_digests = secret_digests;
  return MakePlan(*df, po);
}

absl::StatusOr<Keys> PlanKeys(const std::string& dockerfile, const std::string& context_dir,
                              const std::map<std::string, std::string>& build_args = {},
                              bool normalize = false,
                              const std::map<std::string, std::string>& secret_digests = {}) {
  absl::StatusOr<Plan> p = PlanOf(dockerfile, context_dir, build_args, normalize, secret_digests);
  if (!p.ok()) return p.status();
  Keys k;
  for (const Step& s : p->stages[p->target].steps) {
    k.key.push_back(s.key);
    k.chain.push_back(s.chain);
    k.line.push_back(s.instruction);
  }
  return k;
}

const char kFile[] =
    "FROM base:a\n"
    "COPY a.txt /a\n"
    "RUN echo one\n"
    "COPY b.txt /b\n"
    "RUN echo two\n"
    "COPY . /all/\n";

TEST(KeyPropertiesTest, MtimesFileOrderAndHostPathDoNotChangeKeys) {
  Dir one = NewDir();
  one.Write("a.txt", "alpha");
  one.Write("b.txt", "beta");
  one.Write("sub/c.txt", "gamma");
  one.Touch("a.txt", 1000);
  Dir two = NewDir();  // another path, files created in the other order, other mtimes
  two.Write("sub/c.txt", "gamma");
  two.Write("b.txt", "beta");
  two.Write("a.txt", "alpha");
  two.Touch("a.txt", 2000000000);
  two.Touch("sub/c.txt", 12345);
  absl::StatusOr<Keys> k1 = PlanKeys(kFile, one.path());
  absl::StatusOr<Keys> k2 = PlanKeys(kFile, two.path());
  ASSERT_TRUE(k1.ok()) << k1.status();
  ASSERT_TRUE(k2.ok()) << k2.status();
  EXPECT_EQ(k1->key, k2->key);
  // And touching every file again (mtime only) changes nothing either.
  one.Touch("b.txt", 5);
  one.Touch("sub/c.txt", 6);
  absl::StatusOr<Keys> k3 = PlanKeys(kFile, one.path());
  ASSERT_TRUE(k3.ok());
  EXPECT_EQ(k1->key, k3->key);
}

TEST(KeyPropertiesTest, EditingOneCopiedFileChangesThatStepAndLaterOnes) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  d.Write("b.txt", "beta");
  absl::StatusOr<Keys> before = PlanKeys(kFile, d.path());
  d.Write("b.txt", "beta, edited");
  absl::StatusOr<Keys> after = PlanKeys(kFile, d.path());
  ASSERT_TRUE(before.ok() && after.ok());
  ASSERT_EQ(before->key.size(), 5u);
  EXPECT_EQ(before->key[0], after->key[0]);  // COPY a.txt
  EXPECT_EQ(before->key[1], after->key[1]);  // RUN echo one
  for (size_t i = 2; i < before->key.size(); ++i) {
    EXPECT_NE(before->key[i], after->key[i]) << before->line[i];
  }
}

TEST(KeyPropertiesTest, ChangingADockerignoredFileChangesNothing) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  d.Write("b.txt", "beta");
  d.Write("debug.log", "v1");
  d.Write("logs/x.log", "v1");
  d.Write(".dockerignore", "*.log\nlogs\n");
  absl::StatusOr<Keys> before = PlanKeys(kFile, d.path());
  d.Write("debug.log", "v2, much longer");
  d.Write("logs/x.log", "v2");
  d.Write("logs/new.log", "new");
  absl::StatusOr<Keys> after = PlanKeys(kFile, d.path());
  ASSERT_TRUE(before.ok() && after.ok());
  EXPECT_EQ(before->key, after->key);
  // A file that is not ignored does change the `COPY .` step.
  d.Write("new.txt", "new");
  absl::StatusOr<Keys> third = PlanKeys(kFile, d.path());
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(before->key[3], third->key[3]);
  EXPECT_NE(before->key[4], third->key[4]);
}

TEST(KeyPropertiesTest, ArgValueChangesKeysFromItsFirstUseInTheStage) {
  const char kArgs[] =
      "FROM base:a\n"
      "RUN echo before\n"
      "ARG V=1\n"
      "COPY a.txt /a\n"   // does not use V: unchanged
      "RUN echo first\n"  // V is in its environment: changed
      "COPY b.txt /b\n"   // after a changed step: changed
      "RUN echo last\n";
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  d.Write("b.txt", "beta");
  absl::StatusOr<Keys> v1 = PlanKeys(kArgs, d.path());
  absl::StatusOr<Keys> v2 = PlanKeys(kArgs, d.path(), {{"V", "2"}});
  absl::StatusOr<Keys> v1_explicit = PlanKeys(kArgs, d.path(), {{"V", "1"}});
  ASSERT_TRUE(v1.ok() && v2.ok() && v1_explicit.ok());
  // Steps: RUN before, ARG, COPY a, RUN first, COPY b, RUN last.
  ASSERT_EQ(v1->key.size(), 6u);
  EXPECT_EQ(v1->key[0], v2->key[0]);
  EXPECT_EQ(v1->key[2], v2->key[2]);
  EXPECT_NE(v1->key[3], v2->key[3]);
  EXPECT_NE(v1->key[4], v2->key[4]);
  EXPECT_NE(v1->key[5], v2->key[5]);
  EXPECT_EQ(v1->key, v1_explicit->key);  // the default or the same value given: same keys
}

TEST(KeyPropertiesTest, SecretMountsAreKeyedByTheDigestOfTheirValue) {
  // The digests stand for auth::SecretKey::Hash of the values: a different value gives a
  // different key (tenant B's secret never hits tenant A's layer), the value is not in it.
  const char kSecret[] =
      "FROM base:a\n"
      "RUN --mount=type=secret,id=npmrc cat /run/secrets/npmrc\n"
      "RUN --mount=type=secret,target=/tok echo other\n"
      "RUN echo plain\n";
  Dir d = NewDir();
  absl::StatusOr<Keys> a =
      PlanKeys(kSecret, d.path(), {}, false, {{"npmrc", "digest-a"}, {"tok", "t"}});
  absl::StatusOr<Keys> a2 =
      PlanKeys(kSecret, d.path(), {}, false, {{"npmrc", "digest-a"}, {"tok", "t"}});
  absl::StatusOr<Keys> b =
      PlanKeys(kSecret, d.path(), {}, false, {{"npmrc", "digest-b"}, {"tok", "t"}});
  absl::StatusOr<Keys> none = PlanKeys(kSecret, d.path());
  ASSERT_TRUE(a.ok() && a2.ok() && b.ok() && none.ok()) << a.status();
  ASSERT_EQ(a->key.size(), 3u);
  EXPECT_EQ(a->key, a2->key);
  EXPECT_NE(a->key[0], b->key[0]);
  EXPECT_NE(a->key[0], none->key[0]);
  EXPECT_NE(a->key[1], none->key[1]);  // a target-only secret's id is the target's base name
  absl::StatusOr<Plan> p = PlanOf(kSecret, d.path(), {}, false, {{"npmrc", "digest-a"}});
  ASSERT_TRUE(p.ok());
  bool found = false;
  for (const auto& [k, v] : p->stages[p->target].steps[0].preimage) {
    if (k == "secret") {
      EXPECT_EQ(v, "npmrc digest-a");
      found = true;
    }
  }
  EXPECT_TRUE(found);
}

TEST(KeyPropertiesTest, CommentsAndWhitespaceOnlyEditsChangeNoKey) {
  const char kPlain[] =
      "FROM base:a\n"
      "RUN apt-get update && apt-get install -y curl git\n"
      "COPY a.txt /a\n"
      "RUN echo \"two  spaces kept\"\n";
  const char kEdited[] =
      "# A comment at the top\n"
      "\n"
      "FROM   base:a\n"
      "\n"
      "# Install tools\n"
      "RUN apt-get update \\\n"
      "    && apt-get install -y \\\n"
      "        # a comment inside the continuation\n"
      "        curl \\\n"
      "        git   \n"
      "\n"
      "   COPY    a.txt   /a\n"
      "RUN   echo \"two  spaces kept\"\t\n";
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  absl::StatusOr<Keys> a = PlanKeys(kPlain, d.path());
  absl::StatusOr<Keys> b = PlanKeys(kEdited, d.path());
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->key, b->key);
  // Whitespace inside quotes is part of the command: changing it changes the key.
  absl::StatusOr<Keys> c = PlanKeys(
      "FROM base:a\nRUN apt-get update && apt-get install -y curl git\nCOPY a.txt /a\n"
      "RUN echo \"two spaces kept\"\n",
      d.path());
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(a->key.size(), 3u);
  EXPECT_EQ(a->key[1], c->key[1]);
  EXPECT_NE(a->key[2], c->key[2]);
}

TEST(KeyPropertiesTest, ExecutableBitAndSymlinkTargetsAreKeyed) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  d.Write("b.txt", "beta");
  absl::StatusOr<Keys> base = PlanKeys(kFile, d.path());
  d.Write("a.txt", "alpha", 0755);
  absl::StatusOr<Keys> exec = PlanKeys(kFile, d.path());
  ASSERT_TRUE(base.ok() && exec.ok());
  EXPECT_NE(base->key[0], exec->key[0]);
  ASSERT_EQ(symlink("a.txt", common::JoinPath(d.path(), "l1").c_str()), 0);
  absl::StatusOr<Keys> l1 = PlanKeys(kFile, d.path());
  unlink(common::JoinPath(d.path(), "l1").c_str());
  ASSERT_EQ(symlink("b.txt", common::JoinPath(d.path(), "l1").c_str()), 0);
  absl::StatusOr<Keys> l2 = PlanKeys(kFile, d.path());
  ASSERT_TRUE(l1.ok() && l2.ok());
  EXPECT_EQ(l1->key[3], l2->key[3]);
  EXPECT_NE(l1->key[4], l2->key[4]);  // COPY . sees the symlink's target text
}

TEST(KeyPropertiesTest, PermissionBitsAreKeyedUnlessNormalized) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha", 0644);
  d.Write("b.txt", "beta");
  absl::StatusOr<Keys> kept1 = PlanKeys(kFile, d.path());
  absl::StatusOr<Keys> normal1 = PlanKeys(kFile, d.path(), {}, /*normalize=*/true);
  d.Write("a.txt", "alpha", 0600);
  absl::StatusOr<Keys> kept2 = PlanKeys(kFile, d.path());
  absl::StatusOr<Keys> normal2 = PlanKeys(kFile, d.path(), {}, true);
  d.Write("a.txt", "alpha", 04644);
  absl::StatusOr<Keys> kept3 = PlanKeys(kFile, d.path());
  ASSERT_TRUE(normal1.ok() && normal2.ok() && kept1.ok() && kept2.ok() && kept3.ok());
  EXPECT_NE(kept1->key[0], kept2->key[0]);  // 0644 -> 0600: Docker copies the mode, so do we
  EXPECT_NE(kept1->key[0], kept3->key[0]);  // and the setuid bit
  EXPECT_EQ(normal1->key, normal2->key);    // normalized, 0600 and 0644 both become 0644
  EXPECT_NE(normal1->key[0], kept1->key[0]);
}

TEST(KeyPropertiesTest, BaseImageIsKeyedByItsLayersNotItsTag) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  d.Write("b.txt", "beta");
  std::string other = kFile;
  absl::StatusOr<Keys> a = PlanKeys(kFile, d.path());
  absl::StatusOr<Keys> b = PlanKeys(std::string("FROM base:b") + (kFile + 11), d.path());
  absl::StatusOr<Keys> o = PlanKeys(std::string("FROM other") + (kFile + 11), d.path());
  ASSERT_TRUE(a.ok() && b.ok() && o.ok()) << b.status() << o.status();
  EXPECT_EQ(a->key, b->key);
  EXPECT_NE(a->key[0], o->key[0]);
}

TEST(KeyPropertiesTest, LinkedCopyKeyIgnoresTheParentButItsChainDoesNot) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  absl::StatusOr<Keys> x =
      PlanKeys("FROM base:a\nRUN echo x\nCOPY --link a.txt /a\nRUN ls\n", d.path());
  absl::StatusOr<Keys> y =
      PlanKeys("FROM base:a\nRUN echo y\nCOPY --link a.txt /a\nRUN ls\n", d.path());
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_EQ(x->key[1], y->key[1]);      // the layer can be reused on any parent
  EXPECT_NE(x->chain[1], y->chain[1]);  // but what follows still depends on the parent
  EXPECT_NE(x->key[2], y->key[2]);
}

TEST(KeyPropertiesTest, EnvAndUserAndWorkdirChangesReachLaterRuns) {
  Dir d = NewDir();
  absl::StatusOr<Keys> base = PlanKeys("FROM base:a\nRUN make\n", d.path());
  absl::StatusOr<Keys> env = PlanKeys("FROM base:a\nENV CC=clang\nRUN make\n", d.path());
  absl::StatusOr<Keys> label = PlanKeys("FROM base:a\nLABEL a=b\nRUN make\n", d.path());
  absl::StatusOr<Keys> user = PlanKeys("FROM base:a\nUSER nobody\nRUN make\n", d.path());
  ASSERT_TRUE(base.ok() && env.ok() && label.ok() && user.ok());
  EXPECT_NE(base->key.back(), env->key.back());
  EXPECT_EQ(base->key.back(), label->key.back());  // a LABEL does not touch the filesystem
  EXPECT_NE(base->key.back(), user->key.back());
}

TEST(KeyPropertiesTest, ErrorsNameTheSourceAndPosition) {
  Dir d = NewDir();
  absl::StatusOr<Keys> k = PlanKeys("FROM base:a\n\nCOPY missing.txt /\n", d.path());
  ASSERT_FALSE(k.ok());
  EXPECT_THAT(std::string(k.status().message()), HasSubstr("Dockerfile:3:1"));
  EXPECT_THAT(std::string(k.status().message()), HasSubstr("missing.txt"));
}

// Plans `dockerfile` (no context) with entitlement checks.
absl::Status PlanWithEntitlements(const std::string& dockerfile, std::set<std::string> allowed,
                                  std::set<std::string> permitted,
                                  const std::string& default_network = "default") {
  absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(dockerfile, "Dockerfile");
  if (!tree.ok()) return tree.status();
  absl::StatusOr<dockerfile::Dockerfile> df = dockerfile::BuildInstructions(*tree);
  if (!df.ok()) return df.status();
  TwoTagResolver resolver;
  PlanOptions po;
  po.resolver = &resolver;
  po.default_network = default_network;
  po.check_entitlements = true;
  po.allowed_entitlements = std::move(allowed);
  po.permitted_entitlements = std::move(permitted);
  po.permitted_by = "the test host (allow-entitlement)";
  return MakePlan(*df, po).status();
}

TEST(EntitlementsTest, InsecureAndHostNetworkNeedTheBuildAndTheHost) {
  const std::string df = "FROM base:a\nRUN true\n  RUN --security=insecure mount\n";
  absl::Status s = PlanWithEntitlements(df, {}, {"security.insecure"});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("Dockerfile:3:3: RUN --security=insecure needs the security.insecure "
                        "entitlement, which the build did not ask for (add --allow "
                        "security.insecure)"));
  s = PlanWithEntitlements(df, {"security.insecure"}, {"network.host"});
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("Dockerfile:3:3: RUN --security=insecure needs the security.insecure "
                        "entitlement, which the test host (allow-entitlement) does not permit"));
  EXPECT_TRUE(PlanWithEntitlements(df, {"security.insecure"}, {"security.insecure"}).ok());

  const std::string host = "FROM base:a\nRUN --network=host wget x\n";
  s = PlanWithEntitlements(host, {"security.insecure"}, {"network.host", "security.insecure"});
  EXPECT_THAT(std::string(s.message()), HasSubstr("Dockerfile:2:1: RUN --network=host needs"));
  EXPECT_TRUE(PlanWithEntitlements(host, {"network.host"}, {"network.host"}).ok());
  // The build's default network counts too, and names the first RUN it applies to.
  s = PlanWithEntitlements("FROM base:a\nENV A=1\nRUN true\n", {}, {}, "host");
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("Dockerfile:3:1: RUN --network=host (the build's --network) needs"));
  // Plain RUNs and --network=none need nothing.
  EXPECT_TRUE(PlanWithEntitlements("FROM base:a\nRUN --network=none true\n", {}, {}).ok());
}

// COPY <<EOF: the heredoc is a source of the step ("<<NAME" after the paths, as BuildKit copies
// its heredocs last), its body an inline file, expanded unless the delimiter is quoted.
TEST(CopyRequestTest, HeredocsAreSourcesOfTheStep) {
  Dir d = NewDir();
  d.Write("x.txt", "x");
  absl::StatusOr<Plan> p = PlanOf(
      "FROM base:a\n"
      "ARG NAME=world\n"
      "COPY <<EOF /g.txt\n"
      "hello $NAME\n"
      "EOF\n"
      "COPY <<A x.txt <<'B' /multi/\n"
      "a $NAME\n"
      "A\n"
      "b $NAME\n"
      "B\n",
      d.path());
  ASSERT_TRUE(p.ok()) << p.status();
  const std::vector<Step>& steps = p->stages[p->target].steps;
  ASSERT_EQ(steps.size(), 3u);
  const farm::v1::CopyOp& one = steps[1].request.copy();
  EXPECT_THAT(one.srcs(), ::testing::ElementsAre("<<EOF"));
  ASSERT_EQ(one.inline_files_size(), 1);
  EXPECT_EQ(one.inline_files(0).name(), "EOF");
  EXPECT_EQ(one.inline_files(0).content(), "hello world\n");
  EXPECT_EQ(one.dest(), "/g.txt");
  const farm::v1::CopyOp& two = steps[2].request.copy();
  EXPECT_THAT(two.srcs(), ::testing::ElementsAre("x.txt", "<<A", "<<B"));
  ASSERT_EQ(two.inline_files_size(), 2);
  EXPECT_EQ(two.inline_files(0).content(), "a world\n");
  EXPECT_EQ(two.inline_files(1).content(), "b $NAME\n");
  EXPECT_EQ(steps[2].created_by, "COPY x.txt <<A <<B /multi/ # buildkit");
}

const Step* FindStep(const Stage& s, const std::string& prefix) {
  for (const Step& st : s.steps) {
    if (absl::StartsWith(st.created_by, prefix)) return &st;
  }
  return nullptr;
}

// What Docker's BuildKit writes in the history and config, instruction by instruction.
TEST(DockerFormsTest, HistoryAndConfig) {
  Dir d = NewDir();
  absl::StatusOr<Plan> p = PlanOf(
      "FROM base:a\n"
      "ARG A=1\n"
      "ARG NOVALUE\n"
      "ENV X=env\n"
      "ARG X=arg\n"
      "RUN echo $X\n"
      "ARG A=2\n"
      "RUN true\n"
      "HEALTHCHECK --retries=3 CMD true\n"
      "HEALTHCHECK --start-interval=5s --retries=65 CMD [\"/ok\"]\n"
      "ONBUILD RUN later\n"
      "CMD echo hi\n"
      "WORKDIR /\n"
      "WORKDIR /app\n",
      d.path());
  ASSERT_TRUE(p.ok()) << p.status();
  const Stage& s = p->stages[p->target];
  // RUN: every ARG declared so far once, where first declared, with its value in the build
  // state ("" without one); an ARG after ENV of the same name wins for RUN and expansion.
  const Step* run1 = FindStep(s, "RUN |3 A=1 NOVALUE= X=arg /bin/sh -c echo $X # buildkit");
  ASSERT_NE(run1, nullptr);
  EXPECT_THAT(run1->request.env().env(), ::testing::Contains("X=arg"));
  EXPECT_NE(FindStep(s, "RUN |3 A=2 NOVALUE= X=arg /bin/sh -c true # buildkit"), nullptr);
  EXPECT_THAT(s.config.config.env, ::testing::Contains("X=env"));  // ENV only in the config
  // HEALTHCHECK: Go's %q of the config, the start interval only when set.
  EXPECT_NE(FindStep(s, "HEALTHCHECK &{[\"CMD-SHELL\" \"true\"] \"0s\" \"0s\" \"0s\" '\\x03'}"),
            nullptr);
  EXPECT_NE(FindStep(s, "HEALTHCHECK &{[\"CMD\" \"/ok\"] \"0s\" \"0s\" \"0s\" \"5s\" 'A'}"),
            nullptr);
  // ONBUILD: in the config, not in the history.
  const Step* onbuild = FindStep(s, "ONBUILD RUN later");
  ASSERT_NE(onbuild, nullptr);
  EXPECT_FALSE(onbuild->in_history);
  EXPECT_THAT(s.config.config.on_build, ::testing::ElementsAre("RUN later"));
  // CMD sets ArgsEscaped.
  EXPECT_TRUE(s.config.config.args_escaped);
  // WORKDIR: "WORKDIR /dir" with no "# buildkit"; / makes no directory (and no layer).
  const Step* root = FindStep(s, "WORKDIR /");
  ASSERT_NE(root, nullptr);
  EXPECT_EQ(root->created_by, "WORKDIR /");
  EXPECT_EQ(root->kind, StepKind::kMetadata);
  const Step* app = FindStep(s, "WORKDIR /app");
  ASSERT_NE(app, nullptr);
  EXPECT_EQ(app->kind, StepKind::kWorkdir);
}

TEST(DockerFormsTest, ScratchHasWorkingDirAndPath) {
  Dir d = NewDir();
  absl::StatusOr<Plan> p = PlanOf("FROM scratch\nENV A=1\n", d.path());
  ASSERT_TRUE(p.ok()) << p.status();
  const oci::ContainerConfig& c = p->stages[p->target].config.config;
  EXPECT_EQ(c.working_dir, "/");
  EXPECT_THAT(c.env, ::testing::ElementsAre(absl::StrCat("PATH=", kDefaultPath), "A=1"));
}

TEST(DockerFormsTest, DuplicateStageNamesResolveAsBuildKit) {
  Dir d = NewDir();
  absl::StatusOr<Plan> p = PlanOf(
      "FROM base:a AS dup\n"
      "RUN echo first\n"
      "FROM dup AS derived\n"
      "FROM base:a AS dup\n"
      "RUN echo second\n"
      "FROM base:a\n"
      "COPY --from=dup /x /\n"
      "COPY --from=derived /y /\n",
      d.path());
  ASSERT_TRUE(p.ok()) << p.status();
  // COPY --from names the last "dup" (stage 2); FROM dup the one before it (stage 0).
  const Step& copy = p->stages[p->target].steps[0];
  ASSERT_TRUE(copy.copy_from.has_value());
  EXPECT_EQ(copy.copy_from->stage, 2);
  bool derived_found = false;
  for (const Stage& s : p->stages) {
    if (s.name == "derived") {
      derived_found = true;
      EXPECT_EQ(s.base_stage, 0);
    }
  }
  EXPECT_TRUE(derived_found);
  EXPECT_THAT(absl::StrJoin(p->warnings, "\n"), HasSubstr("Duplicate stage name \"dup\""));
}

TEST(KeyPropertiesTest, HardLinksInTheContextAreKeyed) {
  // The same contents as two files or as one file with two names: different layers.
  Dir d = NewDir();
  d.Write("a.txt", "alpha");
  d.Write("b.txt", "beta");
  d.Write("sub/c.txt", "alpha");
  absl::StatusOr<Keys> copies = PlanKeys(kFile, d.path());
  std::string c = common::JoinPath(d.path(), "sub/c.txt");
  ASSERT_EQ(unlink(c.c_str()), 0);
  ASSERT_EQ(link(common::JoinPath(d.path(), "a.txt").c_str(), c.c_str()), 0);
  absl::StatusOr<Keys> linked = PlanKeys(kFile, d.path());
  ASSERT_TRUE(copies.ok() && linked.ok());
  EXPECT_NE(copies->key[0], linked->key[0]);  // COPY a.txt: a.txt is now in a group
  EXPECT_NE(copies->key[4], linked->key[4]);  // COPY . /all/
}

}  // namespace
}  // namespace farm::scheduler::plan

namespace farm::scheduler::plan {
namespace {

// Named contexts (bake's `contexts`, buildx --build-context): FROM/COPY --from/RUN --mount
// naming one read it, unless a stage has the name.
class NamedContextsTest : public ::testing::Test {
 protected:
  absl::StatusOr<plan::Plan> PlanNamed(const std::string& dockerfile,
                                       std::map<std::string, NamedContext> named) {
    absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(dockerfile, "Dockerfile");
    if (!tree.ok()) return tree.status();
    absl::StatusOr<dockerfile::Dockerfile> df = dockerfile::BuildInstructions(*tree);
    if (!df.ok()) return df.status();
    auto main = context::Snapshot::FromDirectory(main_.path(), {}, {});
    if (!main.ok()) return main.status();
    main_snap_ = *std::move(main);
    PlanOptions po;
    po.resolver = &resolver_;
    po.context = &main_snap_->tree();
    po.context_root = main_snap_->root();
    po.named_contexts = std::move(named);
    return MakePlan(*df, po);
  }
  NamedContext Shared() {
    auto s = context::Snapshot::FromDirectory(shared_.path(), {}, {});
    EXPECT_TRUE(s.ok());
    shared_snap_ = *std::move(s);
    NamedContext nc;
    nc.tree = &shared_snap_->tree();
    nc.root = shared_snap_->root();
    return nc;
  }
  Dir main_ = NewDir();
  Dir shared_ = NewDir();
  std::unique_ptr<context::Snapshot> main_snap_, shared_snap_;
  TwoTagResolver resolver_;
};

TEST_F(NamedContextsTest, CopyFromADirectoryContextIsKeyedByItsFiles) {
  main_.Write("lib.txt", "main's");
  shared_.Write("lib.txt", "v1");
  const char df[] = "FROM scratch\nCOPY --from=shared lib.txt /lib.txt\n";
  absl::StatusOr<plan::Plan> p = PlanNamed(df, {{"shared", Shared()}});
  ASSERT_TRUE(p.ok()) << p.status();
  const Step& copy = p->stages[p->target].steps[0];
  // Reads the named context's root, not the main one.
  EXPECT_EQ(copy.request.copy().source().context().digest(), shared_snap_->root().digest());
  EXPECT_NE(copy.request.copy().source().context().digest(), main_snap_->root().digest());
  EXPECT_FALSE(copy.copy_from.has_value());
  std::string key = copy.key;
  shared_.Write("lib.txt", "v2");
  absl::StatusOr<plan::Plan> p2 = PlanNamed(df, {{"shared", Shared()}});
  ASSERT_TRUE(p2.ok());
  EXPECT_NE(p2->stages[p2->target].steps[0].key, key);  // its content is in the key
  // A missing file names the named context.
  absl::StatusOr<plan::Plan> bad =
      PlanNamed("FROM scratch\nCOPY --from=shared nope.txt /\n", {{"shared", Shared()}});
  EXPECT_THAT(bad.status().message(), HasSubstr("in the named context"));
  // FROM a directory context is refused, with the position.
  bad = PlanNamed("FROM shared\n", {{"shared", Shared()}});
  EXPECT_THAT(bad.status().message(), HasSubstr("Dockerfile:1:1: FROM shared: a named context"));
}

TEST_F(NamedContextsTest, ImageContextsReplaceFromAndCopyFromButStagesWin) {
  NamedContext img;
  img.image = "other";
  absl::StatusOr<plan::Plan> p = PlanNamed("FROM base AS b\nFROM base:a\nCOPY --from=src /x /x\n",
                                           {{"base", img}, {"src", img}});
  ASSERT_TRUE(p.ok()) << p.status();
  const Stage& target = p->stages[p->target];
  // FROM base → "other" (the named context), not base:a's layers.
  ASSERT_TRUE(target.base_image.has_value());
  EXPECT_EQ(target.base_image->reference, "base:a");  // "base:a" is not the name "base"
  ASSERT_TRUE(target.steps[0].copy_from.has_value());
  EXPECT_EQ(target.steps[0].copy_from->image->reference, "other");
  p = PlanNamed("FROM base\n", {{"base", img}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->stages[p->target].base_image->reference, "other");
  // A stage named like a context is the stage.
  p = PlanNamed("FROM scratch AS src\nRUN x\nFROM scratch\nCOPY --from=src /x /x\n",
                {{"src", img}});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->stages[p->target].steps[0].copy_from->stage, 0);
}

}  // namespace
}  // namespace farm::scheduler::plan
