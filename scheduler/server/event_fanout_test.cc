#include "scheduler/server/event_fanout.h"

#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::scheduler::server {
namespace {

using ::testing::ElementsAre;

// Keeps events in memory, as BuildLog keeps them in RocksDB.
class MemoryEventLog : public EventLog {
 public:
  void Append(const farm::v1::BuildStreamEvent& event) override {
    absl::MutexLock l(&mu_);
    events_[event.build_id()][event.seq()] = event;
  }
  void Replay(const std::string& build_id, int64_t after_seq,
              const std::function<void(const farm::v1::BuildStreamEvent&)>& fn) override {
    std::vector<farm::v1::BuildStreamEvent> kept;
    {
      absl::MutexLock l(&mu_);
      auto& events = events_[build_id];
      for (auto it = events.upper_bound(after_seq); it != events.end(); ++it) {
        kept.push_back(it->second);
      }
    }
    for (const auto& e : kept) fn(e);
  }
  int64_t count(const std::string& build_id) {
    absl::MutexLock l(&mu_);
    return static_cast<int64_t>(events_[build_id].size());
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::map<int64_t, farm::v1::BuildStreamEvent>> events_;
};

// One subscriber's view: the seqs it got, the messages of their warnings, its end.
struct Watcher {
  absl::Mutex mu;
  std::vector<int64_t> seqs;
  std::vector<std::string> texts;
  std::vector<absl::Status> ends;

  EventFanout::EventFn OnEvent() {
    return [this](const farm::v1::BuildStreamEvent& e) {
      absl::MutexLock l(&mu);
      seqs.push_back(e.seq());
      texts.push_back(e.event().warning());
    };
  }
  EventFanout::EndFn OnEnd() {
    return [this](const absl::Status& s) {
      absl::MutexLock l(&mu);
      ends.push_back(s);
    };
  }
};

farm::v1::BuildEvent Warning(const std::string& text) {
  farm::v1::BuildEvent e;
  e.set_warning(text);
  return e;
}

class EventFanoutTest : public ::testing::Test {
 protected:
  MemoryEventLog log_;
  std::atomic<bool> closing_{false};
};

TEST_F(EventFanoutTest, SubscriberIsReplayedThenGetsLiveEventsThenTheEnd) {
  EventFanout events("b1", /*last_seq=*/0, /*ended=*/false, &log_, &closing_);
  events.Publish(Warning("one"));
  events.Publish(Warning("two"));
  events.Publish(Warning("three"));
  EXPECT_EQ(events.last_seq(), 3);
  EXPECT_EQ(log_.count("b1"), 3);

  Watcher w;
  auto sub = events.Subscribe(/*after_seq=*/1, w.OnEvent(), w.OnEnd());
  EXPECT_THAT(w.seqs, ElementsAre(2, 3));  // replayed from the log, during Subscribe
  EXPECT_THAT(w.texts, ElementsAre("two", "three"));
  EXPECT_TRUE(w.ends.empty());
  events.Publish(Warning("four"));
  EXPECT_THAT(w.seqs, ElementsAre(2, 3, 4));  // live
  EXPECT_THAT(w.texts, ElementsAre("two", "three", "four"));
  EXPECT_FALSE(events.ended());
  events.End(absl::OkStatus());
  EXPECT_TRUE(events.ended());
  ASSERT_EQ(w.ends.size(), 1u);
  EXPECT_TRUE(w.ends[0].ok());

  // After the end: the whole log, then OK at once, and nothing live.
  Watcher late;
  auto late_sub = events.Subscribe(0, late.OnEvent(), late.OnEnd());
  EXPECT_THAT(late.seqs, ElementsAre(1, 2, 3, 4));
  ASSERT_EQ(late.ends.size(), 1u);
  EXPECT_TRUE(late.ends[0].ok());
  events.End(absl::OkStatus());
  EXPECT_EQ(w.ends.size(), 1u);  // ended subscriptions are forgotten
  EXPECT_EQ(late.ends.size(), 1u);
}

TEST_F(EventFanoutTest, NumberingContinuesAfterARestart) {
  // A build loaded after a restart: 41 events so far, not finished.
  EventFanout events("b1", /*last_seq=*/41, /*ended=*/false, &log_, &closing_);
  Watcher w;
  auto sub = events.Subscribe(41, w.OnEvent(), w.OnEnd());
  events.Publish(Warning("resumed"));
  EXPECT_THAT(w.seqs, ElementsAre(42));
  EXPECT_EQ(events.last_seq(), 42);
}

TEST_F(EventFanoutTest, FinishedBuildLoadedAfterARestartEndsOkAtOnce) {
  EventFanout before("b1", 0, false, &log_, &closing_);
  before.Publish(Warning("one"));
  before.Publish(Warning("two"));
  EventFanout after("b1", /*last_seq=*/2, /*ended=*/true, &log_, &closing_);
  Watcher w;
  auto sub = after.Subscribe(0, w.OnEvent(), w.OnEnd());
  EXPECT_THAT(w.texts, ElementsAre("one", "two"));
  ASSERT_EQ(w.ends.size(), 1u);
  EXPECT_TRUE(w.ends[0].ok());
}

TEST_F(EventFanoutTest, ShutdownEndsSubscriptionsUnavailable) {
  EventFanout events("b1", 0, false, &log_, &closing_);
  events.Publish(Warning("one"));
  Watcher live;
  auto sub = events.Subscribe(0, live.OnEvent(), live.OnEnd());

  // Closing: a new subscriber to the unfinished build is replayed, then told UNAVAILABLE at
  // once, and gets nothing live.
  closing_ = true;
  Watcher late;
  auto late_sub = events.Subscribe(0, late.OnEvent(), late.OnEnd());
  EXPECT_THAT(late.seqs, ElementsAre(1));
  ASSERT_EQ(late.ends.size(), 1u);
  EXPECT_EQ(late.ends[0].code(), absl::StatusCode::kUnavailable);
  events.Publish(Warning("two"));
  EXPECT_THAT(late.seqs, ElementsAre(1));
  EXPECT_THAT(live.seqs, ElementsAre(1, 2));  // subscribed before: still live

  events.End(absl::UnavailableError("shutting down"));
  ASSERT_EQ(live.ends.size(), 1u);
  EXPECT_EQ(live.ends[0].code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(events.ended());  // the build resumes after the restart
  events.Publish(Warning("three"));
  EXPECT_THAT(live.seqs, ElementsAre(1, 2));
}

TEST_F(EventFanoutTest, DestroyedSubscriptionGetsNothingMore) {
  EventFanout events("b1", 0, false, &log_, &closing_);
  Watcher w;
  auto sub = events.Subscribe(0, w.OnEvent(), /*on_end=*/nullptr);
  events.Publish(Warning("one"));
  sub.reset();
  events.Publish(Warning("two"));
  events.End(absl::OkStatus());
  EXPECT_THAT(w.seqs, ElementsAre(1));
  EXPECT_TRUE(w.ends.empty());
}

TEST_F(EventFanoutTest, ObserverSeesEachEventBeforeSubscribers) {
  EventFanout events("b1", 0, false, &log_, &closing_);
  std::vector<std::string> order;
  auto sub = events.Subscribe(
      0,
      [&](const farm::v1::BuildStreamEvent& e) { order.push_back("sub " + e.event().warning()); },
      nullptr);
  auto observe = [&](const farm::v1::BuildStreamEvent& e) {
    order.push_back("observe " + e.event().warning());
  };
  events.Publish(Warning("a"), observe);
  events.Publish(Warning("b"), observe);
  EXPECT_THAT(order, ElementsAre("observe a", "sub a", "observe b", "sub b"));
}

// Publishers on several threads while subscribers attach at different points: every subscriber
// sees each seq after its starting point exactly once, in order (replay and live join up).
TEST_F(EventFanoutTest, ConcurrentPublishersAndSubscribersSeeEverySeqOnceInOrder) {
  EventFanout events("b1", 0, false, &log_, &closing_);
  constexpr int kThreads = 4;
  constexpr int kEach = 250;
  std::vector<std::thread> publishers;
  for (int t = 0; t < kThreads; ++t) {
    publishers.emplace_back([&events] {
      for (int i = 0; i < kEach; ++i) events.Publish(Warning("x"));
    });
  }
  std::vector<std::unique_ptr<Watcher>> watchers;
  std::vector<int64_t> starts;
  std::vector<std::unique_ptr<EventFanout::Subscription>> subs;
  for (int i = 0; i < 20; ++i) {
    auto w = std::make_unique<Watcher>();
    int64_t after = events.last_seq() / 2;  // partly replayed, partly live
    subs.push_back(events.Subscribe(after, w->OnEvent(), w->OnEnd()));
    starts.push_back(after);
    watchers.push_back(std::move(w));
    std::this_thread::yield();
  }
  for (auto& t : publishers) t.join();
  events.End(absl::OkStatus());
  const int64_t total = kThreads * kEach;
  EXPECT_EQ(events.last_seq(), total);
  for (size_t i = 0; i < watchers.size(); ++i) {
    Watcher& w = *watchers[i];
    absl::MutexLock l(&w.mu);
    ASSERT_EQ(static_cast<int64_t>(w.seqs.size()), total - starts[i]) << "watcher " << i;
    for (size_t k = 0; k < w.seqs.size(); ++k) {
      ASSERT_EQ(w.seqs[k], starts[i] + 1 + static_cast<int64_t>(k)) << "watcher " << i;
    }
    ASSERT_EQ(w.ends.size(), 1u);
    EXPECT_TRUE(w.ends[0].ok());
  }
}

TEST(UpdateInfoTest, CountsKeyedStepsAndKeepsTheOutcomeAndLastSeq) {
  farm::v1::BuildInfo info;
  int64_t seq = 0;
  auto apply = [&](farm::v1::BuildEvent e) {
    farm::v1::BuildStreamEvent se;
    se.set_seq(++seq);
    *se.mutable_event() = std::move(e);
    UpdateInfo(se, &info);
  };
  auto vertex = [](const std::string& key, farm::v1::VertexUpdate::State state) {
    farm::v1::BuildEvent e;
    e.mutable_vertex()->set_key(key);
    e.mutable_vertex()->set_state(state);
    return e;
  };
  apply(vertex("k1", farm::v1::VertexUpdate::CACHED));
  apply(vertex("k2", farm::v1::VertexUpdate::DONE));
  apply(vertex("", farm::v1::VertexUpdate::DONE));  // not a step (e.g. "exporting to image")
  apply(vertex("k3", farm::v1::VertexUpdate::STARTED));
  apply(Warning("hm"));
  EXPECT_EQ(info.steps_done(), 2);
  EXPECT_EQ(info.steps_cached(), 1);
  EXPECT_FALSE(info.has_outcome());
  EXPECT_EQ(info.last_seq(), 5);
  farm::v1::BuildEvent done;
  done.mutable_outcome()->set_ok(true);
  done.mutable_outcome()->set_image_id("sha256:abc");
  apply(done);
  EXPECT_EQ(info.outcome().image_id(), "sha256:abc");
  EXPECT_EQ(info.last_seq(), 6);
}

}  // namespace
}  // namespace farm::scheduler::server
