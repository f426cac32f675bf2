// Cgroup planning against fake cgroupfs trees (v2 delegation rules, v1 hierarchies). The real
// v1 limits are exercised in sandbox_test (this machine has cgroup v1).
#include "worker/sandbox/cgroups.h"

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::sandbox {
namespace {

using farm::worker::testing::WriteFile;

class CgroupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("cgroups-test");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    root_ = tmp_->path() + "/cg";
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::string root_;
};

TEST_F(CgroupsTest, NoLimitsNoCgroups) {
  auto plan = PlanCgroups({}, CgroupEnv{root_, "0::/x\n", 1, 2});
  ASSERT_OK(plan);
  EXPECT_TRUE(plan->empty());
}

TEST_F(CgroupsTest, V2MovesTheWorkerToALeafAndDelegates) {
  ASSERT_OK(WriteFile(root_ + "/svc/cgroup.controllers", "cpu io memory pids\n"));
  ASSERT_OK(WriteFile(root_ + "/svc/cgroup.procs", "4242\n"));
  ASSERT_OK(WriteFile(root_ + "/svc/cgroup.subtree_control", ""));
  auto plan = PlanCgroups({1 << 30, 100}, CgroupEnv{root_, "0::/svc\n", 4242, 2});
  ASSERT_OK(plan);
  ASSERT_EQ(plan->size(), 1u);
  const farm::v1::SandboxCgroup& cg = (*plan)[0];
  EXPECT_TRUE(cg.v2());
  EXPECT_EQ(cg.parent(), root_ + "/svc");
  EXPECT_EQ(cg.settings().at("memory.max"), "1073741824");
  EXPECT_EQ(cg.settings().at("memory.swap.max"), "0");
  EXPECT_EQ(cg.settings().at("pids.max"), "100");
  EXPECT_EQ(*common::ReadFile(root_ + "/svc/farm-worker/cgroup.procs"), "4242");
  EXPECT_EQ(*common::ReadFile(root_ + "/svc/cgroup.subtree_control"), "+memory +pids");

  // A run's cgroup: limits written (optional files skipped when absent), OOM seen.
  auto run = RunCgroup::Create(
      google::protobuf::RepeatedPtrField<farm::v1::SandboxCgroup>(plan->begin(), plan->end()),
      "run1");
  ASSERT_OK(run);
  EXPECT_EQ(*common::ReadFile(root_ + "/svc/run1/memory.max"), "1073741824");
  EXPECT_FALSE(common::PathExists(root_ + "/svc/run1/memory.swap.max"));
  ASSERT_OK(run->AddProcess(77));
  EXPECT_EQ(*common::ReadFile(root_ + "/svc/run1/cgroup.procs"), "77");
  EXPECT_FALSE(run->OomKilled());
  ASSERT_OK(
      WriteFile(root_ + "/svc/run1/memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"));
  EXPECT_TRUE(run->OomKilled());
}

TEST_F(CgroupsTest, V2RefusesSharedCgroupsAndMissingControllers) {
  ASSERT_OK(WriteFile(root_ + "/user/cgroup.controllers", "memory pids\n"));
  ASSERT_OK(WriteFile(root_ + "/user/cgroup.procs", "4242\n999\n"));
  absl::Status s = PlanCgroups({1 << 30, 0}, CgroupEnv{root_, "0::/user\n", 4242, 2}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("999"), std::string::npos) << s;

  ASSERT_OK(WriteFile(root_ + "/nomem/cgroup.controllers", "pids\n"));
  s = PlanCgroups({1 << 30, 0}, CgroupEnv{root_, "0::/nomem\n", 4242, 2}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(s.message()).find("Delegate=yes"), std::string::npos) << s;
}

TEST_F(CgroupsTest, V1UsesEachControllersHierarchy) {
  ASSERT_OK(common::MakeDirs(root_ + "/memory/job/7"));
  ASSERT_OK(common::MakeDirs(root_ + "/pids"));
  auto plan = PlanCgroups({1 << 20, 5},
                          CgroupEnv{root_, "9:pids:/\n4:memory:/job/7\n1:cpu,cpuacct:/\n", 1, 1});
  ASSERT_OK(plan);
  ASSERT_EQ(plan->size(), 2u);
  EXPECT_EQ((*plan)[0].parent(), root_ + "/memory/job/7");
  EXPECT_EQ((*plan)[0].settings().at("memory.limit_in_bytes"), "1048576");
  EXPECT_EQ((*plan)[1].parent(), root_ + "/pids");
  EXPECT_EQ((*plan)[1].settings().at("pids.max"), "5");
  EXPECT_EQ(PlanCgroups({0, 5}, CgroupEnv{root_ + "/none", "9:pids:/\n", 1, 1}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace farm::worker::sandbox
