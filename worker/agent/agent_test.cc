// farm-worker's agent, for real: steps run in the sandbox (root), blobs move through a real
// farm-cache served in process (RocksDB in a temp dir), and the scheduler is a scripted fake
// WorkerHub on loopback that records what the worker sends.
#include "worker/agent/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oci/chain_id.h"
#include "oci/platform.h"
#include "worker/agent/testing/fake_hub.h"
#include "worker/agent/testing/local_cache.h"
#include "worker/layerstore/layer_store.h"
#include "worker/testing/fs_helpers.h"
#include "worker/testing/layers.h"

namespace farm::worker::agent {
namespace {

using testing::CancelMessage;
using ::testing::Contains;
using testing::FakeWorkerHub;
using ::testing::HasSubstr;
using testing::TaskMessage;
using Snapshot = FakeWorkerHub::Snapshot;

constexpr absl::Duration kWait = absl::Seconds(60);

// The agent's log lines, kept for assertions and echoed to the test log.
struct LogCapture {
  absl::Mutex mu;
  std::vector<std::string> lines;
  bool Contains(absl::string_view needle) {
    absl::MutexLock lock(&mu);
    for (const std::string& l : lines) {
      if (absl::StrContains(l, needle)) return true;
    }
    return false;
  }
};

// An HTTP server a step waits on (`wget http://127.0.0.1:PORT/`) until the test releases it:
// lets a test decide exactly when a running step finishes.
class Gate {
 public:
  Gate() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 16);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~Gate() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  void Release() { released_ = true; }
  std::string Wait() const { return absl::StrCat("wget -q -O - http://127.0.0.1:", port_, "/"); }

 private:
  void Serve() {
    std::vector<int> held;
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) == 1) {
        int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) held.push_back(c);
      }
      if (released_) {
        for (int c : held) {
          char buf[4096];
          (void)!read(c, buf, sizeof(buf));
          const char kResponse[] = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\ngo\n";
          (void)!write(c, kResponse, sizeof(kResponse) - 1);
          close(c);
        }
        held.clear();
      }
    }
    for (int c : held) close(c);
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false}, released_{false};
  std::thread thread_;
};

class AgentTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = common::TempDir::Create("agent-test");
    ASSERT_OK(t);
    tmp_ = new common::TempDir(std::move(*t));
    auto cache = testing::LocalCache::Start(tmp_->path() + "/cache");
    ASSERT_OK(cache);
    cache_ = cache->release();
    cas_ = cache_->cas();
    base_ = cache_->base();
  }
  static void TearDownTestSuite() {
    cas_.reset();
    delete cache_;
    cache_ = nullptr;
    delete tmp_;
    tmp_ = nullptr;
  }

  void SetUp() override {
    hub_ = StartHub(0);
    ASSERT_NE(hub_, nullptr);
  }

  static std::unique_ptr<FakeWorkerHub> StartHub(int port) {
    FakeWorkerHub::Options ho;
    ho.port = port;
    ho.welcome.set_heartbeat_interval_millis(50);
    ho.welcome.set_lease_timeout_millis(10000);
    ho.welcome.set_scheduler_id("fake");
    return FakeWorkerHub::Start(ho);
  }

  Agent::Options AgentOptions(const std::string& name, int slots = 1) {
    Agent::Options o;
    o.scheduler = hub_->address();
    o.cache = cache_->address();
    o.state_dir = absl::StrCat(tmp_->path(), "/", name);
    o.slots = slots;
    o.reconnect.initial = absl::Milliseconds(20);
    o.reconnect.max = absl::Milliseconds(200);
    o.connect_timeout = absl::Seconds(5);
    o.compression_threads = 1;
    // Steps wait on a Gate on this host's loopback: the host's network, not the isolated one
    // (these tests are about the worker's connection, not its sandbox).
    o.policy.isolate_network = false;
    auto capture = log_;
    o.log = [capture, name](const std::string& line) {
      fprintf(stderr, "[%s] %s\n", name.c_str(), line.c_str());
      absl::MutexLock lock(&capture->mu);
      capture->lines.push_back(line);
    };
    return o;
  }

  std::unique_ptr<Agent> StartAgent(Agent::Options o) {
    auto a = Agent::Create(std::move(o));
    EXPECT_OK(a);
    if (!a.ok()) return nullptr;
    (*a)->Start();
    return *std::move(a);
  }

  // Waits until the hub has `n` connections that got a hello.
  bool WaitForHellos(FakeWorkerHub* hub, size_t n) {
    return hub->WaitFor([n](const Snapshot& s) { return s.hellos.size() >= n; }, kWait);
  }

  farm::v1::StepRequest Sh(const std::string& script, const std::string& network = "none") {
    farm::v1::StepRequest r;
    r.set_key(absl::StrCat("key-", ++counter_));
    r.set_description("RUN " + script);
    *r.add_parents() = base_;
    r.mutable_run()->add_args("/bin/sh");
    r.mutable_run()->add_args("-c");
    r.mutable_run()->add_args(script);
    r.mutable_run()->set_network(network);
    r.mutable_env()->add_env("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    return r;
  }

  // Waits for `task_id`'s log to contain `line` on `hub`.
  static bool WaitForLine(FakeWorkerHub* hub, const std::string& task_id, const std::string& line) {
    return hub->WaitFor(
        [&](const Snapshot& s) {
          for (const auto& l : s.Logs(task_id)) {
            if (l.line() == line) return true;
          }
          return false;
        },
        kWait);
  }
  static bool WaitForResult(FakeWorkerHub* hub, const std::string& task_id) {
    return hub->WaitFor([&](const Snapshot& s) { return !s.Results(task_id).empty(); }, kWait);
  }
  template <typename F>
  static bool WaitForStatus(Agent* agent, F pred) {
    absl::Time deadline = absl::Now() + kWait;
    while (absl::Now() < deadline) {
      if (pred(agent->GetStatus())) return true;
      absl::SleepFor(absl::Milliseconds(5));  // polling a condition, with a deadline
    }
    return false;
  }

  static common::TempDir* tmp_;
  static testing::LocalCache* cache_;
  static std::shared_ptr<cache::RocksDbBlobStore> cas_;
  static farm::v1::Layer base_;
  std::unique_ptr<FakeWorkerHub> hub_;
  std::shared_ptr<LogCapture> log_ = std::make_shared<LogCapture>();
  int counter_ = 0;
};

common::TempDir* AgentTest::tmp_ = nullptr;
testing::LocalCache* AgentTest::cache_ = nullptr;
std::shared_ptr<cache::RocksDbBlobStore> AgentTest::cas_;
farm::v1::Layer AgentTest::base_;

std::string ChainOf(const std::vector<farm::v1::Layer>& layers) {
  std::vector<common::Digest> diff_ids;
  for (const auto& l : layers) diff_ids.push_back(*common::Digest::ParseOci(l.diff_id(), 0));
  return oci::ChainId(diff_ids);
}

TEST_F(AgentTest, RunsTasksStreamsLogsAndPutsLayersInTheCache) {
  Agent::Options o = AgentOptions("basic", 2);
  o.labels = {{"pool", "ci"}, {"disk", "ssd"}};
  auto agent = StartAgent(std::move(o));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  farm::v1::WorkerHello hello = hub_->snapshot().hellos[0];
  EXPECT_EQ(hello.worker_id(), agent->worker_id());
  EXPECT_FALSE(hello.worker_id().empty());
  EXPECT_EQ(hello.slots(), 2);
  EXPECT_EQ(hello.platform(), oci::Platform::Host().String());
  EXPECT_EQ(hello.labels().at("pool"), "ci");
  EXPECT_EQ(hello.labels().at("disk"), "ssd");
  EXPECT_THAT(hello.version(), HasSubstr("farm-worker"));
  EXPECT_EQ(hello.running_size(), 0);

  // A RUN: output lines arrive as they are produced, each with the lease; then the result.
  ASSERT_TRUE(
      hub_->Send(TaskMessage("run-1", "lease-1", Sh("echo hello; echo oops >&2; echo data > /f"))));
  ASSERT_TRUE(WaitForResult(hub_.get(), "run-1"));
  Snapshot s = hub_->snapshot();
  std::vector<farm::v1::TaskLog> logs = s.Logs("run-1");
  ASSERT_EQ(logs.size(), 2u);
  for (const auto& l : logs) EXPECT_EQ(l.lease_id(), "lease-1");
  EXPECT_EQ(logs[0].line(), "hello");
  EXPECT_FALSE(logs[0].stderr());
  EXPECT_EQ(logs[1].line(), "oops");
  EXPECT_TRUE(logs[1].stderr());
  int log_at = s.IndexOf([](const auto& m) { return m.has_log() && m.log().task_id() == "run-1"; });
  int result_at =
      s.IndexOf([](const auto& m) { return m.has_result() && m.result().task_id() == "run-1"; });
  EXPECT_LT(log_at, result_at);
  farm::v1::TaskResult r = s.Results("run-1")[0];
  EXPECT_EQ(r.lease_id(), "lease-1");
  EXPECT_EQ(r.status_code(), 0) << r.status_message();
  EXPECT_EQ(r.result().exit_code(), 0);
  EXPECT_GT(r.run_micros(), 0);
  ASSERT_TRUE(r.result().has_layer());
  // The layer is in farm-cache, uploaded by the worker itself.
  farm::v1::Layer layer = r.result().layer();
  auto blob = common::Digest::ParseOci(layer.digest(), layer.size());
  ASSERT_OK(blob);
  auto missing = cas_->FindMissing({*blob});
  ASSERT_OK(missing);
  EXPECT_TRUE(missing->empty());
  auto contents = farm::worker::testing::ReadLayer(cas_.get(), layer);
  ASSERT_OK(contents);
  EXPECT_EQ(contents->order, std::vector<std::string>{"f"});
  EXPECT_EQ(contents->at("f").data, "data\n");

  // A COPY reads the build context from farm-cache.
  auto ctx = farm::worker::testing::ContextBuilder()
                 .File("app/main.sh", "echo hi\n", true)
                 .Store(cas_.get());
  ASSERT_OK(ctx);
  farm::v1::StepRequest copy;
  copy.set_key("copy-key");
  copy.set_description("COPY app /app");
  *copy.add_parents() = base_;
  *copy.add_parents() = layer;
  *copy.mutable_copy()->mutable_source()->mutable_context() = *ctx;
  copy.mutable_copy()->add_srcs("app");
  copy.mutable_copy()->set_dest("/app");
  ASSERT_TRUE(hub_->Send(TaskMessage("copy-1", "lease-2", copy)));
  ASSERT_TRUE(WaitForResult(hub_.get(), "copy-1"));
  farm::v1::TaskResult cr = hub_->snapshot().Results("copy-1")[0];
  ASSERT_EQ(cr.status_code(), 0) << cr.status_message();
  auto copied = farm::worker::testing::ReadLayer(cas_.get(), cr.result().layer());
  ASSERT_OK(copied);
  EXPECT_TRUE(copied->has("app/main.sh"));

  // Heartbeats come at Welcome's interval and report the stacks now held, by ChainID.
  std::string base_chain = ChainOf({base_});
  std::string run_chain = ChainOf({base_, layer});
  std::string copy_chain = ChainOf({base_, layer, cr.result().layer()});
  ASSERT_TRUE(hub_->WaitFor(
      [&](const Snapshot& s) {
        std::set<std::string> added;
        for (const auto& hb : s.Heartbeats()) {
          added.insert(hb.chain_ids_added().begin(), hb.chain_ids_added().end());
        }
        return added.count(base_chain) && added.count(run_chain) && added.count(copy_chain);
      },
      kWait));
  EXPECT_GE(hub_->snapshot().Heartbeats().size(), 2u);
  EXPECT_EQ(agent->GetStatus().tasks_done, 2);

  // A new connection reports them all in its hello (here: after a restart of the agent, so
  // they were persisted with the state directory).
  agent->Shutdown(absl::Seconds(5));
  agent.reset();
  auto again = StartAgent(AgentOptions("basic", 2));
  ASSERT_NE(again, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 2));
  farm::v1::WorkerHello second = hub_->snapshot().hellos[1];
  EXPECT_EQ(second.worker_id(), hello.worker_id());  // stable across restarts
  EXPECT_THAT(second.chain_ids(), Contains(base_chain));
  EXPECT_THAT(second.chain_ids(), Contains(run_chain));
  EXPECT_THAT(second.chain_ids(), Contains(copy_chain));
  EXPECT_EQ(second.chain_ids(0), copy_chain);  // most recently used first
}

TEST_F(AgentTest, FailedCommandsAndBadRequestsAreReported) {
  auto agent = StartAgent(AgentOptions("failures"));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(hub_->Send(TaskMessage("fail", "l1", Sh("echo boom; echo bang >&2; exit 3"))));
  ASSERT_TRUE(WaitForResult(hub_.get(), "fail"));
  farm::v1::TaskResult r = hub_->snapshot().Results("fail")[0];
  EXPECT_EQ(r.status_code(), 0);  // the command failed, the step did not
  EXPECT_EQ(r.result().exit_code(), 3);
  EXPECT_FALSE(r.result().has_layer());
  EXPECT_THAT(r.result().output_tail(), Contains("boom"));
  EXPECT_THAT(r.result().output_tail(), Contains("bang"));

  farm::v1::StepRequest no_op;
  no_op.set_description("RUN nothing");
  *no_op.add_parents() = base_;
  ASSERT_TRUE(hub_->Send(TaskMessage("bad", "l2", no_op)));
  ASSERT_TRUE(WaitForResult(hub_.get(), "bad"));
  farm::v1::TaskResult bad = hub_->snapshot().Results("bad")[0];
  EXPECT_EQ(bad.status_code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(bad.status_message(), HasSubstr("no operation"));

  // A parent layer that is not in farm-cache.
  farm::v1::StepRequest lost = Sh("true");
  farm::v1::Layer ghost = base_;
  ghost.set_digest("sha256:" + std::string(64, 'a'));
  ghost.set_diff_id("sha256:" + std::string(64, 'b'));
  *lost.mutable_parents(0) = ghost;
  ASSERT_TRUE(hub_->Send(TaskMessage("lost", "l3", lost)));
  ASSERT_TRUE(WaitForResult(hub_.get(), "lost"));
  farm::v1::TaskResult gone = hub_->snapshot().Results("lost")[0];
  EXPECT_EQ(gone.status_code(), static_cast<int>(absl::StatusCode::kNotFound))
      << gone.status_message();
  EXPECT_THAT(gone.status_message(), HasSubstr(std::string(64, 'a')));
}

TEST_F(AgentTest, AStepForAPlatformItDidNotAnnounceIsRefused) {
  auto agent = StartAgent(AgentOptions("platforms"));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  EXPECT_EQ(hub_->snapshot().hellos[0].emulated_platforms_size(), 0);  // off by default
  // Even if this host could run it under QEMU: it did not announce it (a platform that is not
  // this host's, whatever the host).
  farm::v1::StepRequest arm = Sh("echo ran");
  arm.mutable_env()->set_platform(oci::Platform::Host().architecture == "arm64" ? "linux/amd64"
                                                                                : "linux/arm64");
  ASSERT_TRUE(hub_->Send(TaskMessage("arm", "l1", arm)));
  ASSERT_TRUE(WaitForResult(hub_.get(), "arm"));
  farm::v1::TaskResult r = hub_->snapshot().Results("arm")[0];
  EXPECT_EQ(r.status_code(), static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(r.status_message(), HasSubstr("refuses step \"RUN echo ran\" for linux/arm64"));
  EXPECT_THAT(r.status_message(), HasSubstr(agent->worker_id()));
  EXPECT_TRUE(hub_->snapshot().Logs("arm").empty());  // it did not run
  // Its own platform runs.
  farm::v1::StepRequest own = Sh("echo ran");
  own.mutable_env()->set_platform(agent->platform());
  ASSERT_TRUE(hub_->Send(TaskMessage("own", "l2", own)));
  ASSERT_TRUE(WaitForResult(hub_.get(), "own"));
  EXPECT_EQ(hub_->snapshot().Results("own")[0].status_code(), 0);
}

TEST_F(AgentTest, CancelKillsTheStep) {
  auto agent = StartAgent(AgentOptions("cancel"));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(hub_->Send(TaskMessage("long", "l1", Sh("echo started; sleep 600"))));
  ASSERT_TRUE(WaitForLine(hub_.get(), "long", "started"));
  // A cancel for another lease of it is stale: ignored.
  ASSERT_TRUE(hub_->Send(CancelMessage("long", "old-lease")));
  absl::Time start = absl::Now();
  ASSERT_TRUE(hub_->Send(CancelMessage("long", "l1", "build cancelled by the user")));
  ASSERT_TRUE(WaitForResult(hub_.get(), "long"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  farm::v1::TaskResult r = hub_->snapshot().Results("long")[0];
  EXPECT_EQ(r.status_code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_THAT(r.status_message(), HasSubstr("build cancelled by the user"));
  EXPECT_EQ(r.lease_id(), "l1");
  EXPECT_TRUE(log_->Contains("under lease old-lease"));
  EXPECT_EQ(agent->GetStatus().running, 0);
}

TEST_F(AgentTest, RunsAtMostSlotsTasksAtOnce) {
  auto agent = StartAgent(AgentOptions("slots", 2));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(hub_->Send(TaskMessage("a", "la", Sh("echo start; sleep 600"))));
  ASSERT_TRUE(hub_->Send(TaskMessage("b", "lb", Sh("echo start; sleep 600"))));
  ASSERT_TRUE(WaitForLine(hub_.get(), "a", "start"));
  ASSERT_TRUE(WaitForLine(hub_.get(), "b", "start"));
  ASSERT_TRUE(hub_->Send(TaskMessage("c", "lc", Sh("echo start"))));
  ASSERT_TRUE(hub_->Send(TaskMessage("d", "ld", Sh("echo start"))));
  ASSERT_TRUE(WaitForStatus(agent.get(), [](const Agent::Status& s) { return s.queued == 2; }));
  EXPECT_EQ(agent->GetStatus().running, 2);
  // Queued tasks are still held: heartbeats list them, so their leases stay alive.
  size_t seen = hub_->snapshot().Heartbeats().size();
  ASSERT_TRUE(hub_->WaitFor(
      [&](const Snapshot& s) {
        auto hbs = s.Heartbeats();
        return hbs.size() > seen && hbs.back().running_size() == 4;
      },
      kWait));
  EXPECT_TRUE(hub_->snapshot().Logs("c").empty());

  // A queued task cancelled: reported at once, never run.
  ASSERT_TRUE(hub_->Send(CancelMessage("d", "ld")));
  ASSERT_TRUE(WaitForResult(hub_.get(), "d"));
  EXPECT_EQ(hub_->snapshot().Results("d")[0].status_code(),
            static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_TRUE(hub_->snapshot().Logs("c").empty());

  // A slot frees: c runs, after a's result.
  ASSERT_TRUE(hub_->Send(CancelMessage("a", "la")));
  ASSERT_TRUE(WaitForResult(hub_.get(), "c"));
  Snapshot s = hub_->snapshot();
  int a_done =
      s.IndexOf([](const auto& m) { return m.has_result() && m.result().task_id() == "a"; });
  int c_started = s.IndexOf([](const auto& m) { return m.has_log() && m.log().task_id() == "c"; });
  ASSERT_GE(a_done, 0);
  EXPECT_GT(c_started, a_done);
  EXPECT_EQ(s.Results("c")[0].result().exit_code(), 0);
  EXPECT_TRUE(s.Logs("d").empty());
  ASSERT_TRUE(hub_->Send(CancelMessage("b", "lb")));
  ASSERT_TRUE(WaitForResult(hub_.get(), "b"));
}

TEST_F(AgentTest, ReconnectsAfterTheSchedulerRestartsAndKeepsTasks) {
  auto agent = StartAgent(AgentOptions("reconnect"));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  int port = hub_->port();

  // 1. A task still running when the scheduler comes back: listed in the new hello, then
  // re-issued under a new lease (not run twice); its result goes to the new scheduler.
  Gate gate1;
  ASSERT_TRUE(hub_->Send(
      TaskMessage("t1", "lease-1", Sh("echo start; " + gate1.Wait() + "; echo end", "default"))));
  ASSERT_TRUE(WaitForLine(hub_.get(), "t1", "start"));
  hub_->Stop();
  ASSERT_TRUE(WaitForStatus(
      agent.get(), [](const Agent::Status& s) { return s.state != Agent::State::kConnected; }));
  hub_ = StartHub(port);
  ASSERT_NE(hub_, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  farm::v1::WorkerHello hello = hub_->snapshot().hellos[0];
  ASSERT_EQ(hello.running_size(), 1);
  EXPECT_EQ(hello.running(0).task_id(), "t1");
  EXPECT_EQ(hello.running(0).lease_id(), "lease-1");
  EXPECT_EQ(hello.running(0).key(), "key-1");
  ASSERT_TRUE(hub_->Send(TaskMessage("t1", "lease-1b", farm::v1::StepRequest())));
  ASSERT_TRUE(WaitForStatus(agent.get(), [&](const Agent::Status&) {
    return log_->Contains("continues under lease lease-1b");
  }));
  gate1.Release();
  ASSERT_TRUE(WaitForResult(hub_.get(), "t1"));
  Snapshot s = hub_->snapshot();
  farm::v1::TaskResult r1 = s.Results("t1")[0];
  EXPECT_EQ(r1.lease_id(), "lease-1b");
  EXPECT_EQ(r1.status_code(), 0) << r1.status_message();
  EXPECT_EQ(r1.result().exit_code(), 0);
  std::vector<std::string> lines;
  for (const auto& l : s.Logs("t1")) lines.push_back(l.line());
  EXPECT_EQ(lines, (std::vector<std::string>{"go", "end"}));  // "start" went to the old one
  EXPECT_EQ(agent->GetStatus().tasks_done, 1);

  // 2. A task that finishes while the scheduler is down: its output and result are buffered
  // and delivered right after the next Welcome; the hello lists it meanwhile.
  Gate gate2;
  ASSERT_TRUE(hub_->Send(
      TaskMessage("t2", "lease-2", Sh("echo start; " + gate2.Wait() + "; echo end", "default"))));
  ASSERT_TRUE(WaitForLine(hub_.get(), "t2", "start"));
  hub_->Stop();
  ASSERT_TRUE(WaitForStatus(
      agent.get(), [](const Agent::Status& s) { return s.state != Agent::State::kConnected; }));
  gate2.Release();
  ASSERT_TRUE(
      WaitForStatus(agent.get(), [](const Agent::Status& s) { return s.unsent_results == 1; }));
  hub_ = StartHub(port);
  ASSERT_NE(hub_, nullptr);
  ASSERT_TRUE(WaitForResult(hub_.get(), "t2"));
  s = hub_->snapshot();
  ASSERT_EQ(s.hellos.size(), 1u);
  ASSERT_EQ(s.hellos[0].running_size(), 1);
  EXPECT_EQ(s.hellos[0].running(0).task_id(), "t2");
  farm::v1::TaskResult r2 = s.Results("t2")[0];
  EXPECT_EQ(r2.lease_id(), "lease-2");
  EXPECT_EQ(r2.result().exit_code(), 0);
  lines.clear();
  for (const auto& l : s.Logs("t2")) lines.push_back(l.line());
  EXPECT_EQ(lines, (std::vector<std::string>{"go", "end"}));
  // Nothing but the buffered messages came before them: they were sent right after Welcome.
  int first_log = s.IndexOf([](const auto& m) { return m.has_log() && m.log().task_id() == "t2"; });
  EXPECT_EQ(first_log, 0);
  EXPECT_EQ(agent->GetStatus().unsent_results, 0);
  EXPECT_TRUE(log_->Contains("sending 1 buffered result and 2 log lines"));
}

TEST_F(AgentTest, OutputBufferedWhileDisconnectedIsBounded) {
  Agent::Options o = AgentOptions("bounded");
  o.max_buffered_log_bytes = 1000;
  auto agent = StartAgent(std::move(o));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  int port = hub_->port();
  Gate gate;
  ASSERT_TRUE(hub_->Send(TaskMessage(
      "chatty", "l", Sh("echo start; " + gate.Wait() + "; seq 1 500; echo end", "default"))));
  ASSERT_TRUE(WaitForLine(hub_.get(), "chatty", "start"));
  hub_->Stop();
  ASSERT_TRUE(WaitForStatus(
      agent.get(), [](const Agent::Status& s) { return s.state != Agent::State::kConnected; }));
  gate.Release();
  ASSERT_TRUE(
      WaitForStatus(agent.get(), [](const Agent::Status& s) { return s.unsent_results == 1; }));
  EXPECT_GT(agent->GetStatus().log_lines_dropped, 400);
  hub_ = StartHub(port);
  ASSERT_NE(hub_, nullptr);
  ASSERT_TRUE(WaitForResult(hub_.get(), "chatty"));
  std::vector<farm::v1::TaskLog> logs = hub_->snapshot().Logs("chatty");
  ASSERT_GE(logs.size(), 3u);
  EXPECT_LT(logs.size(), 30u);
  EXPECT_EQ(logs[0].line(), "go");
  EXPECT_EQ(logs[1].line(), "1");  // the first lines are kept, the rest dropped
  EXPECT_THAT(logs.back().line(), HasSubstr("lines of output dropped here"));
  EXPECT_TRUE(logs.back().stderr());
  EXPECT_EQ(hub_->snapshot().Results("chatty")[0].result().exit_code(), 0);
}

TEST_F(AgentTest, BacksOffWhileTheSchedulerIsDown) {
  int port = hub_->port();
  hub_->Stop();
  Agent::Options o = AgentOptions("backoff");
  o.scheduler = absl::StrCat("127.0.0.1:", port);
  o.reconnect.initial = absl::Milliseconds(10);
  o.reconnect.max = absl::Milliseconds(80);
  o.reconnect.jitter = 0.25;
  auto agent = StartAgent(std::move(o));
  ASSERT_NE(agent, nullptr);
  // Refused connections fail fast and are retried with growing, capped delays.
  ASSERT_TRUE(
      WaitForStatus(agent.get(), [](const Agent::Status& s) { return s.failed_attempts >= 8; }));
  Agent::Status st = agent->GetStatus();
  EXPECT_LE(st.last_backoff, absl::Milliseconds(80));
  EXPECT_GE(st.last_backoff, absl::Milliseconds(60));  // at the cap, minus jitter
  EXPECT_EQ(st.sessions, 0);
  EXPECT_TRUE(log_->Contains(absl::StrCat("scheduler 127.0.0.1:", port, " is unreachable")));
  EXPECT_TRUE(log_->Contains("retrying in"));
  {
    // Not a line per attempt: repeated identical errors are logged at attempts 1, 2, 4, 8...
    absl::MutexLock lock(&log_->mu);
    int retry_lines = 0;
    for (const auto& l : log_->lines) retry_lines += absl::StrContains(l, "retrying in") ? 1 : 0;
    EXPECT_LT(retry_lines, st.failed_attempts);
  }
  // It comes up: the worker connects within a backoff period.
  hub_ = StartHub(port);
  ASSERT_NE(hub_, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(WaitForStatus(agent.get(), [](const Agent::Status& s) {
    return s.state == Agent::State::kConnected && s.failed_attempts == 0 && s.sessions == 1;
  }));
}

TEST_F(AgentTest, ASchedulerThatNeverWelcomesIsRetried) {
  FakeWorkerHub::Options ho;
  ho.send_welcome = false;
  auto silent = FakeWorkerHub::Start(ho);
  ASSERT_NE(silent, nullptr);
  Agent::Options o = AgentOptions("silent");
  o.scheduler = silent->address();
  o.welcome_timeout = absl::Milliseconds(100);
  auto agent = StartAgent(std::move(o));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(
      WaitForStatus(agent.get(), [](const Agent::Status& s) { return s.failed_attempts >= 3; }));
  EXPECT_GE(silent->snapshot().hellos.size(), 3u);
  EXPECT_EQ(agent->GetStatus().sessions, 0);
  EXPECT_TRUE(log_->Contains("no Welcome within 100ms"));
}

TEST_F(AgentTest, SecretsReachTheirStepOnly) {
  const std::string value = "hunter2-b8e0c1f4d7";
  auto agent = StartAgent(AgentOptions("secrets", 2));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  auto with_mount = [](farm::v1::StepRequest r) {
    farm::v1::Mount* m = r.mutable_run()->add_mounts();
    m->set_type(farm::v1::Mount::SECRET);
    m->set_id("token");
    m->set_target("/run/secrets/token");
    m->set_env("TOKEN");  // both a file and a variable
    return r;
  };
  // While it runs: the step sees the secret (file and env); nothing under the state dir holds it.
  farm::v1::SchedulerMessage running = TaskMessage(
      "s1", "l1",
      with_mount(Sh("test \"$(cat /run/secrets/token)\" = \"$TOKEN\" && test -n \"$TOKEN\" && "
                    "echo has-secret; echo ready; sleep 600")));
  (*running.mutable_task()->mutable_secrets())["token"] = value;
  ASSERT_TRUE(hub_->Send(running));
  ASSERT_TRUE(WaitForLine(hub_.get(), "s1", "ready"));
  std::vector<std::string> lines;
  for (const auto& l : hub_->snapshot().Logs("s1")) lines.push_back(l.line());
  EXPECT_EQ(lines, (std::vector<std::string>{"has-secret", "ready"}));
  std::string state_dir = absl::StrCat(tmp_->path(), "/secrets");
  EXPECT_EQ(farm::worker::testing::FilesContaining(state_dir, value), std::vector<std::string>{});

  // Another task at the same time, without the secret: it sees nothing.
  ASSERT_TRUE(hub_->Send(TaskMessage(
      "s2", "l2",
      with_mount(Sh("cat /run/secrets/token 2>/dev/null || echo no-file; echo \"[$TOKEN]\"")))));
  ASSERT_TRUE(WaitForResult(hub_.get(), "s2"));
  lines.clear();
  for (const auto& l : hub_->snapshot().Logs("s2")) lines.push_back(l.line());
  EXPECT_EQ(lines, (std::vector<std::string>{"no-file", "[]"}));
  ASSERT_TRUE(hub_->Send(CancelMessage("s1", "l1")));
  ASSERT_TRUE(WaitForResult(hub_.get(), "s1"));

  // A step that completes with it: the layer holds what it wrote, not the secret.
  farm::v1::SchedulerMessage done = TaskMessage(
      "s3", "l3", with_mount(Sh("cat /run/secrets/token > /dev/null && echo done > /out")));
  (*done.mutable_task()->mutable_secrets())["token"] = value;
  ASSERT_TRUE(hub_->Send(done));
  ASSERT_TRUE(WaitForResult(hub_.get(), "s3"));
  farm::v1::TaskResult r = hub_->snapshot().Results("s3")[0];
  ASSERT_EQ(r.status_code(), 0) << r.status_message();
  ASSERT_EQ(r.result().exit_code(), 0);
  auto layer = farm::worker::testing::ReadLayer(cas_.get(), r.result().layer());
  ASSERT_OK(layer);
  EXPECT_EQ(layer->order, std::vector<std::string>{"out"});
  for (const auto& [name, entry] : layer->entries) {
    EXPECT_FALSE(absl::StrContains(entry.data, value)) << name;
  }
  // Not on disk, not in the worker's log, not in anything sent back.
  EXPECT_EQ(farm::worker::testing::FilesContaining(state_dir, value), std::vector<std::string>{});
  EXPECT_FALSE(log_->Contains(value));
  for (const auto& m : hub_->snapshot().received) {
    EXPECT_FALSE(absl::StrContains(m.msg.SerializeAsString(), value));
  }
}

TEST_F(AgentTest, TwoWorkersWithTheirOwnDirectoriesOnOneMachine) {
  auto one = StartAgent(AgentOptions("one"));
  auto two = StartAgent(AgentOptions("two"));
  ASSERT_NE(one, nullptr);
  ASSERT_NE(two, nullptr);
  EXPECT_NE(one->worker_id(), two->worker_id());
  ASSERT_TRUE(WaitForHellos(hub_.get(), 2));
  // Both run steps at the same time.
  ASSERT_TRUE(hub_->Send(TaskMessage("x1", "l1", Sh("echo start; sleep 600")), one->worker_id()));
  ASSERT_TRUE(hub_->Send(TaskMessage("x2", "l2", Sh("echo start; sleep 600")), two->worker_id()));
  ASSERT_TRUE(WaitForLine(hub_.get(), "x1", "start"));
  ASSERT_TRUE(WaitForLine(hub_.get(), "x2", "start"));
  EXPECT_EQ(one->GetStatus().running, 1);
  EXPECT_EQ(two->GetStatus().running, 1);

  // A third on a directory in use is refused, naming the holder.
  auto clash = Agent::Create(AgentOptions("one"));
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(clash.status().message()),
              HasSubstr(absl::StrCat("in use by another farm-worker (pid ", getpid(), ")")));

  ASSERT_TRUE(hub_->Send(CancelMessage("x1", "l1"), one->worker_id()));
  ASSERT_TRUE(hub_->Send(CancelMessage("x2", "l2"), two->worker_id()));
  ASSERT_TRUE(WaitForResult(hub_.get(), "x1"));
  ASSERT_TRUE(WaitForResult(hub_.get(), "x2"));
}

TEST_F(AgentTest, ShutdownCancelsRunningTasksAndReportsThem) {
  auto agent = StartAgent(AgentOptions("shutdown", 2));
  ASSERT_NE(agent, nullptr);
  ASSERT_TRUE(WaitForHellos(hub_.get(), 1));
  ASSERT_TRUE(hub_->Send(TaskMessage("r", "lr", Sh("echo start; sleep 600"))));
  ASSERT_TRUE(WaitForLine(hub_.get(), "r", "start"));
  absl::Time start = absl::Now();
  agent->Shutdown(absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(agent->GetStatus().state, Agent::State::kStopped);
  Snapshot s = hub_->snapshot();
  ASSERT_EQ(s.Results("r").size(), 1u);
  EXPECT_EQ(s.Results("r")[0].status_code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_THAT(s.Results("r")[0].status_message(), HasSubstr("shutting down"));
  // Before that report it said it was draining (listing the task), so the scheduler runs the
  // step elsewhere and sends nothing more.
  int draining = s.IndexOf([](const farm::v1::WorkerMessage& m) {
    return m.has_heartbeat() && m.heartbeat().draining();
  });
  int result = s.IndexOf([](const farm::v1::WorkerMessage& m) { return m.has_result(); });
  ASSERT_GE(draining, 0);
  EXPECT_LT(draining, result);
  ASSERT_EQ(s.received[draining].msg.heartbeat().running_size(), 1);
  EXPECT_EQ(s.received[draining].msg.heartbeat().running(0).lease_id(), "lr");
  // The worker closed the stream itself, after the result.
  ASSERT_TRUE(hub_->WaitFor([](const Snapshot& s) { return !s.open[0]; }, kWait));
  EXPECT_TRUE(hub_->snapshot().closed_by_worker[0]);
}

TEST(AgentOptionsTest, BadOptionsAreRejectedClearly) {
  Agent::Options o;
  o.scheduler = "nohost";
  o.cache = "127.0.0.1:1";
  o.state_dir = "/nonexistent";
  auto a = Agent::Create(o);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("--scheduler \"nohost\": no port"));
  o.scheduler = "127.0.0.1:70000";
  EXPECT_THAT(std::string(Agent::Create(o).status().message()), HasSubstr("1 to 65535"));
  o.scheduler = "grpcs://sched:443";
  EXPECT_THAT(std::string(Agent::Create(o).status().message()), HasSubstr("TLS"));
  o.scheduler = "sched:7070";
  o.slots = 0;
  EXPECT_THAT(std::string(Agent::Create(o).status().message()), HasSubstr("slots"));
  o.slots = 1;
  o.scheduler = "127.0.0.1:7070";
  o.emulated_platforms = {"linux/sparc64"};  // no emulator is known for it
  absl::Status emu = Agent::Create(o).status();
  EXPECT_EQ(emu.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(emu.message()), HasSubstr("linux/sparc64"));
  EXPECT_OK(ParsePeerAddress("x", "[::1]:80"));
  EXPECT_OK(ParsePeerAddress("x", "grpc://10.0.0.1:9092"));
  EXPECT_OK(ParsePeerAddress("x", "unix:/run/farm.sock"));
  EXPECT_FALSE(ParsePeerAddress("x", "::1:80").ok());
}

}  // namespace
}  // namespace farm::worker::agent
