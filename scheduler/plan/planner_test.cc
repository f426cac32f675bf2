// Properties of the cache keys, each a test: what must change a key, and what must not.
#include "scheduler/plan/planner.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
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

absl::StatusOr<Keys> PlanKeys(const std::string& dockerfile, const std::string& context_dir,
                              const std::map<std::string, std::string>& build_args = {},
                              bool preserve = false) {
  absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(dockerfile, "Dockerfile");
  if (!tree.ok()) return tree.status();
  absl::StatusOr<dockerfile::Dockerfile> df = dockerfile::BuildInstructions(*tree);
  if (!df.ok()) return df.status();
  absl::StatusOr<std::vector<std::string>> ignore = context::LoadIgnorePatterns(context_dir, "");
  if (!ignore.ok()) return ignore.status();
  context::SnapshotOptions so;
  so.preserve_permissions = preserve;
  absl::StatusOr<std::unique_ptr<context::Snapshot>> snap =
      context::Snapshot::FromDirectory(context_dir, *ignore, so);
  if (!snap.ok()) return snap.status();
  TwoTagResolver resolver;
  PlanOptions po;
  po.build_args = build_args;
  po.resolver = &resolver;
  po.context = &(*snap)->tree();
  po.context_root = (*snap)->root();
  po.layer_options.set_preserve_permissions(preserve);
  absl::StatusOr<Plan> p = MakePlan(*df, po);
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
  Dir two = NewDir();  // another path, files created in the other order, other mtimes/modes
  two.Write("sub/c.txt", "gamma", 0600);
  two.Write("b.txt", "beta", 0640);
  two.Write("a.txt", "alpha", 0600);
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

TEST(KeyPropertiesTest, PreservePermissionsKeysTheFullMode) {
  Dir d = NewDir();
  d.Write("a.txt", "alpha", 0644);
  d.Write("b.txt", "beta");
  absl::StatusOr<Keys> normal1 = PlanKeys(kFile, d.path());
  absl::StatusOr<Keys> preserve1 = PlanKeys(kFile, d.path(), {}, true);
  d.Write("a.txt", "alpha", 0600);
  absl::StatusOr<Keys> normal2 = PlanKeys(kFile, d.path());
  absl::StatusOr<Keys> preserve2 = PlanKeys(kFile, d.path(), {}, true);
  ASSERT_TRUE(normal1.ok() && normal2.ok() && preserve1.ok() && preserve2.ok());
  EXPECT_EQ(normal1->key, normal2->key);            // 0600 and 0644 both become 0644
  EXPECT_NE(preserve1->key[0], preserve2->key[0]);  // but not when preserving
  EXPECT_NE(normal1->key[0], preserve1->key[0]);
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

}  // namespace
}  // namespace farm::scheduler::plan
