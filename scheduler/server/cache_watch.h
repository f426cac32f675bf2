// CacheWatch tells the operator when farm-cache becomes unreachable and when it is back. It
// exists because the scheduler keeps running while the cache is down (builds fail their cache
// calls after the clients' retries), so nothing else would say why builds are stuck. It logs,
// and says what its last check found (reachable(): farm-scheduler's readiness); nothing waits
// on it.
//
//   CacheWatch watch("cache:9092", CacheWatch::ChannelProbe(channel),
//                    [](const std::string& line) { LogLine(line); });
//   ...  // destroying `watch` stops its thread within one probe wait (Options::poll)
#ifndef FARM_SCHEDULER_SERVER_CACHE_WATCH_H_
#define FARM_SCHEDULER_SERVER_CACHE_WATCH_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
}  // namespace grpc

namespace farm::scheduler::server {

class CacheWatch {
 public:
  // Waits until the cache is connected (true) or `deadline` passes (false). Called on the
  // watch's own thread only, one call at a time.
  using Probe = std::function<bool(absl::Time deadline)>;
  // Receives one line per change, e.g. "farm-cache at HOST:PORT is reachable". Called on the
  // watch's thread.
  using Log = std::function<void(const std::string& line)>;

  struct Options {
    // How long one check tries to connect before calling the cache unreachable.
    absl::Duration connect_timeout = absl::Seconds(5);
    // The longest single Probe wait: how soon a check notices it is being stopped.
    absl::Duration poll = absl::Milliseconds(200);
    // Time between checks while the cache is reachable, and while it is not.
    absl::Duration recheck_up = absl::Seconds(10);
    absl::Duration recheck_down = absl::Seconds(2);
  };

  // Starts checking at once, on a thread of its own. The cache is presumed reachable at first,
  // so a reachable cache is never reported and an unreachable one is reported on the first
  // check; after that every change is reported once.
  CacheWatch(std::string address, Probe probe, Log log, Options options);
  CacheWatch(std::string address, Probe probe, Log log)
      : CacheWatch(std::move(address), std::move(probe), std::move(log), Options()) {}
  // Stops the thread and joins it.
  ~CacheWatch();
  CacheWatch(const CacheWatch&) = delete;
  CacheWatch& operator=(const CacheWatch&) = delete;

  // True once a check found the cache reachable, until a check finds it not (false before the
  // first check has finished). Thread-safe, lock-free.
  bool reachable() const { return reachable_.load(std::memory_order_relaxed); }

  // A Probe over a gRPC channel: WaitForConnected (which also makes an idle channel connect).
  static Probe ChannelProbe(std::shared_ptr<grpc::Channel> channel);

 private:
  void Run();

  const std::string address_;
  const Probe probe_;
  const Log log_;
  const Options options_;
  std::atomic<bool> reachable_{false};
  absl::Notification stop_;
  std::thread thread_;  // last: started once everything it reads is constructed
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_CACHE_WATCH_H_
