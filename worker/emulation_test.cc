#include "worker/emulation.h"

#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker {
namespace {

using ::testing::HasSubstr;

class EmulationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("binfmt");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
  }
  void Register(const std::string& name, const std::string& text) {
    ASSERT_TRUE(common::WriteFileAtomic(common::JoinPath(tmp_->path(), name), text).ok());
  }
  std::unique_ptr<common::TempDir> tmp_;
};

TEST_F(EmulationTest, NativeNeedsNothing) {
  EXPECT_TRUE(CheckCanRun("linux/amd64", tmp_->path()).ok());
  EXPECT_TRUE(CheckCanRun("", tmp_->path()).ok());
}

TEST_F(EmulationTest, ARegisteredEmulatorWithTheFFlag) {
  absl::Status none = CheckCanRun("linux/arm64", tmp_->path());
  EXPECT_TRUE(absl::IsFailedPrecondition(none));
  EXPECT_THAT(std::string(none.message()), HasSubstr("apt-get install qemu-user-static"));
  EXPECT_THAT(std::string(none.message()), HasSubstr("qemu-aarch64"));

  Register("qemu-aarch64",
           "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PO\n");
  absl::Status no_f = CheckCanRun("linux/arm64", tmp_->path());
  EXPECT_THAT(std::string(no_f.message()), HasSubstr("without the F flag"));

  Register("qemu-aarch64",
           "disabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n");
  EXPECT_THAT(std::string(CheckCanRun("linux/arm64", tmp_->path()).message()),
              HasSubstr("disabled"));

  Register("qemu-aarch64",
           "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n");
  EXPECT_TRUE(CheckCanRun("linux/arm64", tmp_->path()).ok());
  EXPECT_THAT(EmulatedPlatforms(tmp_->path()), ::testing::ElementsAre("linux/arm64"));
  EXPECT_EQ(BinfmtNameFor("linux/arm/v7"), "qemu-arm");
  EXPECT_THAT(std::string(CheckCanRun("linux/sparc64", tmp_->path()).message()),
              HasSubstr("no emulator is known"));
}

}  // namespace
}  // namespace farm::worker
