#include "scheduler/server/cache_watch.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace farm::scheduler::server {

CacheWatch::CacheWatch(std::string address, Probe probe, Log log, Options options)
    : address_(std::move(address)),
      probe_(std::move(probe)),
      log_(std::move(log)),
      options_(options),
      thread_([this] { Run(); }) {}

CacheWatch::~CacheWatch() {
  stop_.Notify();
  thread_.join();
}

CacheWatch::Probe CacheWatch::ChannelProbe(std::shared_ptr<grpc::Channel> channel) {
  return [channel = std::move(channel)](absl::Time deadline) {
    return channel->WaitForConnected(absl::ToChronoTime(deadline));
  };
}

void CacheWatch::Run() {
  bool up = true;
  while (!stop_.HasBeenNotified()) {
    // Up to connect_timeout to connect, in short waits so that shutdown is not held up.
    bool now = false;
    absl::Time deadline = absl::Now() + options_.connect_timeout;
    while (!now && !stop_.HasBeenNotified() && absl::Now() < deadline) {
      now = probe_(absl::Now() + options_.poll);
    }
    if (stop_.HasBeenNotified()) break;
    reachable_.store(now, std::memory_order_relaxed);  // before the line that reports it
    if (now != up) {
      log_(now ? absl::StrCat("farm-cache at ", address_, " is reachable")
               : absl::StrCat("farm-cache at ", address_,
                              " is unreachable; builds wait for it (retrying)"));
    }
    up = now;
    stop_.WaitForNotificationWithTimeout(up ? options_.recheck_up : options_.recheck_down);
  }
}

}  // namespace farm::scheduler::server
