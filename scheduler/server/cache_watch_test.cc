// CacheWatch: what it reports and when, with a fake probe the test switches between reachable
// and unreachable; and the gRPC channel probe against a real server on a free port.
#include "scheduler/server/cache_watch.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace farm::scheduler::server {
namespace {

constexpr char kUnreachable[] =
    "farm-cache at cache:9092 is unreachable; builds wait for it (retrying)";
constexpr char kReachable[] = "farm-cache at cache:9092 is reachable";

// A cache the test turns on and off. Probes block until it is reachable or their deadline,
// like WaitForConnected; every log line and probe is recorded.
class FakeCache {
 public:
  explicit FakeCache(bool reachable) : reachable_(reachable) {}

  CacheWatch::Probe Probe() {
    return [this](absl::Time deadline) {
      absl::MutexLock l(&mu_);
      ++probes_;
      mu_.AwaitWithDeadline(absl::Condition(&reachable_), deadline);
      return reachable_;
    };
  }
  CacheWatch::Log Log() {
    return [this](const std::string& line) {
      absl::MutexLock l(&mu_);
      lines_.push_back(line);
    };
  }

  void Set(bool reachable) {
    absl::MutexLock l(&mu_);
    reachable_ = reachable;
  }

  // Waits (up to 10 s) until `n` lines were logged; returns all lines.
  std::vector<std::string> WaitForLines(size_t n) {
    absl::MutexLock l(&mu_);
    auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return lines_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
    return lines_;
  }

  // Waits (up to 10 s) until `n` more probes have started; returns the lines logged so far.
  std::vector<std::string> WaitForMoreProbes(int n) {
    absl::MutexLock l(&mu_);
    const int target = probes_ + n;
    auto enough = [this, target]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return probes_ >= target; };
    EXPECT_TRUE(mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10)));
    return lines_;
  }

 private:
  absl::Mutex mu_;
  bool reachable_ ABSL_GUARDED_BY(mu_);
  int probes_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// Short waits so that a test sees many checks quickly.
CacheWatch::Options Fast() {
  CacheWatch::Options o;
  o.connect_timeout = absl::Milliseconds(20);
  o.poll = absl::Milliseconds(5);
  o.recheck_up = absl::Milliseconds(1);
  o.recheck_down = absl::Milliseconds(1);
  return o;
}

TEST(CacheWatchTest, AReachableCacheIsNeverReported) {
  FakeCache cache(/*reachable=*/true);
  CacheWatch watch("cache:9092", cache.Probe(), cache.Log(), Fast());
  EXPECT_EQ(cache.WaitForMoreProbes(5), std::vector<std::string>{});
}

TEST(CacheWatchTest, UnreachableAtStartIsReportedOnceThenItsReturn) {
  FakeCache cache(/*reachable=*/false);
  CacheWatch watch("cache:9092", cache.Probe(), cache.Log(), Fast());
  EXPECT_EQ(cache.WaitForLines(1), std::vector<std::string>{kUnreachable});
  // Further failed checks say nothing more.
  EXPECT_EQ(cache.WaitForMoreProbes(5), std::vector<std::string>{kUnreachable});
  cache.Set(true);
  EXPECT_EQ(cache.WaitForLines(2), (std::vector<std::string>{kUnreachable, kReachable}));
  EXPECT_EQ(cache.WaitForMoreProbes(5), (std::vector<std::string>{kUnreachable, kReachable}));
}

TEST(CacheWatchTest, EveryChangeIsReportedOnce) {
  FakeCache cache(/*reachable=*/true);
  CacheWatch watch("cache:9092", cache.Probe(), cache.Log(), Fast());
  cache.WaitForMoreProbes(2);
  cache.Set(false);
  EXPECT_EQ(cache.WaitForLines(1), std::vector<std::string>{kUnreachable});
  cache.Set(true);
  EXPECT_EQ(cache.WaitForLines(2), (std::vector<std::string>{kUnreachable, kReachable}));
  cache.Set(false);
  EXPECT_EQ(cache.WaitForLines(3),
            (std::vector<std::string>{kUnreachable, kReachable, kUnreachable}));
}

TEST(CacheWatchTest, ReachableFollowsTheLastCheck) {
  FakeCache cache(/*reachable=*/false);
  CacheWatch watch("cache:9092", cache.Probe(), cache.Log(), Fast());
  EXPECT_FALSE(watch.reachable());  // nothing found yet, or found unreachable
  cache.WaitForLines(1);
  EXPECT_FALSE(watch.reachable());
  cache.Set(true);
  cache.WaitForLines(2);
  cache.WaitForMoreProbes(2);  // the check that logged it has stored it
  EXPECT_TRUE(watch.reachable());
  cache.Set(false);
  cache.WaitForLines(3);
  cache.WaitForMoreProbes(2);
  EXPECT_FALSE(watch.reachable());
}

TEST(CacheWatchTest, StopsWhileWaitingToRecheckOrToConnect) {
  // With hour-long waits the destructor must not wait them out: this test finishing (within
  // the test timeout) is the assertion.
  CacheWatch::Options slow;
  slow.connect_timeout = absl::Hours(1);
  slow.poll = absl::Milliseconds(50);
  slow.recheck_up = absl::Hours(1);
  slow.recheck_down = absl::Hours(1);
  {
    FakeCache up(/*reachable=*/true);
    CacheWatch watch("cache:9092", up.Probe(), up.Log(), slow);
    up.WaitForMoreProbes(1);  // now waiting an hour to recheck
  }
  {
    FakeCache down(/*reachable=*/false);
    CacheWatch watch("cache:9092", down.Probe(), down.Log(), slow);
    down.WaitForMoreProbes(2);  // now inside an hour-long connect attempt
  }
}

TEST(ChannelProbeTest, ConnectsToALiveServerAndTimesOutOnADeadAddress) {
  // A server needs a service to start; one that answers every call UNIMPLEMENTED will do.
  grpc::CallbackGenericService unimplemented;
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(&unimplemented);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_TRUE(server != nullptr);
  ASSERT_NE(port, 0);
  CacheWatch::Probe live = CacheWatch::ChannelProbe(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  EXPECT_TRUE(live(absl::Now() + absl::Seconds(10)));

  // Nothing listens on port 1 (farm_scheduler_test.sh relies on the same).
  CacheWatch::Probe dead = CacheWatch::ChannelProbe(
      grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  EXPECT_FALSE(dead(absl::Now() + absl::Milliseconds(300)));
}

}  // namespace
}  // namespace farm::scheduler::server
