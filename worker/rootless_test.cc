// Rootless steps through LocalStepExecutor (policy.rootless): root in the step is a
// subordinate id on the host, yet the layers are the ones a rootful worker makes, byte for
// byte; the image's owners show inside; mounts, secrets, the cache and the isolated network
// keep working. (The sandbox-level view from the host is in worker/sandbox/sandbox_test.cc.)
#include <sys/stat.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/status_matchers.h"
#include "executor/secrets.h"
#include "gtest/gtest.h"
#include "worker/testing/executor_fixture.h"
#include "worker/testing/fs_helpers.h"
#include "worker/testing/test_hosts.h"

namespace farm::worker {
namespace {

using testing::LayerContents;

constexpr uint32_t kSubUid = 440000;
constexpr uint32_t kSubGid = 450000;

class RootlessTest : public testing::ExecutorTest {
 protected:
  static void SetUpTestSuite() {
    ExecutorTest::SetUpTestSuite();
    LocalStepExecutor::Options o;
    o.state_dir = tmp_->path() + "/state-rootless";
    o.cas = cas_;
    o.secrets = std::make_shared<executor::MapSecretProvider>(
        std::map<std::string, std::string>{{"token", "s3cr3t"}});
    o.policy.rootless = true;
    o.policy.subids = SubIdRange{kSubUid, kSubGid, kRootlessIdCount};
    auto e = LocalStepExecutor::Create(std::move(o));
    ASSERT_OK(e);
    rootless_ = e->release();
  }
  static void TearDownTestSuite() {
    delete rootless_;
    rootless_ = nullptr;
    ExecutorTest::TearDownTestSuite();
  }

  Outcome ExecRootless(const farm::v1::StepRequest& req) {
    Outcome o;
    absl::Mutex mu;
    o.result = rootless_->Execute(
        req,
        [&](absl::string_view line, bool is_stderr) {
          absl::MutexLock lock(&mu);
          (is_stderr ? o.err : o.out).emplace_back(line);
        },
        nullptr);
    return o;
  }

  static LocalStepExecutor* rootless_;
};

LocalStepExecutor* RootlessTest::rootless_ = nullptr;

TEST_F(RootlessTest, SameLayerAsARootfulRun) {
  farm::v1::StepRequest r =
      Sh("echo hi > /a && mkdir -p /x/y && echo z > /x/y/z && chown 1000:1000 /a /x/y/z &&"
         " chown 7:8 /x && chmod 4750 /a && ln -s /a /s && rm /bin/ls && rm -rf /d && mkdir /d &&"
         " echo n > /d/new && touch /caps/ping && echo more >> /etc/passwd");
  r.mutable_output()->set_source_date_epoch(1700000000);
  farm::v1::Layer rootful;
  LayerContents want = ExecLayer(r, &rootful);
  Outcome o = ExecRootless(r);
  ASSERT_OK(o.result);
  ASSERT_EQ(o.result->exit_code(), 0) << absl::StrJoin(o.err, "\n");
  ASSERT_TRUE(o.result->has_layer());
  auto got = testing::ReadLayer(cas_.get(), o.result->layer());
  ASSERT_OK(got);
  EXPECT_EQ(got->order, want.order);
  EXPECT_EQ(got->at("a").header.uid, 1000);
  EXPECT_EQ(got->at("a").header.gid, 1000);
  EXPECT_EQ(got->at("a").header.mode, 04750u);
  EXPECT_EQ(got->at("x").header.uid, 7);
  EXPECT_EQ(got->at("x").header.gid, 8);
  EXPECT_EQ(got->at("etc/passwd").header.uid, 0);  // copied up: the image's owner
  ASSERT_EQ(got->at("caps/ping").header.xattrs.size(), 1u);
  EXPECT_EQ(got->at("caps/ping").header.xattrs[0].second, testing::NetRawCapability());
  EXPECT_EQ(o.result->layer().diff_id(), rootful.diff_id());
  EXPECT_EQ(o.result->layer().digest(), rootful.digest());
}

TEST_F(RootlessTest, RootInsideImageOwnersKept) {
  farm::v1::Layer owned;
  ExecLayer(Sh("mkdir /srv && echo d > /srv/data && chown -R 1234:2345 /srv && chmod 700 /srv"),
            &owned);
  farm::v1::StepRequest r =
      Sh("id -u; id -g; read a b c < /proc/self/uid_map; echo $a $b $c;"
         " stat -c '%u:%g' /srv /srv/data /bin/busybox; cat /srv/data;"
         " su nobody -s /bin/sh -c 'cat /srv/data' 2>/dev/null || echo denied",
         {base_, owned});
  Outcome o = ExecRootless(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, (std::vector<std::string>{"0", "0", "0 440000 65536", "1234:2345", "1234:2345",
                                             "0:0", "d", "denied"}))
      << absl::StrJoin(o.err, "\n");
  EXPECT_FALSE(o.result->has_layer());
}

TEST_F(RootlessTest, MountsSecretsAndTheCache) {
  farm::v1::Layer stage;
  ExecLayer(Sh("mkdir -p /out && echo built > /out/artifact && chown 3:4 /out/artifact"), &stage);
  auto ctx = testing::ContextBuilder().File("src/main.c", "int main;\n").Store(cas_.get());
  ASSERT_OK(ctx);
  farm::v1::StepRequest r =
      Sh("cat /work/main.c; stat -c '%u:%g' /work/main.c; cat /in/artifact;"
         " stat -c '%u:%g' /in/artifact; echo changed > /in/artifact && echo stage-rw;"
         " cat /run/secrets/token; echo; echo run >> /var/cache/app/log; wc -l < "
         "/var/cache/app/log; stat -c '%u:%g' /var/cache/app; echo t > /scratch/t && cat "
         "/scratch/t; touch /made");
  farm::v1::Mount* b = r.mutable_run()->add_mounts();
  b->set_type(farm::v1::Mount::BIND);
  b->set_target("/work");
  b->set_source("src");
  b->set_readonly(true);
  *b->mutable_from()->mutable_context() = *ctx;
  farm::v1::Mount* s = r.mutable_run()->add_mounts();
  s->set_type(farm::v1::Mount::BIND);
  s->set_target("/in");
  s->set_source("/out");
  *s->mutable_from()->mutable_layers()->add_layers() = base_;
  *s->mutable_from()->mutable_layers()->add_layers() = stage;
  farm::v1::Mount* sec = r.mutable_run()->add_mounts();
  sec->set_type(farm::v1::Mount::SECRET);
  sec->set_id("token");
  sec->set_target("/run/secrets/token");
  farm::v1::Mount* c = r.mutable_run()->add_mounts();
  c->set_type(farm::v1::Mount::CACHE);
  c->set_target("/var/cache/app");
  c->set_id("rootless-cache");
  c->set_uid(5);
  c->set_gid(6);
  farm::v1::Mount* t = r.mutable_run()->add_mounts();
  t->set_type(farm::v1::Mount::TMPFS);
  t->set_target("/scratch");
  Outcome first = ExecRootless(r);
  ASSERT_OK(first.result);
  EXPECT_EQ(first.out, (std::vector<std::string>{"int main;", "0:0", "built", "3:4", "stage-rw",
                                                 "s3cr3t", "1", "5:6", "t"}))
      << absl::StrJoin(first.err, "\n");
  Outcome second = ExecRootless(r);
  ASSERT_OK(second.result);
  ASSERT_GE(second.out.size(), 7u);
  EXPECT_EQ(second.out[6], "2");  // the cache persisted
  auto l = testing::ReadLayer(cas_.get(), second.result->layer());
  ASSERT_OK(l);
  EXPECT_EQ(l->order, std::vector<std::string>{"made"});  // no mount points, no secret
}

// The step's network namespace belongs to its user namespace: root there may bind port 80
// (CAP_NET_BIND_SERVICE counts), the worker host stays out of reach, the internet (the peer) not.
TEST_F(RootlessTest, TheIsolatedNetworkWorks) {
  std::unique_ptr<testing::GreetingServer> there;
  ASSERT_OK(hosts_->InPeer(
      [&] { there = std::make_unique<testing::GreetingServer>("0.0.0.0", 0, "peer"); }));
  farm::v1::StepRequest r = Sh(absl::StrCat(
      "ip -o link | cut -d: -f2 | cut -d@ -f1 | tr -d ' ' | tr '\\n' ' '; echo; nc -w 3 ",
      testing::TestHosts::kPeerAddress, " ", there->port(), " </dev/null 2>&1 || echo refused;",
      " nc -w 3 ", testing::TestHosts::kHostAddress,
      " 1 </dev/null >/dev/null 2>&1 ||"
      " echo host-refused; nc -l -p 80 </dev/null >/dev/null 2>&1 & sleep 0.3;"
      " kill $! 2>/dev/null && echo port80-bound"));
  r.mutable_run()->set_network("default");
  Outcome o = ExecRootless(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, (std::vector<std::string>{"lo eth0 ", "peer", "host-refused", "port80-bound"}))
      << absl::StrJoin(o.err, "\n");
}

TEST_F(RootlessTest, WithoutARangeTheExecutorRefuses) {
  LocalStepExecutor::Options o;
  o.state_dir = tmp_->path() + "/state-rootless-norange";
  o.cas = cas_;
  o.policy.rootless = true;
  auto e = LocalStepExecutor::Create(std::move(o));
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(e.status().message(), "subid-range")) << e.status();
}

}  // namespace
}  // namespace farm::worker
