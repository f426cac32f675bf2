#include "scheduler/server/admission.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::scheduler::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Pops everything, in the order the queue hands builds out.
std::vector<std::string> Drain(TenantQueue& q) {
  std::vector<std::string> out;
  while (std::optional<std::string> id = q.Next()) out.push_back(*id);
  return out;
}

TEST(TenantQueueTest, EmptyQueueHasNothingNext) {
  TenantQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.Next(), std::nullopt);
}

TEST(TenantQueueTest, RoundRobinOverTenantsInNameOrder) {
  TenantQueue q;
  int64_t order = 0;
  // The big tenant submits five, then the small one and a third tenant one each.
  for (int i = 1; i <= 5; ++i) q.Push({"big-" + std::to_string(i), "big", 0, ++order});
  q.Push({"small-1", "small", 0, ++order});
  q.Push({"mid-1", "mid", 0, ++order});
  EXPECT_EQ(q.size(), 7);
  EXPECT_EQ(q.size("big"), 5);
  EXPECT_EQ(q.size("small"), 1);
  EXPECT_EQ(q.size("nobody"), 0);
  // Each turn goes to the next tenant (by name) after the one served last; a tenant with
  // nothing left drops out of the rotation. FIFO within a tenant.
  EXPECT_THAT(Drain(q),
              ElementsAre("big-1", "mid-1", "small-1", "big-2", "big-3", "big-4", "big-5"));
  EXPECT_TRUE(q.empty());
}

TEST(TenantQueueTest, RotationContinuesAfterTheTenantServedLast) {
  TenantQueue q;
  q.Push({"a-1", "a", 0, 1});
  q.Push({"b-1", "b", 0, 2});
  EXPECT_EQ(q.Next(), "a-1");
  // "a" was served last: its new build waits until "b" and "c" have had their turns.
  q.Push({"a-2", "a", 0, 3});
  q.Push({"c-1", "c", 0, 4});
  EXPECT_THAT(Drain(q), ElementsAre("b-1", "c-1", "a-2"));
}

TEST(TenantQueueTest, TheEmptyTenantTakesItsTurnToo) {
  TenantQueue q;
  q.Push({"anon-1", "", 0, 1});
  q.Push({"anon-2", "", 0, 2});
  q.Push({"t-1", "t", 0, 3});
  // The rotation starts after "" (as if the empty tenant had just been served), so "t" goes
  // first.
  EXPECT_THAT(Drain(q), ElementsAre("t-1", "anon-1", "anon-2"));
}

TEST(TenantQueueTest, HigherPriorityFirstThenOldestWithinATenant) {
  TenantQueue q;
  q.Push({"low-old", "t", 0, 1});
  q.Push({"high-new", "t", 5, 4});
  q.Push({"high-old", "t", 5, 2});
  q.Push({"mid", "t", 1, 3});
  q.Push({"negative", "t", -1, 0});
  EXPECT_THAT(Drain(q), ElementsAre("high-old", "high-new", "mid", "low-old", "negative"));
}

TEST(TenantQueueTest, PriorityDoesNotCrossTenants) {
  TenantQueue q;
  q.Push({"a-urgent", "a", 9, 1});
  q.Push({"a-urgent-2", "a", 9, 2});
  q.Push({"b-normal", "b", 0, 3});
  // b's turn comes between a's builds whatever their priority.
  EXPECT_THAT(Drain(q), ElementsAre("a-urgent", "b-normal", "a-urgent-2"));
}

TEST(TenantQueueTest, RemoveTakesABuildOutOfTheRotation) {
  TenantQueue q;
  q.Push({"a-1", "a", 0, 1});
  q.Push({"b-1", "b", 0, 2});
  q.Push({"b-2", "b", 0, 3});
  EXPECT_TRUE(q.Remove("a-1"));
  EXPECT_FALSE(q.Remove("a-1"));
  EXPECT_FALSE(q.Remove("never-queued"));
  EXPECT_EQ(q.size(), 2);
  EXPECT_EQ(q.size("a"), 0);
  EXPECT_TRUE(q.Remove("b-2"));
  EXPECT_THAT(Drain(q), ElementsAre("b-1"));
  // A popped build is no longer removable.
  q.Push({"c-1", "c", 0, 4});
  EXPECT_EQ(q.Next(), "c-1");
  EXPECT_FALSE(q.Remove("c-1"));
  EXPECT_EQ(q.size(), 0);
}

TEST(AdmissionTest, BoundedQueue) {
  Admission a(/*max_active=*/1, /*max_queued=*/2);
  EXPECT_TRUE(a.CheckRoom().ok());
  a.Push({"b1", "t", 0, 1});
  EXPECT_TRUE(a.CheckRoom().ok());
  a.Push({"b2", "t", 0, 2});
  absl::Status full = a.CheckRoom();
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(full.message(), HasSubstr("the build queue is full (2 builds waiting)"));
  // Push itself is not bounded (builds queued again after a restart).
  a.Push({"b3", "t", 0, 3});
  EXPECT_EQ(a.queued(), 3);
  // Starting one makes room.
  EXPECT_EQ(a.Start(), "b1");
  EXPECT_EQ(a.queued(), 2);
  EXPECT_FALSE(a.CheckRoom().ok());
  EXPECT_TRUE(a.Remove("b3"));
  EXPECT_TRUE(a.CheckRoom().ok());
}

TEST(AdmissionTest, AtMostMaxActiveRun) {
  Admission a(/*max_active=*/2, /*max_queued=*/100);
  for (int i = 1; i <= 4; ++i) a.Push({"b" + std::to_string(i), "t", 0, i});
  EXPECT_EQ(a.Start(), "b1");
  EXPECT_EQ(a.Start(), "b2");
  EXPECT_EQ(a.Start(), std::nullopt);  // two run
  EXPECT_EQ(a.active(), 2);
  EXPECT_EQ(a.queued(), 2);
  a.Done();
  EXPECT_EQ(a.Start(), "b3");
  EXPECT_EQ(a.Start(), std::nullopt);
  a.Done();
  a.Done();
  EXPECT_EQ(a.Start(), "b4");
  EXPECT_EQ(a.Start(), std::nullopt);  // nothing waits
  EXPECT_EQ(a.active(), 1);
  EXPECT_EQ(a.queued(), 0);
}

}  // namespace
}  // namespace farm::scheduler::server
