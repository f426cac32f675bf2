#include "scheduler/server/build_log.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"

namespace farm::scheduler::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

farm::v1::StoredBuild Stored(const std::string& id, farm::v1::BuildInfo::State state, int64_t order,
                             int64_t finished_at = 0) {
  farm::v1::StoredBuild b;
  b.mutable_request()->set_dockerfile("FROM scratch\n");
  b.mutable_request()->set_tenant("team-a");
  b.set_order(order);
  b.mutable_info()->set_build_id(id);
  b.mutable_info()->set_state(state);
  b.mutable_info()->set_tenant("team-a");
  b.mutable_info()->set_finished_unix_micros(finished_at);
  return b;
}

farm::v1::BuildStreamEvent Event(const std::string& id, int64_t seq, const std::string& text) {
  farm::v1::BuildStreamEvent e;
  e.set_build_id(id);
  e.set_seq(seq);
  e.mutable_event()->set_warning(text);
  return e;
}

// The seqs and texts Replay hands out.
std::vector<std::string> Replayed(BuildLog& log, const std::string& id, int64_t after) {
  std::vector<std::string> out;
  log.Replay(id, after, [&](const farm::v1::BuildStreamEvent& e) {
    EXPECT_EQ(e.build_id(), id);
    out.push_back(absl::StrCat(e.seq(), ":", e.event().warning()));
  });
  return out;
}

class BuildLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("build-log");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
  }

  std::unique_ptr<BuildLog> Open(int keep_events_of_builds = 1000) {
    BuildLog::Options o;
    o.dir = common::JoinPath(tmp_->path(), "builds");
    o.keep_events_of_builds = keep_events_of_builds;
    auto log = BuildLog::Open(std::move(o));
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  std::unique_ptr<common::TempDir> tmp_;
};

TEST_F(BuildLogTest, BuildsAndEventsSurviveAReopen) {
  {
    auto log = Open();
    ASSERT_TRUE(log->Add(Stored("b1", farm::v1::BuildInfo::QUEUED, 1), "req-1").ok());
    ASSERT_TRUE(log->Add(Stored("b2", farm::v1::BuildInfo::QUEUED, 2), "").ok());
    for (int i = 1; i <= 12; ++i) log->Append(Event("b1", i, absl::StrCat("e", i)));
    log->Append(Event("b2", 1, "other build"));
    farm::v1::StoredBuild running = Stored("b1", farm::v1::BuildInfo::RUNNING, 1);
    running.mutable_info()->set_steps_done(3);
    ASSERT_TRUE(log->Save(running, /*sync=*/false).ok());
    log->Flush();
  }
  auto log = Open();
  auto loaded = log->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 2u);
  const BuildLog::LoadedBuild& b1 = (*loaded)[0];
  EXPECT_EQ(b1.stored.info().build_id(), "b1");
  EXPECT_EQ(b1.stored.info().state(), farm::v1::BuildInfo::RUNNING);  // the last Save
  EXPECT_EQ(b1.stored.info().steps_done(), 3);
  EXPECT_EQ(b1.stored.request().dockerfile(), "FROM scratch\n");
  EXPECT_EQ(b1.stored.order(), 1);
  // Seqs sort numerically (10 after 9), so the last one is found after a reopen.
  EXPECT_EQ(b1.last_seq, 12);
  EXPECT_EQ((*loaded)[1].stored.info().build_id(), "b2");
  EXPECT_EQ((*loaded)[1].last_seq, 1);

  // Replay after any seq, in order, only the build's own events.
  EXPECT_THAT(Replayed(*log, "b1", 9), ElementsAre("10:e10", "11:e11", "12:e12"));
  EXPECT_EQ(Replayed(*log, "b1", 0).size(), 12u);
  EXPECT_TRUE(Replayed(*log, "b1", 12).empty());
  EXPECT_THAT(Replayed(*log, "b2", 0), ElementsAre("1:other build"));
  EXPECT_TRUE(Replayed(*log, "b", 0).empty());  // a prefix of ids is not a build

  // The request index.
  EXPECT_EQ(log->FindRequest("req-1"), "b1");
  EXPECT_EQ(log->FindRequest("req-2"), std::nullopt);
}

TEST_F(BuildLogTest, LastSeqComesFromTheRecordWhenEventsWereTrimmed) {
  auto log = Open(/*keep_events_of_builds=*/0);
  farm::v1::StoredBuild b = Stored("b1", farm::v1::BuildInfo::SUCCEEDED, 1, /*finished_at=*/5);
  b.mutable_info()->set_last_seq(7);
  ASSERT_TRUE(log->Add(b, "").ok());
  for (int i = 1; i <= 7; ++i) log->Append(Event("b1", i, "x"));
  log->AddFinished("b1");
  log->TrimEvents();
  EXPECT_TRUE(Replayed(*log, "b1", 0).empty());
  log.reset();
  log = Open();
  auto loaded = log->Load();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].last_seq, 7);
}

TEST_F(BuildLogTest, TrimKeepsTheEventsOfTheLastFinishedBuilds) {
  auto log = Open(/*keep_events_of_builds=*/2);
  for (const char* id : {"b1", "b2", "b3"}) {
    ASSERT_TRUE(log->Add(Stored(id, farm::v1::BuildInfo::SUCCEEDED, 1), "").ok());
    log->Append(Event(id, 1, id));
  }
  log->AddFinished("b1");
  log->AddFinished("b2");
  log->TrimEvents();  // two noted: nothing to trim
  EXPECT_EQ(Replayed(*log, "b1", 0).size(), 1u);
  log->AddFinished("b3");
  log->TrimEvents();  // three: the first noted goes
  EXPECT_TRUE(Replayed(*log, "b1", 0).empty());
  EXPECT_EQ(Replayed(*log, "b2", 0).size(), 1u);
  EXPECT_EQ(Replayed(*log, "b3", 0).size(), 1u);
}

TEST_F(BuildLogTest, LoadNotesFinishedBuildsOldestFinishFirst) {
  {
    auto log = Open();
    // Finished in the order b3, b1, b2 (ids and finish times disagree); b4 still runs.
    ASSERT_TRUE(log->Add(Stored("b1", farm::v1::BuildInfo::FAILED, 1, 200), "").ok());
    ASSERT_TRUE(log->Add(Stored("b2", farm::v1::BuildInfo::CANCELED, 2, 300), "").ok());
    ASSERT_TRUE(log->Add(Stored("b3", farm::v1::BuildInfo::SUCCEEDED, 3, 100), "").ok());
    ASSERT_TRUE(log->Add(Stored("b4", farm::v1::BuildInfo::RUNNING, 4), "").ok());
    for (const char* id : {"b1", "b2", "b3", "b4"}) log->Append(Event(id, 1, id));
  }
  auto log = Open(/*keep_events_of_builds=*/1);
  ASSERT_TRUE(log->Load().ok());
  log->TrimEvents();  // keeps the last to finish only
  EXPECT_TRUE(Replayed(*log, "b3", 0).empty());
  EXPECT_TRUE(Replayed(*log, "b1", 0).empty());
  EXPECT_EQ(Replayed(*log, "b2", 0).size(), 1u);
  EXPECT_EQ(Replayed(*log, "b4", 0).size(), 1u);  // not finished: never noted
}

TEST_F(BuildLogTest, SecondOpenIsRefused) {
  auto log = Open();
  BuildLog::Options o;
  o.dir = common::JoinPath(tmp_->path(), "builds");
  auto second = BuildLog::Open(std::move(o));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use by another farm-scheduler"));
}

TEST_F(BuildLogTest, CorruptRecordIsDataLoss) {
  std::string dir = common::JoinPath(tmp_->path(), "builds");
  {
    rocksdb::Options ro;
    ro.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(ro, dir, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "b/bad", "\xff\xff\xff not a proto").ok());
  }
  auto log = Open();
  auto loaded = log->Load();
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(loaded.status().message(), HasSubstr("b/bad"));
}

TEST(IsFinishedTest, OnlyTerminalStates) {
  EXPECT_FALSE(IsFinished(farm::v1::BuildInfo::QUEUED));
  EXPECT_FALSE(IsFinished(farm::v1::BuildInfo::RUNNING));
  EXPECT_TRUE(IsFinished(farm::v1::BuildInfo::SUCCEEDED));
  EXPECT_TRUE(IsFinished(farm::v1::BuildInfo::FAILED));
  EXPECT_TRUE(IsFinished(farm::v1::BuildInfo::CANCELED));
}

}  // namespace
}  // namespace farm::scheduler::server
