#include "worker/agent/outbox.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

farm::v1::TaskResult Result(const std::string& task, const std::string& lease) {
  farm::v1::TaskResult r;
  r.set_task_id(task);
  r.set_lease_id(lease);
  return r;
}

// Drains the outbox into one readable line per message.
std::vector<std::string> Drain(Outbox& outbox) {
  std::vector<std::string> out;
  while (!outbox.empty()) {
    farm::v1::WorkerMessage m = outbox.Pop().msg;
    if (m.has_log()) {
      out.push_back(m.log().task_id() + "/" + m.log().lease_id() +
                    (m.log().stderr() ? " err: " : " out: ") + m.log().line());
    } else if (m.has_result()) {
      out.push_back(m.result().task_id() + "/" + m.result().lease_id() + " result");
    } else {
      out.push_back("other");
    }
  }
  return out;
}

TEST(OutboxTest, KeepsMessagesInOrder) {
  Outbox outbox(1 << 20);
  outbox.AddLog("t1", "l1", "one", false);
  outbox.AddLog("t2", "l2", "two", true);
  farm::v1::WorkerMessage hb;
  hb.mutable_heartbeat()->set_draining(true);
  outbox.AddMessage(hb);
  outbox.AddResult(Result("t1", "l1"));
  EXPECT_EQ(outbox.size(), 4);
  EXPECT_EQ(outbox.results(), 1);
  EXPECT_THAT(Drain(outbox),
              ElementsAre("t1/l1 out: one", "t2/l2 err: two", "other", "t1/l1 result"));
  EXPECT_EQ(outbox.log_bytes(), 0);
}

TEST(OutboxTest, LinesBeyondTheBudgetAreDroppedAndCountedPerTask) {
  // Room for exactly two lines of 36 bytes (36 + 64 overhead = 100 each).
  Outbox outbox(200);
  const std::string line(36, 'x');
  outbox.AddLog("t", "l", line, false);
  outbox.AddLog("t", "l", line, false);
  EXPECT_EQ(outbox.log_bytes(), 200);
  outbox.AddLog("t", "l", line, false);
  outbox.AddLog("t", "l", line, false);
  outbox.AddLog("u", "m", line, false);
  EXPECT_EQ(outbox.lines_dropped(), 3);
  EXPECT_EQ(outbox.size(), 2);
  EXPECT_EQ(outbox.log_bytes(), 200);
}

TEST(OutboxTest, TheNextKeptLineSaysHowManyWereDropped) {
  Outbox outbox(200);
  const std::string line(36, 'x');
  outbox.AddLog("t", "l", line, false);
  outbox.AddLog("t", "l", line, false);
  outbox.AddLog("t", "l", "lost 1", false);
  outbox.AddLog("t", "l", "lost 2", false);
  // Room again: the notice comes first, on stderr, then the line.
  outbox.Pop();
  outbox.Pop();
  outbox.AddLog("t", "l", "kept", false);
  std::vector<std::string> got = Drain(outbox);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[0], HasSubstr("t/l err: farm-worker: 2 lines of output dropped here"));
  EXPECT_EQ(got[1], "t/l out: kept");
  EXPECT_EQ(outbox.lines_dropped(), 2);  // a total: the notice does not reset it
}

TEST(OutboxTest, AResultCarriesItsDroppedNoticeEvenOverTheBudget) {
  Outbox outbox(100);
  outbox.AddLog("t", "l", std::string(36, 'x'), false);  // fills it
  outbox.AddLog("t", "l", "lost", false);
  outbox.AddLog("u", "m", "lost too", false);
  outbox.AddResult(Result("t", "l"));
  EXPECT_THAT(Drain(outbox),
              ElementsAre("t/l out: " + std::string(36, 'x'),
                          "t/l err: farm-worker: 1 line of output dropped here (the scheduler "
                          "was unreachable or too slow)",
                          "t/l result"));
  // u's drop is still pending: noticed with u's next kept line, not with t's.
  outbox.AddLog("u", "m", "back", false);
  EXPECT_THAT(Drain(outbox),
              ElementsAre(HasSubstr("u/m err: farm-worker: 1 line"), "u/m out: back"));
}

TEST(OutboxTest, WhatCouldNotBeSentGoesBackToTheFront) {
  Outbox outbox(1000);
  outbox.AddLog("t", "l", "first", false);
  outbox.AddLog("t", "l", "second", false);
  int64_t before = outbox.log_bytes();
  Outbox::Entry e = outbox.Pop();
  EXPECT_EQ(outbox.log_bytes(), before - e.log_bytes);
  outbox.PutBack(std::move(e));
  EXPECT_EQ(outbox.log_bytes(), before);
  EXPECT_THAT(Drain(outbox), ElementsAre("t/l out: first", "t/l out: second"));
}

TEST(OutboxTest, FinishedTasksAreThoseWhoseResultsWait) {
  Outbox outbox(1000);
  EXPECT_THAT(outbox.FinishedTasks(), IsEmpty());
  outbox.AddLog("a", "la", "x", false);
  outbox.AddResult(Result("a", "la"));
  outbox.AddResult(Result("b", "lb"));
  std::vector<farm::v1::RunningTask> f = outbox.FinishedTasks();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].task_id(), "a");
  EXPECT_EQ(f[0].lease_id(), "la");
  EXPECT_EQ(f[1].task_id(), "b");
  EXPECT_EQ(outbox.results(), 2);
}

}  // namespace
}  // namespace farm::worker::agent
