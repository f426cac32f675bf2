// The farm-worker binary: its flags, what it refuses (bad flags, not root, a state directory
// that is unusable or in use), retrying unreachable peers instead of exiting, and a clean
// shutdown on SIGTERM that reports the cancelled step.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/agent/testing/fake_hub.h"
#include "worker/agent/testing/local_cache.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::agent {
namespace {

using testing::FakeWorkerHub;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::TaskMessage;

std::string Binary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/farm/worker/agent/farm-worker");
}

// A farm-worker process with its stderr collected as it comes.
class Process {
 public:
  // `uid` >= 0: drop to that uid (and gid) before exec.
  explicit Process(std::vector<std::string> args, int uid = -1) {
    // Everything the child needs is made before fork (no allocation after it).
    std::string bin = Binary();
    std::vector<char*> argv;
    argv.push_back(&bin[0]);
    for (std::string& a : args) argv.push_back(&a[0]);
    argv.push_back(nullptr);
    char* envp[] = {nullptr};
    // Opened as root: a dropped uid may not be able to walk to it, but can run it.
    int exe = open(bin.c_str(), O_RDONLY | O_CLOEXEC);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    int err[2];
    if (exe < 0 || devnull < 0 || pipe2(err, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(err[1], 2);
      dup2(devnull, 0);
      dup2(devnull, 1);
      if (uid >= 0 && (setgroups(0, nullptr) != 0 || setgid(uid) != 0 || setuid(uid) != 0)) {
        _exit(99);
      }
      fexecve(exe, argv.data(), envp);
      _exit(98);
    }
    close(exe);
    close(devnull);
    close(err[1]);
    reader_ = std::thread([this, fd = err[0]] {
      char buf[4096];
      ssize_t n;
      while ((n = read(fd, buf, sizeof(buf))) > 0) {
        absl::MutexLock lock(&mu_);
        stderr_.append(buf, static_cast<size_t>(n));
      }
      close(fd);
    });
  }
  ~Process() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      Wait(absl::Seconds(30));
    }
    if (reader_.joinable()) reader_.join();
    fprintf(stderr, "--- farm-worker %d stderr:\n%s", pid_, err().c_str());
  }
  pid_t pid() const { return pid_; }

  // The exit status (or -1 after `timeout`); a signal death is 128+N.
  int Wait(absl::Duration timeout) {
    absl::Time deadline = absl::Now() + timeout;
    while (true) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exited_ = true;
        if (reader_.joinable()) reader_.join();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (absl::Now() >= deadline) return -1;
      absl::SleepFor(absl::Milliseconds(10));  // polling for the exit, with a deadline
    }
  }
  std::string err() {
    absl::MutexLock lock(&mu_);
    return stderr_;
  }
  // Waits until stderr contains `needle` `count` times.
  bool WaitForErr(const std::string& needle, int count = 1) {
    absl::Time deadline = absl::Now() + absl::Seconds(60);
    while (absl::Now() < deadline) {
      std::string e = err();
      int n = 0;
      for (size_t at = e.find(needle); at != std::string::npos; at = e.find(needle, at + 1)) ++n;
      if (n >= count) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  std::thread reader_;
  absl::Mutex mu_;
  std::string stderr_;
};

class FarmWorkerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto t = common::TempDir::Create("farm-worker-test");
    ASSERT_OK(t);
    tmp_ = new common::TempDir(std::move(*t));
    auto cache = testing::LocalCache::Start(tmp_->path() + "/cache");
    ASSERT_OK(cache);
    cache_ = cache->release();
  }
  static void TearDownTestSuite() {
    delete cache_;
    delete tmp_;
  }
  void SetUp() override {
    FakeWorkerHub::Options ho;
    ho.welcome.set_heartbeat_interval_millis(100);
    hub_ = FakeWorkerHub::Start(ho);
    ASSERT_NE(hub_, nullptr);
  }
  std::vector<std::string> Flags(const std::string& dir) {
    return {"--scheduler", hub_->address(),          "--cache", cache_->address(),
            "--dir",       tmp_->path() + "/" + dir, "--slots", "2"};
  }
  static int DeadPort() {
    auto hub = FakeWorkerHub::Start({});
    int port = hub->port();
    hub->Stop();
    return port;
  }

  static common::TempDir* tmp_;
  static testing::LocalCache* cache_;
  std::unique_ptr<FakeWorkerHub> hub_;
};

common::TempDir* FarmWorkerTest::tmp_ = nullptr;
testing::LocalCache* FarmWorkerTest::cache_ = nullptr;

TEST_F(FarmWorkerTest, BadFlagsGetOneClearLineAndExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string error;
  };
  std::string cache = cache_->address();
  std::vector<Case> cases = {
      {{}, "--scheduler is required"},
      {{"--scheduler", "s:1"}, "--cache is required"},
      {{"--scheduler", "s:1", "--cache", cache}, "--dir is required"},
      {{"--scheduler", "sched", "--cache", cache, "--dir", "/tmp/x"},
       "--scheduler \"sched\": no port (want HOST:PORT)"},
      {{"--scheduler", "s:1", "--cache", "c:99999", "--dir", "/tmp/x"},
       "--cache \"c:99999\": the port must be a number from 1 to 65535"},
      {{"--scheduler", "s:1", "--cache", cache, "--dir", "/tmp/x", "--slots", "0"},
       "--slots must be from 1 to 1024"},
      {{"--scheduler", "s:1", "--cache", cache, "--dir", "/tmp/x", "--label", "novalue"},
       "--label \"novalue\": want KEY=VALUE"},
      {{"--scheduler", "s:1", "--cache", cache, "--dir", "/tmp/x", "--memory-limit", "lots"},
       "memory-limit"},
      {{"--scheduler", "s:1", "--cache", cache, "--dir", "/tmp/x", "--pids-limit", "-3"},
       "want a count >= 0"},
      {{"--scheduler", "s:1", "--cache", cache, "--dir", "/tmp/x", "--emulate", "bad plat"},
       "--emulate: invalid platform"},
      {{"--bogus"}, "bogus"},
      {{"--scheduler", "s:1", "--cache", cache, "--dir", "/tmp/x", "extra"},
       "unexpected argument \"extra\""},
  };
  for (const Case& c : cases) {
    Process p(c.args);
    EXPECT_EQ(p.Wait(absl::Seconds(30)), 2) << absl::StrJoin(c.args, " ");
    std::string err = p.err();
    EXPECT_THAT(err, StartsWith("farm-worker: ")) << err;
    EXPECT_THAT(err, HasSubstr(c.error)) << err;
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  }
  Process help({"--help"});
  EXPECT_EQ(help.Wait(absl::Seconds(30)), 0);
}

TEST_F(FarmWorkerTest, RefusesToRunWithoutRoot) {
  Process p(Flags("not-root"), 65534);
  EXPECT_EQ(p.Wait(absl::Seconds(30)), 1);
  EXPECT_EQ(p.err(),
            "farm-worker: must run as root (steps run in Linux namespaces on overlayfs)\n");
}

TEST_F(FarmWorkerTest, AnUnusableStateDirectoryIsAnError) {
  std::string file = tmp_->path() + "/a-file";
  ASSERT_OK(farm::worker::testing::WriteFile(file, "x"));
  std::vector<std::string> args = Flags("unused");
  args[5] = file;
  Process p(args);
  EXPECT_EQ(p.Wait(absl::Seconds(30)), 1);
  std::string err = p.err();
  EXPECT_THAT(err, HasSubstr(absl::StrCat("state directory ", file)));
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

TEST_F(FarmWorkerTest, SigtermCancelsTheRunningStepReportsItAndExitsZero) {
  Process worker(Flags("sigterm"));
  ASSERT_TRUE(hub_->WaitFor([](const auto& s) { return !s.hellos.empty(); }, absl::Seconds(60)))
      << worker.err();
  EXPECT_EQ(hub_->snapshot().hellos[0].slots(), 2);

  // A second worker on the same directory is refused, naming the first.
  Process clash(Flags("sigterm"));
  EXPECT_EQ(clash.Wait(absl::Seconds(30)), 1);
  EXPECT_THAT(clash.err(),
              HasSubstr(absl::StrCat("is in use by another farm-worker (pid ", worker.pid(), ")")));

  farm::v1::StepRequest r;
  r.set_description("RUN sleep");
  *r.add_parents() = cache_->base();
  for (const char* a : {"/bin/sh", "-c", "echo started; sleep 600"}) r.mutable_run()->add_args(a);
  r.mutable_run()->set_network("none");
  ASSERT_TRUE(hub_->Send(TaskMessage("t", "l", r)));
  ASSERT_TRUE(hub_->WaitFor([](const auto& s) { return !s.Logs("t").empty(); }, absl::Seconds(60)))
      << worker.err();
  absl::Time start = absl::Now();
  kill(worker.pid(), SIGTERM);
  EXPECT_EQ(worker.Wait(absl::Seconds(30)), 0) << worker.err();
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
  auto results = hub_->snapshot().Results("t");
  ASSERT_EQ(results.size(), 1u) << worker.err();
  EXPECT_EQ(results[0].status_code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_THAT(results[0].status_message(), HasSubstr("shutting down"));
  EXPECT_THAT(worker.err(), HasSubstr("SIGTERM"));
  EXPECT_THAT(worker.err(), HasSubstr("stopped"));
}

TEST_F(FarmWorkerTest, UnreachablePeersAreRetriedWithBackoffNotFatal) {
  std::vector<std::string> args = Flags("unreachable");
  args[1] = absl::StrCat("127.0.0.1:", DeadPort());
  Process worker(args);
  // Several attempts, each logged (1, 2, 4: the same error is not repeated every time).
  ASSERT_TRUE(worker.WaitForErr("retrying in", 3)) << worker.err();
  EXPECT_THAT(worker.err(), HasSubstr(absl::StrCat("scheduler ", args[1], " is unreachable")));
  kill(worker.pid(), SIGINT);
  EXPECT_EQ(worker.Wait(absl::Seconds(30)), 0) << worker.err();

  // farm-cache unreachable: the worker does not register with the scheduler until it is.
  args = Flags("no-cache");
  args[3] = absl::StrCat("127.0.0.1:", DeadPort());
  Process no_cache(args);
  ASSERT_TRUE(no_cache.WaitForErr("retrying in", 2)) << no_cache.err();
  EXPECT_THAT(no_cache.err(),
              HasSubstr(absl::StrCat("farm-cache at ", args[3], " is unreachable")));
  EXPECT_TRUE(hub_->snapshot().hellos.empty());
  kill(no_cache.pid(), SIGTERM);
  EXPECT_EQ(no_cache.Wait(absl::Seconds(30)), 0) << no_cache.err();
}

}  // namespace
}  // namespace farm::worker::agent
