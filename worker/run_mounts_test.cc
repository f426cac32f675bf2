// RUN --mount, one kind at a time, without a sandbox: what each becomes in the request, what
// it prepares in the run directory, and its errors. (Stage and image sources need a layer
// store with layers: worker:run_test covers them with the sandbox.)
#include "worker/run_mounts.h"

#include <sys/stat.h>

#include <map>

#include "absl/strings/str_cat.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/testing/fs_helpers.h"
#include "worker/testing/layers.h"

namespace farm::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSecret[] = "s3cr3t-9f1c2e";

class FakeSecrets : public executor::SecretProvider {
 public:
  absl::StatusOr<std::string> GetSecret(absl::string_view id) override {
    if (id == "broken") return absl::UnavailableError("the secret store is down");
    auto it = secrets.find(std::string(id));
    if (it == secrets.end()) return absl::NotFoundError("no such secret");
    return it->second;
  }
  std::map<std::string, std::string> secrets = {{"token", kSecret}};
};

farm::v1::Mount M(farm::v1::Mount::Type type, const std::string& target) {
  farm::v1::Mount m;
  m.set_type(type);
  m.set_target(target);
  return m;
}

class RunMountsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("run-mounts");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    run_dir_ = tmp_->path() + "/run";
    ASSERT_OK(common::MakeDirs(run_dir_, 0700));
    caches_ = std::make_unique<CacheMounts>(tmp_->path() + "/caches");
    auto ctx = farm::worker::testing::ContextBuilder()
                   .File("src/main.c", "int main() {}\n")
                   .File("src/lib/util.c", "void f() {}\n")
                   .File("README", "hi\n")
                   .Store(cas_.get());
    ASSERT_OK(ctx);
    context_ = *ctx;
  }

  RunMounts::Sources Sources(executor::SecretProvider* secrets = nullptr) {
    return RunMounts::Sources{nullptr, cas_, caches_.get(), secrets};
  }

  absl::Status Add(RunMounts& mounts, const farm::v1::Mount& m, int index = 0) {
    return mounts.Add(m, index, "/work", run_dir_, nullptr, &req_);
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::string run_dir_;
  std::shared_ptr<cache::testing::MemoryBlobStore> cas_ =
      std::make_shared<cache::testing::MemoryBlobStore>();
  std::unique_ptr<CacheMounts> caches_;
  farm::v1::ContextRoot context_;
  farm::v1::SandboxRequest req_;
  FakeSecrets secrets_;
};

TEST_F(RunMountsTest, TmpfsAtAnAbsoluteOrWorkdirRelativeTarget) {
  RunMounts mounts(Sources());
  farm::v1::Mount a = M(farm::v1::Mount::TMPFS, "/tmp");
  a.set_size_bytes(1 << 20);
  ASSERT_OK(Add(mounts, a));
  ASSERT_OK(Add(mounts, M(farm::v1::Mount::TMPFS, "scratch"), 1));
  ASSERT_EQ(req_.mounts_size(), 2);
  EXPECT_EQ(req_.mounts(0).kind(), farm::v1::SandboxMount::TMPFS);
  EXPECT_EQ(req_.mounts(0).target(), "/tmp");
  EXPECT_EQ(req_.mounts(0).tmpfs_size_bytes(), 1 << 20);
  EXPECT_EQ(req_.mounts(1).target(), "/work/scratch");
}

TEST_F(RunMountsTest, AMountWithoutATargetIsNamedInTheError) {
  RunMounts mounts(Sources(&secrets_));
  for (auto type : {farm::v1::Mount::BIND, farm::v1::Mount::CACHE, farm::v1::Mount::TMPFS}) {
    absl::Status s = Add(mounts, M(type, ""), 1);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << type;
    EXPECT_THAT(std::string(s.message()), HasSubstr("--mount #2 (target ): "));
    EXPECT_THAT(std::string(s.message()), HasSubstr("mount without a target"));
  }
  absl::Status unknown = Add(mounts, M(static_cast<farm::v1::Mount::Type>(42), "/x"), 2);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(), "--mount #3 (target /x): unknown mount type");
}

TEST_F(RunMountsTest, ABindFromTheContextIsMaterializedUnderTheRunDirectory) {
  RunMounts mounts(Sources());
  farm::v1::Mount m = M(farm::v1::Mount::BIND, "/src");
  *m.mutable_from()->mutable_context() = context_;
  m.set_source("./src/");
  m.set_readonly(true);
  ASSERT_OK(Add(mounts, m, 3));
  ASSERT_EQ(req_.mounts_size(), 1);
  const farm::v1::SandboxMount& sm = req_.mounts(0);
  EXPECT_EQ(sm.source(), run_dir_ + "/mnt3");
  EXPECT_EQ(sm.target(), "/src");
  EXPECT_TRUE(sm.readonly());
  EXPECT_EQ(*common::ReadFile(run_dir_ + "/mnt3/main.c"), "int main() {}\n");
  EXPECT_EQ(*common::ReadFile(run_dir_ + "/mnt3/lib/util.c"), "void f() {}\n");
  EXPECT_FALSE(common::PathExists(run_dir_ + "/mnt3/README"));  // only the source's subtree
}

TEST_F(RunMountsTest, ABindSourceMustStayInTheContextAndExist) {
  RunMounts mounts(Sources());
  farm::v1::Mount m = M(farm::v1::Mount::BIND, "/src");
  *m.mutable_from()->mutable_context() = context_;
  m.set_source("../etc");
  absl::Status s = Add(mounts, m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--mount #1 (target /src)"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("source \"../etc\" leaves the build context"));
  m.set_source("nope");
  s = Add(mounts, m);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--mount #1 (target /src)"));
  farm::v1::Mount no_source = M(farm::v1::Mount::BIND, "/src");
  s = Add(mounts, no_source);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("bind mount without a source"));
}

TEST_F(RunMountsTest, ACacheIsKeptByIdAndSeededOnceFromItsSource) {
  farm::v1::Mount m = M(farm::v1::Mount::CACHE, "/root/.cache");
  *m.mutable_from()->mutable_context() = context_;
  m.set_source("src");
  std::string path;
  {
    RunMounts mounts(Sources());
    ASSERT_OK(Add(mounts, m));
    ASSERT_EQ(req_.mounts_size(), 1);
    path = req_.mounts(0).source();
    EXPECT_EQ(req_.mounts(0).target(), "/root/.cache");
    EXPECT_FALSE(req_.mounts(0).readonly());
    EXPECT_EQ(*common::ReadFile(path + "/main.c"), "int main() {}\n");
    ASSERT_OK(common::WriteFileAtomic(path + "/built.o", "obj"));  // what a step left
  }
  // The next step with the same id (here: the target) gets the same directory, not re-seeded.
  req_.Clear();
  RunMounts again(Sources());
  ASSERT_OK(Add(again, m));
  EXPECT_EQ(req_.mounts(0).source(), path);
  EXPECT_EQ(*common::ReadFile(path + "/built.o"), "obj");
  // Another id: another directory.
  farm::v1::Mount other = M(farm::v1::Mount::CACHE, "/root/.cache");
  other.set_id("go-build");
  ASSERT_OK(Add(again, other));
  EXPECT_NE(req_.mounts(1).source(), path);
}

TEST_F(RunMountsTest, ASecretIsAFileInTheRequestNeverOnDisk) {
  RunMounts mounts(Sources(&secrets_));
  farm::v1::Mount m = M(farm::v1::Mount::SECRET, "");
  m.set_id("token");
  ASSERT_OK(Add(mounts, m));
  ASSERT_EQ(req_.mounts_size(), 1);
  const farm::v1::SandboxMount& sm = req_.mounts(0);
  EXPECT_EQ(sm.kind(), farm::v1::SandboxMount::FILE);
  EXPECT_EQ(sm.target(), "/run/secrets/token");
  EXPECT_EQ(sm.content(), kSecret);
  EXPECT_EQ(sm.file_mode(), 0400u);
  EXPECT_TRUE(sm.readonly());
  EXPECT_EQ(sm.source(), run_dir_ + "/secret0");
  EXPECT_THAT(farm::worker::testing::FilesContaining(tmp_->path(), kSecret), IsEmpty());
  EXPECT_TRUE(req_.env().empty());
}

TEST_F(RunMountsTest, ASecretAsAVariableAFileOrBoth) {
  RunMounts mounts(Sources(&secrets_));
  farm::v1::Mount env_only = M(farm::v1::Mount::SECRET, "");
  env_only.set_id("token");
  env_only.set_env("TOKEN");
  ASSERT_OK(Add(mounts, env_only));
  EXPECT_EQ(req_.mounts_size(), 0);
  EXPECT_THAT(req_.env(), ElementsAre(absl::StrCat("TOKEN=", kSecret)));

  // The id defaults to the target's base name; mode and owner as given.
  farm::v1::Mount both = M(farm::v1::Mount::SECRET, "/etc/token");
  both.set_env("T2");
  both.set_mode(0440);
  both.set_uid(1000);
  ASSERT_OK(Add(mounts, both, 1));
  ASSERT_EQ(req_.mounts_size(), 1);
  EXPECT_EQ(req_.mounts(0).target(), "/etc/token");
  EXPECT_EQ(req_.mounts(0).file_mode(), 0440u);
  EXPECT_EQ(req_.mounts(0).file_uid(), 1000u);
  EXPECT_THAT(req_.env(),
              ElementsAre(absl::StrCat("TOKEN=", kSecret), absl::StrCat("T2=", kSecret)));
}

TEST_F(RunMountsTest, AnAbsentSecretIsSkippedUnlessRequired) {
  RunMounts with(Sources(&secrets_));
  farm::v1::Mount m = M(farm::v1::Mount::SECRET, "");
  m.set_id("missing");
  ASSERT_OK(Add(with, m));
  EXPECT_EQ(req_.mounts_size(), 0);
  m.set_required(true);
  absl::Status s = Add(with, m, 4);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "--mount #5 (target ): secret \"missing\" is required but was not provided");
  // No provider at all: the same.
  RunMounts without(Sources(nullptr));
  m.set_id("token");
  EXPECT_EQ(Add(without, m).code(), absl::StatusCode::kFailedPrecondition);
  m.set_required(false);
  EXPECT_OK(Add(without, m));
  // A provider that fails otherwise: its error, named.
  m.set_id("broken");
  s = Add(with, m);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(s.message()), HasSubstr("the secret store is down"));
  // No id and no target to take one from.
  EXPECT_EQ(Add(with, M(farm::v1::Mount::SECRET, "")).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RunMountsTest, AnAbsentSshAgentIsSkippedUnlessRequired) {
  RunMounts mounts(Sources(&secrets_));
  farm::v1::Mount m = M(farm::v1::Mount::SSH, "");
  ASSERT_OK(Add(mounts, m));
  EXPECT_EQ(req_.mounts_size(), 0);
  EXPECT_TRUE(req_.env().empty());
  m.set_required(true);
  absl::Status s = Add(mounts, m);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("ssh agent \"default\" is required but none was provided (farm build "
                        "--ssh default)"));
}

}  // namespace
}  // namespace farm::worker
