// EventFanout: one build's progress events, numbered and handed to everyone watching the build.
// A subscriber attaches from any sequence number: it is replayed what the EventLog kept after
// that number, then gets new events live, then one end status: OK once the build has finished,
// UNAVAILABLE when farm-scheduler shuts down first (the build goes on after the restart; the
// client reattaches after the last seq it saw).
//
// Publishing, replaying and attaching happen under one lock per build, so a subscriber sees
// every seq once, in order, with no gap between the replay and the live events.
//
//   EventFanout events(build_id, /*last_seq=*/0, /*ended=*/false, &log, &closing);
//   auto sub = events.Subscribe(/*after_seq=*/0, on_event, on_end);
//   events.Publish(event, [&](const farm::v1::BuildStreamEvent& e) { UpdateInfo(e, &info); });
//   events.End(absl::OkStatus());  // the build finished
//
// BuildManager keeps one EventFanout per build; BuildLog is its EventLog.
#ifndef FARM_SCHEDULER_SERVER_EVENT_FANOUT_H_
#define FARM_SCHEDULER_SERVER_EVENT_FANOUT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "farm/v1/scheduler.pb.h"

namespace farm::scheduler::server {

// Where builds' events are kept so that subscribers can be replayed what they missed.
// Implementations are thread-safe (calls for different builds may run concurrently).
class EventLog {
 public:
  virtual ~EventLog() = default;
  // Keeps one event (its build id, seq and event). Best effort: an event that cannot be
  // written is still delivered live; only a later replay misses it. EventFanout calls it
  // under the build's lock, in seq order.
  virtual void Append(const farm::v1::BuildStreamEvent& event) = 0;
  // Calls `fn` with each kept event of `build_id` whose seq is after `after_seq`, in seq order.
  virtual void Replay(const std::string& build_id, int64_t after_seq,
                      const std::function<void(const farm::v1::BuildStreamEvent&)>& fn) = 0;
};

// What an event changes in its build's BuildInfo: last_seq, the outcome, and the step counters
// (a step is a vertex with a cache key: CACHED counts as done and cached, DONE as done).
void UpdateInfo(const farm::v1::BuildStreamEvent& event, farm::v1::BuildInfo* info);

class EventFanout {
 public:
  using EventFn = std::function<void(const farm::v1::BuildStreamEvent&)>;
  using EndFn = std::function<void(const absl::Status&)>;

  // `last_seq`: the seq of the build's last event so far (0 for a new build); the next one
  // published gets last_seq + 1. `ended`: the build finished before (loaded after a restart).
  // `log` keeps the events. `closing`, once true, ends a new subscription to an unfinished
  // build right after its replay with UNAVAILABLE (farm-scheduler is shutting down). Both are
  // not owned and must outlive the fan-out.
  EventFanout(std::string build_id, int64_t last_seq, bool ended, EventLog* log,
              const std::atomic<bool>* closing);
  EventFanout(const EventFanout&) = delete;
  EventFanout& operator=(const EventFanout&) = delete;

  // A live subscription. Destroying it stops the calls (it waits for one in progress). It
  // must not outlive its EventFanout.
  class Subscription {
   public:
    ~Subscription();

   private:
    friend class EventFanout;
    Subscription(EventFanout* fanout, EventFn on_event, EndFn on_end)
        : fanout_(fanout), on_event_(std::move(on_event)), on_end_(std::move(on_end)) {}
    EventFanout* const fanout_;
    const EventFn on_event_;
    const EndFn on_end_;  // may be null
  };

  // Gives `event` the next seq, keeps it in the log, calls `observe` with it (may be null; e.g.
  // to count it in the build's info) and hands it to every live subscriber, all under the
  // build's lock. Thread-safe.
  void Publish(farm::v1::BuildEvent event, const EventFn& observe = nullptr);

  // Calls `on_event` with every kept event after `after_seq`, then: if the build has ended,
  // `on_end(OK)`; if closing, `on_end(UNAVAILABLE)`; else the subscription stays live (new
  // events, then the end). Both callbacks run under the build's lock (from Subscribe itself or
  // from the threads that publish and end), never concurrently for one subscription, and must
  // not block or call back into the fan-out. `on_end` may be null. Thread-safe.
  std::unique_ptr<Subscription> Subscribe(int64_t after_seq, EventFn on_event, EndFn on_end);

  // Ends every live subscription with `why` and forgets them. OK means the build finished:
  // later subscribers get their replay and then OK at once. Thread-safe.
  void End(const absl::Status& why);

  bool ended() const;
  int64_t last_seq() const;

 private:
  const std::string build_id_;
  EventLog* const log_;
  const std::atomic<bool>* const closing_;

  mutable absl::Mutex mu_;  // serializes publishing, ending and subscription changes
  int64_t last_seq_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_);
  std::set<Subscription*> subs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_EVENT_FANOUT_H_
