#include "scheduler/dispatch/fair_queue.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

namespace farm::scheduler::dispatch {
namespace {

class FairQueueTest : public ::testing::Test {
 protected:
  QueueItem* Add(const std::string& tenant, int priority = 0) {
    items_.emplace_back();
    QueueItem* i = &items_.back();
    i->tenant = tenant;
    i->priority = priority;
    i->seq = ++seq_;
    q_.Push(i);
    return i;
  }
  // Serves one item: removes it and counts it running.
  QueueItem* Serve() {
    QueueItem* i = q_.Next();
    if (i != nullptr) {
      q_.Remove(i);
      q_.AddRunning(i->tenant, +1);
    }
    return i;
  }
  void Done(QueueItem* i) { q_.AddRunning(i->tenant, -1); }

  std::map<std::string, double> weights_;
  FairQueue q_{&weights_};
  std::deque<QueueItem> items_;
  uint64_t seq_ = 0;
};

TEST_F(FairQueueTest, FewestRunningFirst) {
  for (int i = 0; i < 10; ++i) Add("a");
  QueueItem* a1 = Serve();
  QueueItem* a2 = Serve();
  QueueItem* b = Add("b");
  EXPECT_EQ(Serve(), b);  // a runs 2, b none
  EXPECT_EQ(Serve()->tenant, "a");
  Done(a1);
  Done(a2);
  EXPECT_EQ(q_.Running("a"), 1);
  EXPECT_EQ(q_.size(), 7u);
}

TEST_F(FairQueueTest, ANewTenantGetsNoCreditForItsIdleTime) {
  // a and b alternate on one slot; c joins late and is not served three times in a row.
  for (int i = 0; i < 20; ++i) {
    Add("a");
    Add("b");
  }
  for (int i = 0; i < 10; ++i) Done(Serve());
  for (int i = 0; i < 20; ++i) Add("c");
  std::string order;
  for (int i = 0; i < 9; ++i) {
    QueueItem* it = Serve();
    order += it->tenant;
    Done(it);
  }
  EXPECT_EQ(order, "cabcabcab");
}

TEST_F(FairQueueTest, WithinATenantFrontThenPriorityThenFifo) {
  QueueItem* low = Add("a", -1);
  QueueItem* mid1 = Add("a", 0);
  QueueItem* mid2 = Add("a", 0);
  QueueItem* high = Add("a", 5);
  items_.emplace_back();
  QueueItem* requeued = &items_.back();
  requeued->tenant = "a";
  requeued->priority = -10;
  requeued->front = true;
  requeued->seq = ++seq_;
  q_.Push(requeued);
  std::vector<QueueItem*> order;
  while (QueueItem* i = Serve()) order.push_back(i);
  EXPECT_EQ(order, (std::vector<QueueItem*>{requeued, high, mid1, mid2, low}));
}

TEST_F(FairQueueTest, RemovedItemsComeBackInTheirPlace) {
  QueueItem* a1 = Add("a");
  QueueItem* a2 = Add("a");
  QueueItem* b1 = Add("b");
  q_.Remove(a1);
  EXPECT_EQ(q_.Next(), a2);
  q_.Remove(a2);
  EXPECT_EQ(q_.Next(), b1);
  q_.Push(a2);
  q_.Push(a1);
  EXPECT_EQ(q_.Next(), a1);
  EXPECT_EQ(q_.size(), 3u);
  q_.Remove(b1);
  q_.Remove(b1);  // no-op
  EXPECT_EQ(q_.size(), 2u);
}

TEST_F(FairQueueTest, WeightsScaleTheShare) {
  weights_["big"] = 2;
  for (int i = 0; i < 10; ++i) {
    Add("big");
    Add("small");
  }
  // Four slots held: big gets two for every one of small's.
  std::string held;
  for (int i = 0; i < 3; ++i) held += Serve()->tenant[0];
  std::sort(held.begin(), held.end());
  EXPECT_EQ(held, "bbs");
}

}  // namespace
}  // namespace farm::scheduler::dispatch
