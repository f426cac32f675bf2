// The sandbox, for real, as root, in a busybox root filesystem: namespaces, users, network,
// mounts and stubs, capabilities, timeouts, cancellation, signals and cgroup limits.
#include "worker/sandbox/sandbox.h"

#include <dirent.h>
#include <sys/stat.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/sandbox/cgroups.h"
#include "worker/testing/busybox.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::sandbox {
namespace {

using farm::v1::SandboxMount;
using farm::v1::SandboxRequest;
using farm::v1::SandboxResult;

class SandboxTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = common::TempDir::Create("sandbox-test");
    ASSERT_OK(t);
    tmp_ = new common::TempDir(std::move(*t));
    ASSERT_OK(farm::worker::testing::MakeBusyboxRootfs(tmp_->path() + "/layers/busybox"));
  }
  static void TearDownTestSuite() { delete tmp_; }

  // A fresh request on the busybox root with a new upperdir.
  SandboxRequest Request(std::vector<std::string> args) {
    std::string run = absl::StrCat(tmp_->path(), "/run", counter_++);
    for (const char* d : {"upper", "work", "rootfs"}) {
      EXPECT_OK(common::MakeDirs(absl::StrCat(run, "/", d)));
    }
    SandboxRequest r;
    r.set_layer_dir(tmp_->path() + "/layers");
    r.add_lower_dirs("busybox");
    r.set_upper_dir(run + "/upper");
    r.set_work_dir(run + "/work");
    r.set_rootfs_dir(run + "/rootfs");
    for (auto& a : args) r.add_args(a);
    r.set_network(SandboxRequest::NONE);
    r.set_cgroup_name(absl::StrCat("farm-test-", getpid(), "-", counter_));
    return r;
  }

  struct Outcome {
    SandboxResult result;
    std::vector<std::string> out, err;
    std::string Out() const { return absl::StrJoin(out, "\n"); }
  };

  Outcome Run(const SandboxRequest& r, const absl::Notification* cancel = nullptr,
              std::function<void(absl::string_view)> on_out = nullptr) {
    Outcome o;
    absl::Mutex mu;
    SandboxIo io;
    io.on_line = [&](absl::string_view line, bool is_stderr) {
      absl::MutexLock lock(&mu);
      (is_stderr ? o.err : o.out).emplace_back(line);
      if (on_out && !is_stderr) on_out(line);
    };
    auto result = RunSandbox(r, io, cancel);
    EXPECT_OK(result);
    if (result.ok()) o.result = *result;
    EXPECT_EQ(o.result.error_code(), 0) << o.result.error_message();
    return o;
  }

  static common::TempDir* tmp_;
  static int counter_;  // run directories are never reused (a volatile overlay's workdir can't be)
};

common::TempDir* SandboxTest::tmp_ = nullptr;
int SandboxTest::counter_ = 0;

TEST_F(SandboxTest, OutputAndExitCode) {
  Outcome o =
      Run(Request({"/bin/sh", "-c", "echo hello; echo oops >&2; printf 'no newline'; exit 3"}));
  EXPECT_EQ(o.result.exit_code(), 3);
  EXPECT_TRUE(o.result.finished());
  EXPECT_EQ(o.out, (std::vector<std::string>{"hello", "no newline"}));
  EXPECT_EQ(o.err, std::vector<std::string>{"oops"});
}

TEST_F(SandboxTest, PidNamespaceShowsOnlyTheTree) {
  Outcome o = Run(Request(
      {"/bin/sh", "-c", "echo $$ $PPID; ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '"}));
  ASSERT_EQ(o.out.size(), 2u) << o.Out();
  EXPECT_EQ(o.out[0], "2 1");  // pid 1 is the sandbox's init, the command its child
  // Only init, the shell, and the pipeline's processes exist.
  for (absl::string_view pid : absl::StrSplit(o.out[1], ' ', absl::SkipEmpty())) {
    int n = 0;
    ASSERT_TRUE(absl::SimpleAtoi(pid, &n));
    EXPECT_LT(n, 10) << o.out[1];
  }
}

TEST_F(SandboxTest, NetworkNoneHasOnlyLoopbackUp) {
  Outcome o = Run(Request(
      {"/bin/sh", "-c",
       "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; ip -o link | grep -c UP"}));
  EXPECT_EQ(o.out, (std::vector<std::string>{"lo", "1"})) << o.Out();
  SandboxRequest host = Request({"/bin/sh", "-c", "cat /proc/net/dev | tail -n +3 | wc -l"});
  host.set_network(SandboxRequest::HOST);
  o = Run(host);
  ASSERT_EQ(o.out.size(), 1u);
  EXPECT_GE(std::stoi(o.out[0]), 1);
}

TEST_F(SandboxTest, UserWorkdirEnvHostname) {
  SandboxRequest r = Request(
      {"/bin/sh", "-c", "id -u; id -g; pwd; echo $GREETING; echo $HOME; hostname; echo $PATH"});
  r.set_user("nobody");
  r.set_cwd("/work/dir");
  r.add_env("GREETING=hi there");
  r.set_hostname("builder");
  Outcome o = Run(r);
  EXPECT_EQ(o.result.exit_code(), 0) << absl::StrJoin(o.err, "\n");
  EXPECT_EQ(o.out, (std::vector<std::string>{
                       "65534", "65534", "/work/dir", "hi there", "/home", "builder",
                       "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}));
  // The working directory is created in the upperdir (it belongs to the layer).
  EXPECT_TRUE(common::PathExists(r.upper_dir() + "/work/dir"));

  SandboxRequest bad = Request({"/bin/true"});
  bad.set_user("ghost");
  auto result = RunSandbox(bad, SandboxIo{-1, -1, -1, [](absl::string_view, bool) {}}, nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(result->error_code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(result->error_message(),
            "unable to find user ghost: no matching entries in passwd file");
}

TEST_F(SandboxTest, CapabilitiesDockerDefaultOrAllWhenInsecure) {
  Outcome o = Run(
      Request({"/bin/sh", "-c", "grep CapBnd /proc/self/status; grep CapEff /proc/self/status"}));
  EXPECT_EQ(o.out,
            (std::vector<std::string>{"CapBnd:\t00000000a80425fb", "CapEff:\t00000000a80425fb"}));
  SandboxRequest insecure = Request({"/bin/sh", "-c", "grep CapEff /proc/self/status"});
  insecure.set_insecure(true);
  o = Run(insecure);
  ASSERT_EQ(o.out.size(), 1u);
  EXPECT_NE(o.out[0], "CapEff:\t00000000a80425fb");
  SandboxRequest user = Request({"/bin/sh", "-c", "grep CapEff /proc/self/status"});
  user.set_user("nobody");
  o = Run(user);
  EXPECT_EQ(o.out, std::vector<std::string>{"CapEff:\t0000000000000000"});
}

TEST_F(SandboxTest, SeccompAndNoNewPrivs) {
  Outcome o = Run(Request({"/bin/sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"}));
  // Docker's default: a filter (mode 2) and no no_new_privs, so setuid binaries work.
  EXPECT_EQ(o.out, (std::vector<std::string>{"NoNewPrivs:\t0", "Seccomp:\t2"})) << o.Out();
  SandboxRequest nnp = Request({"/bin/sh", "-c", "grep -E '^NoNewPrivs:' /proc/self/status"});
  nnp.set_no_new_privileges(true);
  o = Run(nnp);
  EXPECT_EQ(o.out, std::vector<std::string>{"NoNewPrivs:\t1"});
  // Refused by the filter: a user namespace (unshare -U), a new mount namespace.
  o = Run(
      Request({"/bin/sh", "-c", "unshare -U true || echo refused; unshare -m true || echo no"}));
  EXPECT_EQ(o.out, (std::vector<std::string>{"refused", "no"})) << absl::StrJoin(o.err, "\n");
  SandboxRequest insecure = Request({"/bin/sh", "-c", "grep -E '^Seccomp:' /proc/self/status"});
  insecure.set_insecure(true);
  o = Run(insecure);
  EXPECT_EQ(o.out, std::vector<std::string>{"Seccomp:\t0"});
  // A precompiled filter (RunSandbox passes the process's own) that is not a BPF program is
  // refused: the command does not run without its filter.
  SandboxRequest junk = Request({"/bin/sh", "-c", "echo ran"});
  junk.set_seccomp_filter("12345");
  std::vector<std::string> out;
  auto result = RunSandbox(
      junk, SandboxIo{-1, -1, -1, [&](absl::string_view l, bool) { out.emplace_back(l); }},
      nullptr);
  ASSERT_OK(result);
  EXPECT_NE(result->error_code(), 0);
  EXPECT_TRUE(absl::StrContains(result->error_message(), "not a BPF program"))
      << result->error_message();
  EXPECT_TRUE(out.empty());
}

TEST_F(SandboxTest, OnlyStandardDevicesOpen) {
  // Nodes made by mknod (allowed, as in Docker) cannot be opened: on the nodev root, on the
  // nodev /dev, and (with the device cgroup) anywhere. The standard nodes work and cannot be
  // changed.
  const char* script =
      "mknod /blk b 7 0 && echo made; head -c1 /blk >/dev/null 2>&1 || echo root-refused;"
      " mknod /dev/kmsg2 c 1 11 && echo made; head -c1 /dev/kmsg2 >/dev/null 2>&1 ||"
      " echo dev-refused; echo x > /dev/null && echo null-ok; head -c4 /dev/urandom | wc -c;"
      " chmod 600 /dev/null 2>/dev/null || echo chmod-refused;"
      " grep -E ' / | /dev ' /proc/self/mounts | grep -c nodev";
  std::vector<std::string> want = {"made", "root-refused",  "made", "dev-refused", "null-ok",
                                   "4",    "chmod-refused", "2"};
  Outcome o = Run(Request({"/bin/sh", "-c", script}));
  EXPECT_EQ(o.out, want) << absl::StrJoin(o.err, "\n");
  CgroupLimits devices;
  devices.devices = true;
  auto plan = PlanCgroups(devices, CgroupEnv());
  ASSERT_OK(plan);
  ASSERT_EQ(plan->size(), 1u);  // this machine has the v1 devices controller
  SandboxRequest r = Request({"/bin/sh", "-c", script});
  for (const auto& cg : *plan) *r.add_cgroups() = cg;
  o = Run(r);
  EXPECT_EQ(o.out, want) << absl::StrJoin(o.err, "\n");
  // Insecure: devices work.
  SandboxRequest insecure =
      Request({"/bin/sh", "-c", "mknod /dev/z c 1 5 && head -c3 /dev/z | wc -c"});
  insecure.set_insecure(true);
  for (const auto& cg : *plan) *insecure.add_cgroups() = cg;
  o = Run(insecure);
  EXPECT_EQ(o.out, std::vector<std::string>{"3"}) << absl::StrJoin(o.err, "\n");
}

TEST_F(SandboxTest, MountsAndStubsAreReported) {
  std::string data = tmp_->path() + "/bind-src";
  ASSERT_OK(farm::worker::testing::WriteFile(data + "/file", "from host\n"));
  std::string resolv = tmp_->path() + "/resolv.conf";
  ASSERT_OK(farm::worker::testing::WriteFile(resolv, "nameserver 127.0.0.53\n"));
  SandboxRequest r = Request({"/bin/sh", "-c",
                              "cat /mnt/data/file; touch /mnt/data/x 2>/dev/null || echo read-only;"
                              " echo tmp > /scratch/t && cat /scratch/t; cat /etc/resolv.conf;"
                              " ls /dev | tr '\\n' ' '"});
  r.set_resolv_conf(resolv);
  SandboxMount* bind = r.add_mounts();
  bind->set_source(data);
  bind->set_target("/mnt/data");
  bind->set_readonly(true);
  SandboxMount* tmpfs = r.add_mounts();
  tmpfs->set_kind(SandboxMount::TMPFS);
  tmpfs->set_target("/scratch");
  Outcome o = Run(r);
  ASSERT_EQ(o.out.size(), 5u) << o.Out() << absl::StrJoin(o.err, "\n");
  EXPECT_EQ(o.out[0], "from host");
  EXPECT_EQ(o.out[1], "read-only");
  EXPECT_EQ(o.out[2], "tmp");
  EXPECT_EQ(o.out[3], "nameserver 127.0.0.53");
  for (const char* dev :
       {"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm"}) {
    EXPECT_TRUE(absl::StrContains(o.out[4], dev)) << dev << " missing in " << o.out[4];
  }
  // What had to be created to mount on is reported: /mnt/data, /scratch, /etc/resolv.conf
  // (and /etc, /mnt as existing ancestors copied up).
  std::map<std::string, bool> stubs;
  for (const auto& s : o.result.stubs()) stubs[s.path()] = s.created();
  EXPECT_TRUE(stubs.count("mnt/data") && stubs["mnt/data"]);
  EXPECT_TRUE(stubs.count("scratch") && stubs["scratch"]);
  EXPECT_TRUE(stubs.count("etc/resolv.conf") && stubs["etc/resolv.conf"]);
  EXPECT_TRUE(stubs.count("etc") && !stubs["etc"]);
}

TEST_F(SandboxTest, SymlinkedMountTargetStaysInsideTheRoot) {
  // An image whose /evil points at the host's root: mounting there must land inside the root.
  std::string upper_layer = tmp_->path() + "/layers/evil";
  ASSERT_OK(farm::worker::testing::Symlink("/../../../../tmp", upper_layer + "/evil"));
  SandboxRequest r = Request({"/bin/sh", "-c", "ls /tmp/inside"});
  r.clear_lower_dirs();
  r.add_lower_dirs("evil");
  r.add_lower_dirs("busybox");
  SandboxMount* m = r.add_mounts();
  m->set_kind(SandboxMount::TMPFS);
  m->set_target("/evil/inside");
  Outcome o = Run(r);
  EXPECT_EQ(o.result.exit_code(), 0) << absl::StrJoin(o.err, "\n");
  EXPECT_FALSE(common::PathExists("/tmp/inside"));
}

TEST_F(SandboxTest, TimeoutKillsATreeThatIgnoresSigterm) {
  SandboxRequest r =
      Request({"/bin/sh", "-c", "trap '' TERM; (trap '' TERM; sleep 600) & sleep 600"});
  r.set_timeout_ms(300);
  absl::Time start = absl::Now();
  Outcome o = Run(r);
  EXPECT_TRUE(o.result.timed_out());
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

TEST_F(SandboxTest, CancelKillsTheTree) {
  absl::Notification cancel;
  SandboxRequest r = Request({"/bin/sh", "-c", "echo started; sleep 600"});
  std::atomic<bool> notified{false};
  Outcome o = Run(r, &cancel, [&](absl::string_view line) {
    if (line == "started" && !notified.exchange(true)) cancel.Notify();
  });
  EXPECT_TRUE(o.result.cancelled());
}

TEST_F(SandboxTest, SignalsAndMissingCommands) {
  Outcome o = Run(Request({"/bin/sh", "-c", "kill -9 $$"}));
  EXPECT_EQ(o.result.exit_code(), 137);
  EXPECT_EQ(o.result.term_signal(), 9);
  o = Run(Request({"no-such-command"}));
  EXPECT_EQ(o.result.exit_code(), 127);
  ASSERT_EQ(o.err.size(), 1u);
  EXPECT_TRUE(absl::StrContains(o.err[0], "executable file not found")) << o.err[0];
  // Background processes do not outlive the command.
  o = Run(Request({"/bin/sh", "-c", "sleep 600 & echo bg"}));
  EXPECT_EQ(o.result.exit_code(), 0);
}

TEST_F(SandboxTest, InteractiveUsesTheCallersStdio) {
  std::string out = tmp_->path() + "/interactive.out";
  int fd = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  int in[2];
  ASSERT_EQ(pipe(in), 0);
  ASSERT_EQ(write(in[1], "from stdin\n", 11), 11);
  close(in[1]);
  SandboxRequest r = Request({"/bin/sh", "-c", "read line; echo got: $line; exit 5"});
  r.set_interactive(true);
  SandboxIo io;
  io.stdin_fd = in[0];
  io.stdout_fd = fd;
  io.stderr_fd = fd;
  auto result = RunSandbox(r, io, nullptr);
  close(fd);
  close(in[0]);
  ASSERT_OK(result);
  EXPECT_EQ(result->exit_code(), 5);
  EXPECT_EQ(*common::ReadFile(out), "got: from stdin\n");
}

TEST_F(SandboxTest, MemoryAndPidLimits) {
  CgroupLimits limits;
  limits.memory_bytes = 64 << 20;
  limits.pids = 8;
  auto plan = PlanCgroups(limits, CgroupEnv());
  ASSERT_OK(plan);
  SandboxRequest r = Request({"/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"});
  for (const auto& cg : *plan) *r.add_cgroups() = cg;
  Outcome o = Run(r);
  EXPECT_TRUE(o.result.oom_killed()) << o.result.DebugString();
  EXPECT_EQ(o.result.exit_code(), 137);

  SandboxRequest p =
      Request({"/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; wait"});
  for (const auto& cg : *plan) *p.add_cgroups() = cg;
  p.set_timeout_ms(5000);
  o = Run(p);
  EXPECT_FALSE(o.result.timed_out()) << "fork should have failed early";
  EXPECT_NE(o.result.exit_code(), 0);
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(o.err, "\n"), "fork")) << absl::StrJoin(o.err, "\n");
}

// Rootless: a subordinate range no one on this machine uses.
constexpr uint32_t kSubUid = 420000;
constexpr uint32_t kSubGid = 430000;

SandboxRequest MakeRootless(SandboxRequest r) {
  r.mutable_userns()->set_uid_start(kSubUid);
  r.mutable_userns()->set_gid_start(kSubGid);
  r.mutable_userns()->set_count(65536);
  return r;
}

// The host's view: the real uid and gid of every process whose real uid is in [lo, lo+65536).
std::vector<std::pair<uint32_t, uint32_t>> HostProcessesInRange(uint32_t lo) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  std::vector<std::string> pids;
  if (DIR* d = opendir("/proc")) {
    while (struct dirent* e = readdir(d)) pids.emplace_back(e->d_name);
    closedir(d);
  }
  for (const std::string& pid : pids) {
    auto status = common::ReadFile("/proc/" + pid + "/status");
    if (!status.ok()) continue;
    uint32_t uid = 0, gid = 0;
    for (absl::string_view line : absl::StrSplit(*status, '\n')) {
      std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
      if (f.size() < 2) continue;
      if (f[0] == "Uid:") (void)absl::SimpleAtoi(f[1], &uid);
      if (f[0] == "Gid:") (void)absl::SimpleAtoi(f[1], &gid);
    }
    if (uid >= lo && uid < lo + 65536) out.emplace_back(uid, gid);
  }
  return out;
}

TEST_F(SandboxTest, RootlessStepIsRootInsideAndASubordinateIdOutside) {
  // A layer with files owned by non-root ids, over busybox (all 0:0).
  std::string owned = tmp_->path() + "/layers/owned";
  ASSERT_OK(farm::worker::testing::WriteFile(owned + "/srv/data", "data\n"));
  ASSERT_EQ(chown((owned + "/srv").c_str(), 1234, 2345), 0);
  ASSERT_EQ(chown((owned + "/srv/data").c_str(), 1000, 1001), 0);
  std::string sync = tmp_->path() + "/rootless-sync";
  ASSERT_OK(common::MakeDirs(sync));
  SandboxRequest r = MakeRootless(
      Request({"/bin/sh", "-c",
               "id -u; id -g; read a b c < /proc/self/uid_map; echo $a $b $c;"
               " read a b c < /proc/self/gid_map; echo $a $b $c;"
               " stat -c '%u:%g' /srv /srv/data /bin/busybox /;"
               " echo more >> /srv/data && echo new > /new && chown 1000:1000 /new && mkdir /d &&"
               " chown 7:8 /d && echo written;"
               " echo ready; while [ ! -e /sync/go ]; do sleep 0.05; done; echo done"}));
  r.clear_lower_dirs();
  r.add_lower_dirs("owned");
  r.add_lower_dirs("busybox");
  SandboxMount* m = r.add_mounts();
  m->set_source(sync);
  m->set_target("/sync");
  std::vector<std::pair<uint32_t, uint32_t>> seen;
  Outcome o = Run(r, nullptr, [&](absl::string_view line) {
    if (line != "ready") return;
    // The step is blocked until /sync/go exists: look at it from the host meanwhile.
    seen = HostProcessesInRange(kSubUid);
    EXPECT_OK(farm::worker::testing::WriteFile(sync + "/go", ""));
  });
  EXPECT_EQ(o.result.exit_code(), 0) << absl::StrJoin(o.err, "\n");
  EXPECT_EQ(o.out,
            (std::vector<std::string>{"0", "0", "0 420000 65536", "0 430000 65536", "1234:2345",
                                      "1000:1001", "0:0", "0:0", "written", "ready", "done"}))
      << absl::StrJoin(o.err, "\n");
  // From the host, the step's processes (its shell, init) are the subordinate root.
  ASSERT_FALSE(seen.empty());
  for (auto [uid, gid] : seen) {
    EXPECT_EQ(uid, kSubUid);
    EXPECT_EQ(gid, kSubGid);
  }
  // The upperdir holds the image-side ids: the same bytes a rootful run writes.
  struct stat st;
  ASSERT_TRUE(farm::worker::testing::Lstat(r.upper_dir() + "/new", &st));
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1000u);
  ASSERT_TRUE(farm::worker::testing::Lstat(r.upper_dir() + "/d", &st));
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(st.st_gid, 8u);
  ASSERT_TRUE(farm::worker::testing::Lstat(r.upper_dir() + "/srv/data", &st));  // copied up
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  ASSERT_TRUE(farm::worker::testing::Lstat(r.upper_dir() + "/srv", &st));
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 2345u);
}

TEST_F(SandboxTest, RootlessKeepsTheProfile) {
  // Capabilities (Docker's set, inside the namespace), seccomp, masked paths, the network
  // namespace, the standard devices; mknod cannot work (CAP_MKNOD counts in the host's
  // namespace only); a non-root user has nothing.
  const char* script =
      "grep -E '^(CapEff|Seccomp):' /proc/self/status; wc -c < /proc/keys;"
      " touch /proc/sysrq-trigger 2>/dev/null || echo sysrq-ro;"
      " unshare -U true 2>/dev/null || echo no-userns;"
      " mknod /blk b 7 0 2>/dev/null || echo no-mknod; echo x > /dev/null && echo null-ok;"
      " head -c4 /dev/urandom | wc -c; ip -o link | grep -c UP; hostname;"
      " su nobody -s /bin/sh -c 'grep CapEff /proc/self/status; id -u'";
  CgroupLimits limits;
  limits.devices = true;
  limits.pids = 8;
  auto plan = PlanCgroups(limits, CgroupEnv());
  ASSERT_OK(plan);
  SandboxRequest r = MakeRootless(Request({"/bin/sh", "-c", script}));
  for (const auto& cg : *plan) *r.add_cgroups() = cg;
  Outcome o = Run(r);
  EXPECT_EQ(o.out, (std::vector<std::string>{"CapEff:\t00000000a80425fb", "Seccomp:\t2", "0",
                                             "sysrq-ro", "no-userns", "no-mknod", "null-ok", "4",
                                             "1", "farm", "CapEff:\t0000000000000000", "65534"}))
      << absl::StrJoin(o.err, "\n");
  // The pids cgroup still holds.
  SandboxRequest p = MakeRootless(
      Request({"/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 30 & done; wait"}));
  for (const auto& cg : *plan) *p.add_cgroups() = cg;
  p.set_timeout_ms(5000);
  o = Run(p);
  EXPECT_FALSE(o.result.timed_out()) << "fork should have failed early";
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(o.err, "\n"), "fork")) << absl::StrJoin(o.err, "\n");
}

TEST_F(SandboxTest, RootlessRangeMustBeWholeAndNotHostRoot) {
  SandboxRequest r = MakeRootless(Request({"/bin/true"}));
  r.mutable_userns()->set_count(1000);
  auto result = RunSandbox(r, SandboxIo{-1, -1, -1, [](absl::string_view, bool) {}}, nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(result->error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  r.mutable_userns()->set_count(65536);
  r.mutable_userns()->set_uid_start(0);
  result = RunSandbox(r, SandboxIo{-1, -1, -1, [](absl::string_view, bool) {}}, nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(result->error_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace farm::worker::sandbox
