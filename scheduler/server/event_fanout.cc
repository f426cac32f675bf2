#include "scheduler/server/event_fanout.h"

#include <utility>

namespace farm::scheduler::server {

void UpdateInfo(const farm::v1::BuildStreamEvent& event, farm::v1::BuildInfo* info) {
  info->set_last_seq(event.seq());
  const farm::v1::BuildEvent& e = event.event();
  if (e.has_outcome()) *info->mutable_outcome() = e.outcome();
  if (!e.has_vertex() || e.vertex().key().empty()) return;
  if (e.vertex().state() == farm::v1::VertexUpdate::CACHED) {
    info->set_steps_cached(info->steps_cached() + 1);
    info->set_steps_done(info->steps_done() + 1);
  } else if (e.vertex().state() == farm::v1::VertexUpdate::DONE) {
    info->set_steps_done(info->steps_done() + 1);
  }
}

EventFanout::EventFanout(std::string build_id, int64_t last_seq, bool ended, EventLog* log,
                         const std::atomic<bool>* closing)
    : build_id_(std::move(build_id)),
      log_(log),
      closing_(closing),
      last_seq_(last_seq),
      ended_(ended) {}

EventFanout::Subscription::~Subscription() {
  absl::MutexLock l(&fanout_->mu_);
  fanout_->subs_.erase(this);
}

void EventFanout::Publish(farm::v1::BuildEvent event, const EventFn& observe) {
  absl::MutexLock l(&mu_);
  farm::v1::BuildStreamEvent se;
  se.set_build_id(build_id_);
  se.set_seq(++last_seq_);
  *se.mutable_event() = std::move(event);
  log_->Append(se);
  if (observe) observe(se);
  for (Subscription* s : subs_) s->on_event_(se);
}

std::unique_ptr<EventFanout::Subscription> EventFanout::Subscribe(int64_t after_seq,
                                                                  EventFn on_event, EndFn on_end) {
  std::unique_ptr<Subscription> sub(new Subscription(this, std::move(on_event), std::move(on_end)));
  absl::MutexLock l(&mu_);
  // Replay what the log kept after `after_seq`, then go live (publishing waits for this lock).
  log_->Replay(build_id_, after_seq, sub->on_event_);
  if (ended_) {
    if (sub->on_end_) sub->on_end_(absl::OkStatus());
  } else if (closing_->load()) {
    if (sub->on_end_) sub->on_end_(absl::UnavailableError("farm-scheduler is shutting down"));
  } else {
    subs_.insert(sub.get());
  }
  return sub;
}

void EventFanout::End(const absl::Status& why) {
  absl::MutexLock l(&mu_);
  if (why.ok()) ended_ = true;
  for (Subscription* s : subs_) {
    if (s->on_end_) s->on_end_(why);
  }
  subs_.clear();
}

bool EventFanout::ended() const {
  absl::MutexLock l(&mu_);
  return ended_;
}

int64_t EventFanout::last_seq() const {
  absl::MutexLock l(&mu_);
  return last_seq_;
}

}  // namespace farm::scheduler::server
