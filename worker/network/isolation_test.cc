// The isolated step network at work: real steps (the sandbox runner, a busybox root) on a
// StepNetwork, in network namespaces this test makes, so no packet leaves them:
//
//   test process, in a network namespace of its own: the "worker host"
//     lo 127.0.0.1, up0 10.77.0.1/24 (its LAN address); a server on 0.0.0.0:kHostPort
//     ├─ fw<tag>-N ── eth0 of each step (198.18.x.y/30)
//     └─ up0 ── eth0 of the "peer" namespace: another host on the LAN
//          10.77.0.2 (allowed), 169.254.169.254 (link-local: the cloud metadata address),
//          10.88.0.2 (in the operator's denied range), 10.88.0.53 (the DNS resolver, also in
//          the denied range), each with a server on kPeerPort; the resolver also on port 53.
//
// A step connects to each with busybox nc; what the policy refuses must fail at once with
// "Connection refused" (the firewall's reset, not a timeout), and the same addresses must be
// reachable from the worker host itself (so the failure is the policy's, not the topology's).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/network/step_network.h"
#include "worker/sandbox/cgroups.h"
#include "worker/sandbox/sandbox.h"
#include "worker/testing/busybox.h"
#include "worker/testing/test_hosts.h"

namespace farm::worker::network {
namespace {

using farm::v1::SandboxRequest;

constexpr int kHostPort = 7001;
constexpr int kPeerPort = 7002;

class IsolationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto hosts = testing::TestHosts::Create();
    ASSERT_OK(hosts);
    hosts_ = hosts->release();
    for (const char* a : {"169.254.169.254", "10.88.0.2", "10.88.0.53"}) {
      ASSERT_OK(hosts_->AddPeerAddress(a));
    }
    servers_ = new std::vector<std::unique_ptr<testing::GreetingServer>>;
    servers_->push_back(std::make_unique<testing::GreetingServer>("0.0.0.0", kHostPort, "host"));
    ASSERT_OK(hosts_->InPeer([] {
      for (auto [addr, name] : std::map<std::string, std::string>{{"10.77.0.2", "peer"},
                                                                  {"169.254.169.254", "metadata"},
                                                                  {"10.88.0.2", "denied"},
                                                                  {"10.88.0.53", "resolver"}}) {
        servers_->push_back(std::make_unique<testing::GreetingServer>(addr, kPeerPort, name));
      }
      servers_->push_back(std::make_unique<testing::GreetingServer>("10.88.0.53", 53, "dns"));
    }));
    for (auto& s : *servers_) ASSERT_TRUE(s->ok());

    auto t = common::TempDir::Create("isolation-test");
    ASSERT_OK(t);
    tmp_ = new common::TempDir(std::move(*t));
    ASSERT_OK(testing::MakeBusyboxRootfs(tmp_->path() + "/layers/busybox"));
    ASSERT_OK(common::WriteFileAtomic(tmp_->path() + "/resolv.conf",
                                      "nameserver 10.88.0.53\nsearch example.test\n"));
    StepNetworkOptions o;
    o.deny = {*Cidr::Parse("10.88.0.0/16")};
    o.resolv_conf = tmp_->path() + "/resolv.conf";
    o.lease_dir = tmp_->path() + "/leases";
    auto net = StepNetwork::Create(o, tmp_->path() + "/state");
    ASSERT_OK(net);
    net_ = net->release();
  }

  static void TearDownTestSuite() {
    delete net_;
    delete servers_;
    delete hosts_;
    delete tmp_;
  }

  // Runs `script` in a step on the isolated network; its stdout lines.
  // A step running `script` on the isolated network.
  SandboxRequest Request(const std::string& script) {
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
    for (const char* a : {"/bin/sh", "-c"}) r.add_args(a);
    r.add_args(script);
    net_->Apply(&r);
    return r;
  }

  std::vector<std::string> Step(const std::string& script,
                                std::function<void(absl::string_view)> on_out = nullptr) {
    SandboxRequest r = Request(script);
    std::vector<std::string> out;
    absl::Mutex mu;
    sandbox::SandboxIo io;
    io.on_line = [&](absl::string_view line, bool is_stderr) {
      absl::MutexLock lock(&mu);
      if (!is_stderr) out.emplace_back(line);
      if (!is_stderr && on_out) on_out(line);
    };
    auto result = sandbox::RunSandbox(r, io, nullptr);
    EXPECT_OK(result);
    if (result.ok()) {
      EXPECT_EQ(result->error_code(), 0) << result->error_message();
    }
    return out;
  }

  static testing::TestHosts* hosts_;
  static std::vector<std::unique_ptr<testing::GreetingServer>>* servers_;
  static common::TempDir* tmp_;
  static StepNetwork* net_;
  static std::atomic<int> counter_;
};

testing::TestHosts* IsolationTest::hosts_ = nullptr;
std::vector<std::unique_ptr<testing::GreetingServer>>* IsolationTest::servers_ = nullptr;
common::TempDir* IsolationTest::tmp_ = nullptr;
StepNetwork* IsolationTest::net_ = nullptr;
std::atomic<int> IsolationTest::counter_{0};

// nc from a step: "<label> <greeting>" or "<label> refused: <nc's error>".
std::string Probe(const std::string& label, const std::string& addr, int port) {
  return absl::StrCat("r=$(nc -w 3 ", addr, " ", port, " </dev/null 2>&1) && echo '", label,
                      "' \"$r\" || echo '", label, " refused:' \"$r\"; ");
}

TEST_F(IsolationTest, TheTopologyWorksFromTheHost) {
  // What the steps below cannot reach, the worker host can: the policy refuses, not routing.
  EXPECT_EQ(testing::ReadGreeting("127.0.0.1", kHostPort), "host");
  EXPECT_EQ(testing::ReadGreeting("10.77.0.2", kPeerPort), "peer");
  EXPECT_EQ(testing::ReadGreeting("169.254.169.254", kPeerPort), "metadata");
  EXPECT_EQ(testing::ReadGreeting("10.88.0.2", kPeerPort), "denied");
  EXPECT_EQ(testing::ReadGreeting("10.88.0.53", kPeerPort), "resolver");
}

TEST_F(IsolationTest, StepReachesAnotherHostButNotThisOne) {
  std::string gateway = "$(ip route | awk '/default/ {print $3}')";
  std::vector<std::string> out = Step(absl::StrCat(
      "echo \"gw $(ip route | awk '/default/ {print $3}')\"; ",
      Probe("peer", "10.77.0.2", kPeerPort), Probe("host-loopback", "127.0.0.1", kHostPort),
      Probe("host-lan", "10.77.0.1", kHostPort), Probe("host-gateway", gateway, kHostPort),
      Probe("metadata", "169.254.169.254", kPeerPort), Probe("denied", "10.88.0.2", kPeerPort),
      Probe("resolver-53", "10.88.0.53", 53), Probe("resolver-other", "10.88.0.53", kPeerPort)));
  std::string all = absl::StrJoin(out, "\n");
  ASSERT_EQ(out.size(), 9u) << all;
  EXPECT_TRUE(absl::StartsWith(out[0], "gw 198.18.")) << all;
  EXPECT_EQ(out[1], "peer peer");
  EXPECT_EQ(out[7], "resolver-53 dns");
  // The host's loopback is not even routable from the step's namespace (its 127.0.0.1 is
  // its own, where nothing listens); everything else is refused by the firewall, at once (a
  // TCP reset), not dropped.
  for (size_t i : {2u, 3u, 4u, 5u, 6u, 8u}) {
    EXPECT_TRUE(absl::StrContains(out[i], " refused:")) << out[i];
    EXPECT_TRUE(absl::StrContains(out[i], "Connection refused")) << out[i];
  }
}

TEST_F(IsolationTest, StepsGetTheConfiguredResolversAndNoIpv6) {
  std::vector<std::string> out =
      Step("cat /etc/resolv.conf; ip -6 addr show dev eth0 | grep -c inet6; ip -o link | wc -l");
  ASSERT_EQ(out.size(), 4u) << absl::StrJoin(out, "\n");
  EXPECT_EQ(out[0], "nameserver 10.88.0.53");
  EXPECT_EQ(out[1], "search example.test");
  EXPECT_EQ(out[2], "0");  // no IPv6 address on eth0
  EXPECT_EQ(out[3], "2");  // lo and eth0
}

TEST_F(IsolationTest, StepsCannotReachEachOther) {
  // Step A listens and says where; step B, running at the same time, tries to connect.
  absl::Notification listening;
  std::string a_addr;
  std::thread a([&] {
    Step(
        "ip -4 -o addr show dev eth0 | awk '{split($4, a, \"/\"); print a[1]}'; "
        "timeout 20 nc -l -p 9000 -e echo step-a",
        [&](absl::string_view line) {
          if (!listening.HasBeenNotified()) {
            a_addr = std::string(line);
            listening.Notify();
          }
        });
  });
  ASSERT_TRUE(listening.WaitForNotificationWithTimeout(absl::Seconds(30)));
  std::vector<std::string> out = Step(absl::StrCat(
      "ip -4 -o addr show dev eth0 | awk '{split($4, a, \"/\"); print a[1]}'; sleep 0.5; ",
      Probe("step-a", a_addr, 9000)));
  // Let A finish: connect from the worker host, which may (the veth is its own interface).
  std::string from_host;
  for (int i = 0; i < 100 && from_host.empty(); ++i) {
    from_host = testing::ReadGreeting(a_addr, 9000);
    if (from_host.empty()) usleep(100000);
  }
  a.join();
  ASSERT_EQ(out.size(), 2u) << absl::StrJoin(out, "\n");
  EXPECT_NE(out[0], a_addr);  // a slot each
  EXPECT_TRUE(absl::StrContains(out[1], "step-a refused:")) << out[1];
  EXPECT_EQ(from_host, "step-a");
}

int HostInterfaces() {
  FILE* p = popen("ip -o link | grep -c ': fw' || true", "r");
  char buf[64] = {0};
  (void)!fgets(buf, sizeof(buf), p);
  pclose(p);
  return std::atoi(buf);
}

TEST_F(IsolationTest, ManySequentialStepsReuseSlotsCleanly) {
  // Every step releases its slot, and its veth pair goes with its namespace: after N steps no
  // fw* link is left (once the kernel has cleaned up), and each step had a working network,
  // also on a slot whose previous pair may still have existed (the pool has only 4 slots).
  StepNetworkOptions o;
  o.pool = "198.19.0.0/28";
  o.resolv_conf = tmp_->path() + "/resolv.conf";
  o.lease_dir = tmp_->path() + "/small-leases";
  auto small = StepNetwork::Create(o, tmp_->path() + "/small-state");
  ASSERT_OK(small);
  StepNetwork* saved = net_;
  net_ = small->get();
  for (int i = 0; i < 12; ++i) {
    std::vector<std::string> out = Step(Probe("peer", "10.77.0.2", kPeerPort));
    ASSERT_EQ(out, std::vector<std::string>{"peer peer"}) << i;
  }
  net_ = saved;
  int left = HostInterfaces();
  for (int i = 0; i < 100 && left > 0; ++i) {
    usleep(50000);
    left = HostInterfaces();
  }
  EXPECT_EQ(left, 0);
}

TEST_F(IsolationTest, AnInitThatFailsWhileItsNetworkIsMadeReportsItsOwnError) {
  // init mounts and resolves USER while the runner moves it into its cgroups and makes its
  // network: when init fails first, the error is init's, not what its exit did to the
  // network's setup (its /proc/PID/ns/net gone).
  for (int i = 0; i < 3; ++i) {
    SandboxRequest r = Request("echo never");
    r.set_user("ghost");
    // Cgroups make the runner's part the longer one (the first move waits for an RCU grace
    // period on cgroup v1): init is gone before the network is made.
    sandbox::CgroupLimits limits;
    limits.pids = 64;
    limits.devices = true;
    auto plan = sandbox::PlanCgroups(limits, sandbox::CgroupEnv());
    ASSERT_OK(plan);
    for (const auto& cg : *plan) *r.add_cgroups() = cg;
    r.set_cgroup_name(absl::StrCat("farm-isolation-test-", getpid(), "-", i));
    sandbox::SandboxIo io;
    io.on_line = [](absl::string_view, bool) {};
    auto result = sandbox::RunSandbox(r, io, nullptr);
    ASSERT_OK(result);
    EXPECT_NE(result->error_code(), 0);
    EXPECT_TRUE(absl::StrContains(result->error_message(), "unable to find user ghost"))
        << result->error_message();
  }
}

// Whether nftables has table `name` (inet family).
bool HasTable(const std::string& name) {
  std::string nft = access("/usr/sbin/nft", X_OK) == 0 ? "/usr/sbin/nft" : "/sbin/nft";
  return system(absl::StrCat(nft, " list table inet ", name, " >/dev/null 2>&1").c_str()) == 0;
}

TEST_F(IsolationTest, ARemovalLeftBehindNeverDeletesTheNextTable) {
  // farm build exits without waiting for its table's removal (teardown_behind); the next
  // build's Create must wait for that removal, or it could delete the table just loaded and
  // leave the steps without their firewall. A slow nft for removals makes the race certain.
  std::string nft = access("/usr/sbin/nft", X_OK) == 0 ? "/usr/sbin/nft" : "/sbin/nft";
  std::string slow = tmp_->path() + "/slow-nft";
  ASSERT_OK(
      common::WriteFileAtomic(slow,
                              absl::StrCat("#!/bin/sh\ninput=$(cat)\n"
                                           "case \"$input\" in *\"{\"*) ;; *) sleep 0.3 ;; esac\n"
                                           "printf '%s\\n' \"$input\" | ",
                                           nft, " \"$@\"\n"),
                              0755));
  StepNetworkOptions o;
  o.pool = "198.19.0.16/28";
  o.resolv_conf = tmp_->path() + "/resolv.conf";
  o.lease_dir = tmp_->path() + "/behind-leases";
  o.nft = slow;
  o.teardown_behind = true;
  std::string state = tmp_->path() + "/behind-state";
  std::string table;
  for (int i = 0; i < 2; ++i) {
    auto net = StepNetwork::Create(o, state);
    ASSERT_OK(net);
    table = (*net)->table();
    usleep(500000);  // past the moment a removal that did not wait its turn would delete it
    EXPECT_TRUE(HasTable(table)) << i;
    net->reset();  // the removal now runs behind, holding the lock
  }
  // The last removal finishes on its own; the table goes.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = !HasTable(table);
    if (!gone) usleep(10000);
  }
  EXPECT_TRUE(gone);
  while (waitpid(-1, nullptr, WNOHANG) > 0) {
  }
}

}  // namespace
}  // namespace farm::worker::network
