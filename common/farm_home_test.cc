#include "common/farm_home.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "common/fs.h"
#include "gtest/gtest.h"

namespace farm::common {
namespace {

TEST(FarmHomeTest, EnvOverridesAndIsCreated) {
  auto tmp = TempDir::Create("farm-home");
  ASSERT_TRUE(tmp.ok());
  std::string home = JoinPath(tmp->path(), "h");
  setenv("FARM_HOME", home.c_str(), 1);
  auto got = FarmHome();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, home);
  EXPECT_TRUE(PathExists(home));
  unsetenv("FARM_HOME");
  setenv("HOME", tmp->path().c_str(), 1);
  EXPECT_EQ(*FarmHome(), JoinPath(tmp->path(), ".local/share/farm"));
}

TEST(FarmHomeTest, SecondProcessWaitsThenTimesOut) {
  auto tmp = TempDir::Create("farm-home");
  ASSERT_TRUE(tmp.ok());
  auto lock = HomeLock::Acquire(tmp->path(), absl::Seconds(1));
  ASSERT_TRUE(lock.ok()) << lock.status();
  pid_t child = fork();
  if (child == 0) {
    // flock locks belong to the open file description: the child opens its own.
    std::string msg;
    auto second = HomeLock::Acquire(tmp->path(), absl::Milliseconds(100),
                                    [&msg](const std::string& m) { msg = m; });
    bool ok = !second.ok() && second.status().code() == absl::StatusCode::kDeadlineExceeded &&
              msg.find(std::to_string(getppid())) != std::string::npos;
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  lock->reset();
  auto again = HomeLock::Acquire(tmp->path(), absl::Milliseconds(100));
  EXPECT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace farm::common
