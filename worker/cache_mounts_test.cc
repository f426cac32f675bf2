// Cache mount sharing modes: shared users get one directory, private users a free instance,
// locked users wait their turn; new directories get their attributes and seed.
#include "worker/cache_mounts.h"

#include <sys/stat.h>

#include <thread>

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker {
namespace {

class CacheMountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("cache-mounts-test");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    mounts_ = std::make_unique<CacheMounts>(tmp_->path() + "/caches");
  }
  absl::StatusOr<std::unique_ptr<CacheMounts::Lease>> Get(const std::string& id,
                                                          const std::string& sharing) {
    return mounts_->Acquire(id, sharing, {0755, 0, 0, 0}, nullptr, nullptr);
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::unique_ptr<CacheMounts> mounts_;
};

TEST_F(CacheMountsTest, SharedUsersShareOneDirectory) {
  auto a = Get("go", "shared");
  auto b = Get("go", "");
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_EQ((*a)->path(), (*b)->path());
  auto other = Get("npm", "shared");
  ASSERT_OK(other);
  EXPECT_NE((*other)->path(), (*a)->path());
}

TEST_F(CacheMountsTest, PrivateUsersGetAFreeInstance) {
  auto a = Get("go", "private");
  auto b = Get("go", "private");
  ASSERT_OK(a);
  ASSERT_OK(b);
  EXPECT_NE((*a)->path(), (*b)->path());
  std::string first = (*a)->path();
  a->reset();
  auto c = Get("go", "private");  // the first instance is free again: reused
  ASSERT_OK(c);
  EXPECT_EQ((*c)->path(), first);
}

TEST_F(CacheMountsTest, LockedUsersWaitTheirTurn) {
  auto a = Get("apt", "locked");
  ASSERT_OK(a);
  absl::Notification acquired;
  std::thread t([&] {
    auto b = Get("apt", "locked");
    EXPECT_OK(b);
    acquired.Notify();
  });
  EXPECT_FALSE(acquired.WaitForNotificationWithTimeout(absl::Milliseconds(300)));
  a->reset();
  EXPECT_TRUE(acquired.WaitForNotificationWithTimeout(absl::Seconds(30)));
  t.join();
  absl::Notification cancel;
  auto held = Get("apt", "locked");
  ASSERT_OK(held);
  cancel.Notify();
  auto waiting = mounts_->Acquire("apt", "locked", {0755, 0, 0, 0}, nullptr, &cancel);
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kCancelled);
}

TEST_F(CacheMountsTest, NewDirectoriesGetAttributesAndSeed) {
  auto a = mounts_->Acquire(
      "seeded", "shared", {0700, 1000, 1000, 0},
      [](const std::string& dir) { return testing::WriteFile(dir + "/seed", "s"); }, nullptr);
  ASSERT_OK(a);
  struct stat st;
  ASSERT_EQ(stat((*a)->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(*common::ReadFile((*a)->path() + "/seed"), "s");
  EXPECT_EQ(Get("x", "exclusive").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace farm::worker
