#include "worker/run_request.h"

#include <sys/stat.h>

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RunRequestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("run-request");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    auto dirs = RunDirs::Create(tmp_->path() + "/run");
    ASSERT_OK(dirs);
    dirs_ = *dirs;
    ASSERT_OK(common::WriteFileAtomic(tmp_->path() + "/resolv.conf", "nameserver 10.0.0.1\n"));
    host_.resolv_conf = tmp_->path() + "/resolv.conf";
    host_.hosts = tmp_->path() + "/no-such-hosts";  // missing: not mounted
    host_.cgroups.emplace_back().set_parent("/sys/fs/cgroup/farm");
  }

  absl::StatusOr<farm::v1::SandboxRequest> Run(const farm::v1::RunOp& run,
                                               const farm::v1::ExecEnv& env = {}) {
    return RunSandboxRequest(run, env, "/layers", {"l/a", "l/b"}, dirs_, host_, "farm-1-x");
  }

  std::unique_ptr<common::TempDir> tmp_;
  RunDirs dirs_;
  SandboxHost host_;
};

TEST_F(RunRequestTest, RunDirsAreMadeUnderTheRunDirectory) {
  for (const std::string& d : {dirs_.upper, dirs_.work, dirs_.rootfs}) {
    struct stat st;
    ASSERT_EQ(stat(d.c_str(), &st), 0) << d;
    EXPECT_TRUE(S_ISDIR(st.st_mode));
  }
  EXPECT_EQ(dirs_.upper, tmp_->path() + "/run/upper");
  EXPECT_EQ(dirs_.work, tmp_->path() + "/run/work");
  EXPECT_EQ(dirs_.rootfs, tmp_->path() + "/run/rootfs");
}

TEST_F(RunRequestTest, TheBaseRequestCarriesTheOverlayAndTheEnvironmentWithDefaults) {
  farm::v1::ExecEnv env;
  env.add_env("PATH=/bin");
  env.add_env("A=1");
  env.set_user("nobody");
  farm::v1::SandboxRequest req =
      BaseSandboxRequest("/layers", {"l/a", "l/b"}, dirs_, env, host_, "farm-1-x");
  EXPECT_EQ(req.layer_dir(), "/layers");
  EXPECT_THAT(req.lower_dirs(), ElementsAre("l/a", "l/b"));
  EXPECT_EQ(req.upper_dir(), dirs_.upper);
  EXPECT_EQ(req.work_dir(), dirs_.work);
  EXPECT_EQ(req.rootfs_dir(), dirs_.rootfs);
  EXPECT_THAT(req.env(), ElementsAre("PATH=/bin", "A=1"));
  EXPECT_EQ(req.user(), "nobody");
  EXPECT_EQ(req.cwd(), "/");          // no WORKDIR
  EXPECT_EQ(req.hostname(), "farm");  // no hostname
  EXPECT_EQ(req.cgroup_name(), "farm-1-x");
  ASSERT_EQ(req.cgroups_size(), 1);
  EXPECT_EQ(req.cgroups(0).parent(), "/sys/fs/cgroup/farm");
  EXPECT_EQ(req.resolv_conf(), host_.resolv_conf);
  EXPECT_EQ(req.hosts(), "");  // the file does not exist
  EXPECT_TRUE(req.args().empty());

  env.set_workdir("/src");
  env.set_hostname("builder");
  req = BaseSandboxRequest("/layers", {}, dirs_, env, SandboxHost{}, "c");
  EXPECT_EQ(req.cwd(), "/src");
  EXPECT_EQ(req.hostname(), "builder");
  EXPECT_EQ(req.resolv_conf(), "");  // none configured
}

TEST_F(RunRequestTest, NetworkModes) {
  EXPECT_EQ(ParseNetwork("none"), farm::v1::SandboxRequest::NONE);
  EXPECT_EQ(ParseNetwork(""), farm::v1::SandboxRequest::HOST);
  EXPECT_EQ(ParseNetwork("default"), farm::v1::SandboxRequest::HOST);
  EXPECT_EQ(ParseNetwork("host"), farm::v1::SandboxRequest::HOST);
  EXPECT_EQ(ParseNetwork("bridge"), std::nullopt);
  EXPECT_EQ(ParseNetwork("None"), std::nullopt);
}

TEST_F(RunRequestTest, ARunAddsItsCommandAndOptions) {
  farm::v1::RunOp run;
  run.add_args("/bin/sh");
  run.add_args("-c");
  run.add_args("make");
  run.set_network("none");
  run.set_security("insecure");
  run.set_timeout_seconds(90);
  auto req = Run(run);
  ASSERT_OK(req);
  EXPECT_THAT(req->args(), ElementsAre("/bin/sh", "-c", "make"));
  EXPECT_EQ(req->network(), farm::v1::SandboxRequest::NONE);
  EXPECT_TRUE(req->insecure());
  EXPECT_EQ(req->timeout_ms(), 90000);

  farm::v1::RunOp plain;
  plain.add_args("true");
  req = Run(plain);
  ASSERT_OK(req);
  EXPECT_EQ(req->network(), farm::v1::SandboxRequest::HOST);
  EXPECT_FALSE(req->insecure());
  EXPECT_EQ(req->timeout_ms(), 0);
  plain.set_security("sandbox");
  EXPECT_FALSE(Run(plain)->insecure());
}

TEST_F(RunRequestTest, UnknownModesAreInvalidArgumentNamingTheOption) {
  farm::v1::RunOp run;
  run.add_args("true");
  run.set_network("bridge");
  auto bad = Run(run);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "RUN --network=bridge: want default, none or host");
  run.set_network("");
  run.set_security("privileged");
  bad = Run(run);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "RUN --security=privileged: want sandbox or insecure");
}

TEST_F(RunRequestTest, InlineFilesAreWrittenAndMountedReadOnlyAtTheirNames) {
  farm::v1::RunOp run;
  farm::v1::InlineFile* script = run.add_files();
  script->set_name("/dev/pipes/EOF");
  script->set_content("echo hi\n");
  farm::v1::InlineFile* data = run.add_files();
  data->set_name("/tmp/data.txt");
  data->set_content("x");
  data->set_mode(0640);
  farm::v1::SandboxRequest req;
  ASSERT_OK(AddInlineFiles(run, tmp_->path() + "/run", &req));
  ASSERT_EQ(req.mounts_size(), 2);
  EXPECT_EQ(req.mounts(0).target(), "/dev/pipes/EOF");
  EXPECT_TRUE(req.mounts(0).readonly());
  EXPECT_EQ(req.mounts(0).source(), tmp_->path() + "/run/files/0");
  EXPECT_EQ(*common::ReadFile(req.mounts(0).source()), "echo hi\n");
  struct stat st;
  ASSERT_EQ(stat(req.mounts(0).source().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);  // the default: scripts run
  ASSERT_EQ(stat(req.mounts(1).source().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(req.mounts(1).target(), "/tmp/data.txt");
}

TEST_F(RunRequestTest, ARelativeInlineFileIsRefused) {
  farm::v1::RunOp run;
  run.add_files()->set_name("script.sh");
  farm::v1::SandboxRequest req;
  absl::Status s = AddInlineFiles(run, tmp_->path() + "/run", &req);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("inline file \"script.sh\" is not absolute"));
  EXPECT_EQ(req.mounts_size(), 0);
}

}  // namespace
}  // namespace farm::worker
