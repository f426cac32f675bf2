// RUN and WORKDIR steps through LocalStepExecutor, for real (root, busybox): the layers they
// produce (whiteouts, opaque dirs, links, modes, owners, capabilities, no mount points or
// secrets left behind), the sandbox as a step sees it, failures, timeouts, cancellation,
// mounts, determinism, and layer-store reuse.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/status_matchers.h"
#include "executor/secrets.h"
#include "gtest/gtest.h"
#include "worker/ssh_proxy.h"
#include "worker/testing/executor_fixture.h"
#include "worker/testing/fs_helpers.h"
#include "worker/testing/test_hosts.h"

namespace farm::worker {
namespace {

using testing::ContextBuilder;
using testing::LayerContents;
using testing::NetRawCapability;

class RunTest : public testing::ExecutorTest {};

std::vector<std::string> Names(const LayerContents& l) { return l.order; }

TEST_F(RunTest, FileAndWhiteoutAndNothingElse) {
  LayerContents l = ExecLayer(Sh("echo hi > /a && rm /bin/vi"));
  // No /proc, /dev, /sys, /etc/resolv.conf, /etc/hosts or the /etc they would have copied up.
  EXPECT_EQ(Names(l), (std::vector<std::string>{"a", "bin", "bin/.wh.vi"}));
  EXPECT_EQ(l.at("a").data, "hi\n");
  EXPECT_EQ(l.at("a").header.mode, 0644u);
}

TEST_F(RunTest, TheDefaultNetworkIsIsolated) {
  // A server on this (the worker) host and one on another host (the suite's peer namespace).
  // A server on this (the worker) host, one on another host (the suite's peer namespace) and
  // one on the peer's cloud metadata address; this host reaches all three.
  testing::GreetingServer here("0.0.0.0", 0, "worker");
  std::unique_ptr<testing::GreetingServer> there;
  ASSERT_OK(hosts_->AddPeerAddress("169.254.169.254"));
  ASSERT_OK(hosts_->InPeer(
      [&] { there = std::make_unique<testing::GreetingServer>("0.0.0.0", 0, "peer"); }));
  ASSERT_EQ(testing::ReadGreeting(testing::TestHosts::kHostAddress, here.port()), "worker");
  ASSERT_EQ(testing::ReadGreeting("169.254.169.254", there->port()), "peer");
  auto nc = [](const std::string& addr, int port) {
    return absl::StrCat("nc -w 3 ", addr, " ", port, " </dev/null 2>&1 || echo refused; ");
  };
  farm::v1::StepRequest r = Sh(absl::StrCat(
      "ip -o link | cut -d: -f2 | cut -d@ -f1 | tr -d ' ' | tr '\\n' ' '; echo; ",
      nc(testing::TestHosts::kPeerAddress, there->port()),
      nc(testing::TestHosts::kHostAddress, here.port()), nc("169.254.169.254", there->port())));
  for (const char* network : {"", "default"}) {
    r.mutable_run()->set_network(network);
    Outcome o = Exec(r);
    ASSERT_OK(o.result);
    EXPECT_EQ(
        o.out,
        (std::vector<std::string>{
            "lo eth0 ", "peer", "nc: can't connect to remote host (10.77.0.1): Connection refused",
            "refused", "nc: can't connect to remote host (169.254.169.254): Connection refused",
            "refused"}))
        << absl::StrJoin(o.out, "\n");
  }
}

TEST_F(RunTest, MountPointsNeverReachTheLayer) {
  // An image with nothing but a static binary: /proc, /dev, /sys, /etc/resolv.conf and
  // /etc/hosts all have to be created to mount on, and all must be gone afterwards.
  std::string bare = tmp_->path() + "/bare";
  auto busybox = common::ReadFile("/bin/busybox");
  ASSERT_OK(busybox);
  ASSERT_OK(testing::WriteFile(bare + "/busybox", *busybox, 0755));
  auto only_busybox = testing::MakeLayer(cas_.get(), bare);
  ASSERT_OK(only_busybox);
  Outcome o = Exec(Run({"/busybox", "ls", "/etc"}, {*only_busybox}));
  ASSERT_OK(o.result);
  EXPECT_EQ(o.result->exit_code(), 0) << absl::StrJoin(o.err, "\n");
  EXPECT_EQ(o.out, (std::vector<std::string>{"hosts", "resolv.conf"}));
  EXPECT_FALSE(o.result->has_layer());

  // /etc/resolv.conf as a (dangling) symlink into /run: the mount point is made at the target,
  // inside the root, and removed with the /run it needed.
  std::string linked = tmp_->path() + "/linked";
  ASSERT_OK(testing::Symlink("../run/systemd/resolv.conf", linked + "/etc/resolv.conf"));
  auto link_layer = testing::MakeLayer(cas_.get(), linked);
  ASSERT_OK(link_layer);
  o = Exec(Sh("readlink /etc/resolv.conf; test -f /run/systemd/resolv.conf && echo mounted",
              {base_, *link_layer}));
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, (std::vector<std::string>{"../run/systemd/resolv.conf", "mounted"}));
  EXPECT_FALSE(o.result->has_layer());
}

TEST_F(RunTest, SymlinkSwapDuringStubCleanupIsHarmless) {
  // The command moves away the directories the sandbox made to mount on (/etc for
  // resolv.conf and hosts in an image without one; /x for a tmpfs at /x/y) and puts symlinks
  // to a host directory in their place. The worker's stub cleanup, as root on the host, must
  // not follow them: the host's empty files and directory of the same names stay.
  std::string victim = tmp_->path() + "/victim";
  ASSERT_OK(testing::WriteFile(victim + "/resolv.conf", ""));
  ASSERT_OK(testing::WriteFile(victim + "/hosts", ""));
  ASSERT_OK(common::MakeDirs(victim + "/y"));
  std::string bare = tmp_->path() + "/bare-swap";
  auto busybox = common::ReadFile("/bin/busybox");
  ASSERT_OK(busybox);
  ASSERT_OK(testing::WriteFile(bare + "/busybox", *busybox, 0755));
  auto only_busybox = testing::MakeLayer(cas_.get(), bare);
  ASSERT_OK(only_busybox);
  farm::v1::StepRequest r =
      Run({"/busybox", "sh", "-c",
           absl::StrCat("cd / && /busybox mv etc etc.moved && /busybox ln -s ", victim,
                        " etc && /busybox mv x x.moved && /busybox ln -s ", victim, " x")},
          {*only_busybox});
  farm::v1::Mount* t = r.mutable_run()->add_mounts();
  t->set_type(farm::v1::Mount::TMPFS);
  t->set_target("/x/y");
  Outcome o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.result->exit_code(), 0) << absl::StrJoin(o.err, "\n");
  EXPECT_TRUE(common::PathExists(victim + "/resolv.conf"));
  EXPECT_TRUE(common::PathExists(victim + "/hosts"));
  EXPECT_TRUE(common::PathExists(victim + "/y"));
  // The layer has what the command made: the symlinks, and the moved directories with what
  // was mounted there left as empty files and directories (no longer stubs at their paths).
  ASSERT_TRUE(o.result->has_layer());
}

TEST_F(RunTest, RecreatedDirectoryIsOpaque) {
  LayerContents l = ExecLayer(Sh("rm -rf /d && mkdir /d && echo n > /d/new"));
  EXPECT_EQ(Names(l), (std::vector<std::string>{"d", "d/.wh..wh..opq", "d/new"}));
}

TEST_F(RunTest, LinksModesOwnersAndCapabilities) {
  LayerContents l =
      ExecLayer(Sh("echo x > /f && ln /f /g && ln -s /f /s && chown 12:34 /f && chmod 4750 /f &&"
                   " mkdir -m 1777 /shared && touch /caps/ping"));
  EXPECT_EQ(l.at("f").header.mode, 04750u);
  EXPECT_EQ(l.at("f").header.uid, 12);
  EXPECT_EQ(l.at("f").header.gid, 34);
  EXPECT_EQ(l.at("g").header.type, layer::TarHeader::kHardLink);
  EXPECT_EQ(l.at("g").header.linkname, "f");
  EXPECT_EQ(l.at("s").header.type, layer::TarHeader::kSymlink);
  EXPECT_EQ(l.at("s").header.linkname, "/f");
  EXPECT_EQ(l.at("shared").header.mode, 01777u);
  // A copied-up file keeps its file capabilities.
  ASSERT_EQ(l.at("caps/ping").header.xattrs.size(), 1u);
  EXPECT_EQ(l.at("caps/ping").header.xattrs[0].first, "security.capability");
  EXPECT_EQ(l.at("caps/ping").header.xattrs[0].second, NetRawCapability());
}

TEST_F(RunTest, UserPidNamespaceNetworkAndEnvironment) {
  farm::v1::StepRequest r =
      Sh("id -u; id -g; echo $$ $PPID; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; "
         "pwd; echo $FOO; hostname");
  r.mutable_env()->set_user("nobody");
  r.mutable_env()->set_workdir("/home");
  r.mutable_env()->add_env("FOO=bar");
  Outcome o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.result->exit_code(), 0) << absl::StrJoin(o.err, "\n");
  EXPECT_EQ(o.out,
            (std::vector<std::string>{"65534", "65534", "2 1", "lo", "/home", "bar", "farm"}));
  EXPECT_FALSE(o.result->has_layer());  // it wrote nothing
}

TEST_F(RunTest, FailureReportsExitCodeAndTail) {
  Outcome o = Exec(Sh("for i in $(seq 1 30); do echo line $i; done; echo bad >&2; exit 42"));
  ASSERT_OK(o.result);
  EXPECT_EQ(o.result->exit_code(), 42);
  EXPECT_FALSE(o.result->has_layer());
  ASSERT_EQ(o.result->output_tail_size(), 20);
  EXPECT_EQ(o.result->output_tail(19), "bad");
  EXPECT_EQ(o.out.size(), 30u);  // every line was streamed
}

TEST_F(RunTest, TimeoutKillsTreeIgnoringSigterm) {
  farm::v1::StepRequest r = Sh("trap '' TERM; (trap '' TERM; sleep 600) & sleep 600");
  r.mutable_run()->set_timeout_seconds(1);
  absl::Time start = absl::Now();
  Outcome o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_TRUE(o.result->timed_out());
  EXPECT_NE(o.result->exit_code(), 0);
  EXPECT_LT(absl::Now() - start, absl::Seconds(30));
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(o.result->output_tail(), "\n"), "timeout"));
}

TEST_F(RunTest, CancelKillsAndReturnsCancelled) {
  absl::Notification cancel;
  std::thread t([&] {
    absl::SleepFor(absl::Milliseconds(300));  // let it start; cancel must work at any point
    cancel.Notify();
  });
  Outcome o = Exec(Sh("sleep 600"), &cancel);
  t.join();
  EXPECT_EQ(o.result.status().code(), absl::StatusCode::kCancelled) << o.result.status();
}

TEST_F(RunTest, SameRunTwiceSameDiffIdWithSourceDateEpoch) {
  farm::v1::StepRequest r = Sh("echo hi > /a; mkdir -p /x/y; echo z > /x/y/z; rm /bin/ls");
  r.mutable_output()->set_source_date_epoch(1700000000);
  farm::v1::Layer a, b;
  ExecLayer(r, &a);
  ExecLayer(r, &b);
  EXPECT_EQ(a.diff_id(), b.diff_id());
  EXPECT_EQ(a.digest(), b.digest());
  r.mutable_output()->set_compression(farm::v1::LayerOptions::ZSTD);
  farm::v1::Layer c, d;
  ExecLayer(r, &c);
  ExecLayer(r, &d);
  EXPECT_EQ(c.diff_id(), a.diff_id());  // same tar, other compression
  EXPECT_EQ(c.digest(), d.digest());
  EXPECT_EQ(c.media_type(), "application/vnd.oci.image.layer.v1.tar+zstd");
}

TEST_F(RunTest, OutputLayerIsReusedWithoutUnpacking) {
  farm::v1::Layer l;
  ExecLayer(Sh("echo one > /one"), &l);
  int64_t unpacks = executor_->layer_store()->GetStats().unpacks;
  Outcome o = Exec(Sh("cat /one", {base_, l}));
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, std::vector<std::string>{"one"});
  EXPECT_EQ(executor_->layer_store()->GetStats().unpacks, unpacks);
}

TEST_F(RunTest, SecretsAreMountedAndNeverInTheLayer) {
  auto secrets = std::make_shared<executor::MapSecretProvider>(
      std::map<std::string, std::string>{{"token", "s3cr3t"}});
  LocalStepExecutor::Options o;
  o.state_dir = tmp_->path() + "/state-secrets";
  o.cas = cas_;
  o.secrets = secrets;
  auto exec = LocalStepExecutor::Create(std::move(o));
  ASSERT_OK(exec);
  farm::v1::StepRequest r = Sh("cat /run/secrets/token; echo; echo $TOKEN; echo done > /out");
  farm::v1::Mount* m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::SECRET);
  m->set_id("token");
  m->set_env("TOKEN");
  m->set_target("/run/secrets/token");
  std::vector<std::string> out;
  auto result = (*exec)->Execute(
      r, [&](absl::string_view line, bool) { out.emplace_back(line); }, nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(out, (std::vector<std::string>{"s3cr3t", "s3cr3t"}));
  auto l = testing::ReadLayer(cas_.get(), result->layer());
  ASSERT_OK(l);
  EXPECT_EQ(l->order, std::vector<std::string>{"out"});  // no /run, no /run/secrets

  m->set_id("missing");
  m->set_required(true);
  auto missing = (*exec)->Execute(r, nullptr, nullptr);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition) << missing.status();
}

TEST_F(RunTest, PerCallSecretsReachOnlyThatStepAndNeverTheDisk) {
  const std::string value = "s3cr3t-7c41e9d2";
  LocalStepExecutor::CallOptions call;
  call.secrets = std::make_shared<executor::MapSecretProvider>(
      std::map<std::string, std::string>{{"token", value}});
  auto mount = [](farm::v1::StepRequest* r) {
    farm::v1::Mount* m = r->mutable_run()->add_mounts();
    m->set_type(farm::v1::Mount::SECRET);
    m->set_id("token");
    m->set_uid(65534);
    m->set_mode(0440);
  };
  // While the step runs, the secret is nowhere under the state directory.
  farm::v1::StepRequest running =
      Sh("test \"$(cat /run/secrets/token)\" = " + value +
         " && stat -c '%a %u' /run/secrets/token && echo ready && sleep 600");
  mount(&running);
  absl::Notification ready, cancel;
  std::vector<std::string> out;
  absl::StatusOr<farm::v1::StepResult> result;
  std::thread t([&] {
    result = executor_->Execute(
        running,
        [&](absl::string_view line, bool) {
          out.emplace_back(line);
          if (line == "ready") ready.Notify();
        },
        &cancel, call);
    if (!ready.HasBeenNotified()) ready.Notify();  // it failed early
  });
  ASSERT_TRUE(ready.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(out, (std::vector<std::string>{"440 65534", "ready"}));
  EXPECT_EQ(testing::FilesContaining(tmp_->path(), value), std::vector<std::string>{});
  cancel.Notify();
  t.join();
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled) << result.status();

  // A step that completes: its layer holds what it wrote, not the secret or its mount point.
  farm::v1::StepRequest done = Sh("cat /run/secrets/token > /dev/null && echo done > /out");
  mount(&done);
  auto layer = executor_->Execute(done, nullptr, nullptr, call);
  ASSERT_OK(layer);
  ASSERT_EQ(layer->exit_code(), 0) << absl::StrJoin(layer->output_tail(), "\n");
  auto l = testing::ReadLayer(cas_.get(), layer->layer());
  ASSERT_OK(l);
  EXPECT_EQ(l->order, std::vector<std::string>{"out"});
  EXPECT_EQ(testing::FilesContaining(tmp_->path(), value), std::vector<std::string>{});

  // Another call without it: the (optional) secret is absent.
  farm::v1::StepRequest other = Sh("cat /run/secrets/token");
  mount(&other);
  auto absent = executor_->Execute(other, nullptr, nullptr);
  ASSERT_OK(absent);
  EXPECT_NE(absent->exit_code(), 0);
}

TEST_F(RunTest, CacheMountsPersistAndStayOutOfLayers) {
  farm::v1::StepRequest r =
      Sh("echo run >> /var/cache/app/log; wc -l < /var/cache/app/log; touch /made");
  farm::v1::Mount* m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::CACHE);
  m->set_target("/var/cache/app");
  m->set_id("app-cache");
  m->set_sharing("locked");
  Outcome first = Exec(r);
  Outcome second = Exec(r);
  ASSERT_OK(second.result);
  EXPECT_EQ(first.out, std::vector<std::string>{"1"});
  EXPECT_EQ(second.out, std::vector<std::string>{"2"});
  auto l = testing::ReadLayer(cas_.get(), second.result->layer());
  ASSERT_OK(l);
  EXPECT_EQ(l->order, std::vector<std::string>{"made"});
}

TEST_F(RunTest, BindMountsFromTheContextAndTmpfs) {
  auto root = ContextBuilder().File("src/main.c", "int main;\n").Store(cas_.get());
  ASSERT_OK(root);
  farm::v1::StepRequest r =
      Sh("cat /work/main.c; touch /work/x 2>/dev/null || echo ro; echo t > /scratch/t && cat "
         "/scratch/t");
  farm::v1::Mount* b = r.mutable_run()->add_mounts();
  b->set_type(farm::v1::Mount::BIND);
  b->set_target("/work");
  b->set_source("src");
  b->set_readonly(true);
  *b->mutable_from()->mutable_context() = *root;
  farm::v1::Mount* t = r.mutable_run()->add_mounts();
  t->set_type(farm::v1::Mount::TMPFS);
  t->set_target("/scratch");
  Outcome o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, (std::vector<std::string>{"int main;", "ro", "t"}));
  EXPECT_FALSE(o.result->has_layer());
}

TEST_F(RunTest, BindMountFromAStageDiscardsWrites) {
  farm::v1::Layer stage;
  ExecLayer(Sh("mkdir -p /out && echo built > /out/artifact"), &stage);
  farm::v1::StepRequest r = Sh("cat /in/artifact; echo changed > /in/artifact; cat /in/artifact");
  farm::v1::Mount* b = r.mutable_run()->add_mounts();
  b->set_type(farm::v1::Mount::BIND);
  b->set_target("/in");
  b->set_source("/out");
  b->set_readonly(false);
  *b->mutable_from()->mutable_layers()->add_layers() = base_;
  *b->mutable_from()->mutable_layers()->add_layers() = stage;
  Outcome o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, (std::vector<std::string>{"built", "changed"}));
  EXPECT_FALSE(o.result->has_layer());
  // The stage itself is unchanged: a second mount sees the original.
  r.mutable_run()->set_args(2, "cat /in/artifact");
  o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, std::vector<std::string>{"built"});
}

TEST_F(RunTest, SshAgentIsForwardedThroughAProxySocket) {
  // A fake agent: answers "pong" to whatever it receives.
  std::string agent = tmp_->path() + "/agent.sock";
  auto listen_fd = ListenUnix(agent);
  ASSERT_OK(listen_fd);
  std::thread server([fd = *listen_fd] {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) return;
    char buf[16];
    if (read(c, buf, sizeof(buf)) > 0) (void)!write(c, "pong", 4);
    close(c);
  });
  auto secrets = std::make_shared<executor::MapSecretProvider>(
      std::map<std::string, std::string>{}, std::map<std::string, std::string>{{"default", agent}});
  LocalStepExecutor::Options opts;
  opts.state_dir = tmp_->path() + "/state-ssh";
  opts.cas = cas_;
  opts.secrets = secrets;
  auto exec = LocalStepExecutor::Create(std::move(opts));
  ASSERT_OK(exec);
  farm::v1::StepRequest r = Sh("echo $SSH_AUTH_SOCK; stat -c '%a %u %F' $SSH_AUTH_SOCK");
  farm::v1::Mount* m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::SSH);
  m->set_required(true);
  m->set_uid(65534);
  std::vector<std::string> out;
  auto result = (*exec)->Execute(
      r, [&](absl::string_view line, bool) { out.emplace_back(line); }, nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(out, (std::vector<std::string>{"/run/buildkit/ssh_agent.0", "600 65534 socket"}));
  // The relay itself, from the host side.
  auto proxy = SshAgentProxy::Start(agent, tmp_->path() + "/proxy.sock", {0600, 0, 0, 0});
  ASSERT_OK(proxy);
  auto c = ConnectUnix((*proxy)->path());
  ASSERT_OK(c);
  ASSERT_EQ(write(*c, "ping", 4), 4);
  char buf[8] = {0};
  ASSERT_EQ(read(*c, buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "pong");
  close(*c);
  server.join();
  close(*listen_fd);

  // Required but absent: a clear error.
  m->set_id("other");
  EXPECT_EQ((*exec)->Execute(r, nullptr, nullptr).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RunTest, WorkdirCreatesOwnedDirectoriesOrNothing) {
  farm::v1::StepRequest r;
  *r.add_parents() = base_;
  r.mutable_mkdir()->set_path("/app/src");
  r.mutable_env()->set_user("nobody");
  LayerContents l = ExecLayer(r);
  EXPECT_EQ(Names(l), (std::vector<std::string>{"app", "app/src"}));
  EXPECT_EQ(l.at("app/src").header.uid, 65534);
  EXPECT_EQ(l.at("app/src").header.mode, 0755u);
  EXPECT_EQ(l.at("app/src").header.mtime, 0);
  r.mutable_mkdir()->set_path("/lib");  // exists (a symlink to a directory)
  Outcome o = Exec(r);
  ASSERT_OK(o.result);
  EXPECT_FALSE(o.result->has_layer());
  r.mutable_mkdir()->set_path("/bin/sh/x");
  EXPECT_EQ(Exec(r).result.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RunTest, ConcurrentStepsDoNotInterfere) {
  std::vector<std::thread> threads;
  std::vector<Outcome> outcomes(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      outcomes[i] = Exec(Sh(absl::StrCat("echo ", i, " > /mine; cat /mine; sleep 0.2")));
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    ASSERT_OK(outcomes[i].result);
    EXPECT_EQ(outcomes[i].out, std::vector<std::string>{absl::StrCat(i)});
    auto l = testing::ReadLayer(cas_.get(), outcomes[i].result->layer());
    ASSERT_OK(l);
    EXPECT_EQ(l->at("mine").data, absl::StrCat(i, "\n"));
  }
}

TEST_F(RunTest, OtherPlatformsAreRefused) {
  farm::v1::StepRequest r = Sh("true");
  r.mutable_env()->set_platform("linux/s390x");
  absl::Status s = Exec(r).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  r.mutable_env()->set_platform("linux/amd64");
  EXPECT_OK(Exec(r).result);
}

TEST_F(RunTest, UnknownUserIsAnError) {
  farm::v1::StepRequest r = Sh("true");
  r.mutable_env()->set_user("ghost");
  absl::Status s = Exec(r).result.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "unable to find user ghost")) << s;
}

TEST_F(RunTest, DeepStacksAreMountedFlattened) {
  std::vector<farm::v1::Layer> parents = {base_};
  for (int i = 0; i < 240; ++i) {
    std::string dir = absl::StrCat(tmp_->path(), "/deep/", i);
    ASSERT_OK(testing::WriteFile(absl::StrCat(dir, "/deep/f", i), absl::StrCat(i)));
    auto l = testing::MakeLayer(cas_.get(), dir);
    ASSERT_OK(l);
    parents.push_back(*l);
  }
  Outcome o = Exec(Sh("ls /deep | wc -l; cat /deep/f0 /deep/f239", parents));
  ASSERT_OK(o.result);
  EXPECT_EQ(o.out, (std::vector<std::string>{"240", "0239"}));
}

TEST_F(RunTest, RunAttachedUsesCallerStdioAndDiscardsChanges) {
  std::string out = tmp_->path() + "/attached.out";
  int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  LocalStepExecutor::RunOptions ro;
  ro.layers = {base_};
  ro.args = {"/bin/sh", "-c", "echo hello $0 > /tmp/x; cat /tmp/x; exit 7", "Alice"};
  ro.stdin_fd = -1;
  ro.stdout_fd = fd;
  ro.stderr_fd = fd;
  auto code = executor_->RunAttached(ro);
  close(fd);
  ASSERT_OK(code);
  EXPECT_EQ(*code, 7);
  EXPECT_EQ(*common::ReadFile(out), "hello Alice\n");
}

}  // namespace
}  // namespace farm::worker
