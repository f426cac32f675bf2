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

TEST_F(EmulationTest, ResolveEmulationChecksEveryPlatformAndDropsTheNativeOne) {
  const std::string native = "linux/amd64";
  EXPECT_THAT(*ResolveEmulation("", native, tmp_->path()), ::testing::IsEmpty());
  EXPECT_THAT(*ResolveEmulation("none", native, tmp_->path()), ::testing::IsEmpty());
  EXPECT_THAT(*ResolveEmulation("auto", native, tmp_->path()), ::testing::IsEmpty());
  // Asked for but not registered: an error naming it and what to install, not a silent drop.
  absl::StatusOr<std::vector<std::string>> missing =
      ResolveEmulation("linux/arm64", native, tmp_->path());
  EXPECT_TRUE(absl::IsFailedPrecondition(missing.status()));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--emulate linux/arm64"));
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("qemu-user-static"));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ResolveEmulation("linux/ar m", native, tmp_->path()).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ResolveEmulation("arm64,,", native, tmp_->path()).status()));

  Register("qemu-aarch64", "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POCF\n");
  Register("qemu-riscv64", "enabled\ninterpreter /usr/bin/qemu-riscv64-static\nflags: POCF\n");
  EXPECT_THAT(*ResolveEmulation("auto", native, tmp_->path()),
              ::testing::ElementsAre("linux/arm64", "linux/riscv64"));
  // Aliases normalize, duplicates and the native platform go.
  EXPECT_THAT(*ResolveEmulation(" aarch64, linux/arm64/v8,linux/amd64 ", native, tmp_->path()),
              ::testing::ElementsAre("linux/arm64"));
  // A worker reporting linux/arm64 as its own does not announce it as emulated too.
  EXPECT_THAT(*ResolveEmulation("auto", "linux/arm64", tmp_->path()),
              ::testing::ElementsAre("linux/riscv64"));
  absl::StatusOr<std::vector<std::string>> sparc =
      ResolveEmulation("linux/arm64,linux/sparc64", native, tmp_->path());
  EXPECT_THAT(std::string(sparc.status().message()), HasSubstr("linux/sparc64"));
}

}  // namespace
}  // namespace farm::worker
