// What a sandboxed command's end means for the step (InterpretSandboxResult), and cleaning the
// mount stubs out of an upperdir. Running the sandbox itself is worker:run_test's (root).
#include "worker/run_command.h"

#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

struct Logged {
  std::vector<std::string> lines;
  executor::LogSink Sink() {
    return [this](absl::string_view line, bool is_stderr) {
      lines.push_back(absl::StrCat(is_stderr ? "err: " : "out: ", line));
    };
  }
};

TEST(OutputTailTest, KeepsTheLastTwentyLines) {
  OutputTail tail;
  for (int i = 1; i <= 25; ++i) tail.Add(absl::StrCat("line ", i));
  farm::v1::StepResult r;
  tail.CopyTo(&r);
  ASSERT_EQ(r.output_tail_size(), 20);
  EXPECT_EQ(r.output_tail(0), "line 6");
  EXPECT_EQ(r.output_tail(19), "line 25");
}

TEST(InterpretSandboxResultTest, SuccessMakesALayer) {
  farm::v1::SandboxResult sr;
  sr.set_run_micros(1234);
  sr.add_stubs()->set_path("proc");
  OutputTail tail;
  tail.Add("some output");
  auto o = InterpretSandboxResult(sr, nullptr, {}, &tail, nullptr);
  ASSERT_OK(o);
  EXPECT_TRUE(o->make_layer);
  EXPECT_EQ(o->result.exit_code(), 0);
  EXPECT_EQ(o->result.run_micros(), 1234);
  EXPECT_THAT(o->result.output_tail(), IsEmpty());  // only failures carry the tail
  ASSERT_EQ(o->sandbox.stubs_size(), 1);
}

TEST(InterpretSandboxResultTest, AFailedCommandIsAResultWithItsTailAndNoLayer) {
  farm::v1::SandboxResult sr;
  sr.set_exit_code(3);
  OutputTail tail;
  tail.Add("boom");
  auto o = InterpretSandboxResult(sr, nullptr, {}, &tail, nullptr);
  ASSERT_OK(o);
  EXPECT_FALSE(o->make_layer);
  EXPECT_EQ(o->result.exit_code(), 3);
  EXPECT_THAT(o->result.output_tail(), ElementsAre("boom"));
}

TEST(InterpretSandboxResultTest, ATimeoutIsExit137AndSaysSo) {
  farm::v1::SandboxResult sr;
  sr.set_timed_out(true);  // killed: the runner reports exit 0 when it never saw one
  OutputTail tail;
  Logged log;
  auto o = InterpretSandboxResult(sr, nullptr, {30, 0}, &tail, log.Sink());
  ASSERT_OK(o);
  EXPECT_FALSE(o->make_layer);
  EXPECT_TRUE(o->result.timed_out());
  EXPECT_EQ(o->result.exit_code(), 137);
  const std::string line =
      "farm: the command exceeded its timeout of 30s; its process tree was killed";
  EXPECT_THAT(log.lines, ElementsAre("err: " + line));
  EXPECT_THAT(o->result.output_tail(), ElementsAre(line));

  sr.set_exit_code(143);  // an exit status of its own is kept
  OutputTail tail2;
  EXPECT_EQ(InterpretSandboxResult(sr, nullptr, {30, 0}, &tail2, nullptr)->result.exit_code(), 143);
}

TEST(InterpretSandboxResultTest, TheOomKillerIsNamed) {
  farm::v1::SandboxResult sr;
  sr.set_exit_code(137);
  sr.set_oom_killed(true);
  OutputTail tail;
  Logged log;
  auto o = InterpretSandboxResult(sr, nullptr, {0, 64 << 20}, &tail, log.Sink());
  ASSERT_OK(o);
  EXPECT_THAT(log.lines,
              ElementsAre("err: farm: killed by the OOM killer (memory limit 67108864 bytes)"));
  EXPECT_THAT(o->result.output_tail(), ElementsAre(HasSubstr("OOM killer")));
}

TEST(InterpretSandboxResultTest, CancelledIsCancelledWhoeverNoticedFirst) {
  farm::v1::SandboxResult sr;
  sr.set_cancelled(true);
  OutputTail tail;
  auto o = InterpretSandboxResult(sr, nullptr, {}, &tail, nullptr);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kCancelled);
  EXPECT_THAT(std::string(o.status().message()), HasSubstr("its processes were killed"));
  // The runner finished, but the step was cancelled meanwhile: no layer either.
  absl::Notification cancel;
  cancel.Notify();
  EXPECT_EQ(InterpretSandboxResult(farm::v1::SandboxResult(), &cancel, {}, &tail, nullptr)
                .status()
                .code(),
            absl::StatusCode::kCancelled);
}

TEST(InterpretSandboxResultTest, ASandboxSetupErrorIsTheStepsError) {
  farm::v1::SandboxResult sr;
  sr.set_error_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  sr.set_error_message("user \"nobody\" not found");
  OutputTail tail;
  auto o = InterpretSandboxResult(sr, nullptr, {}, &tail, nullptr);
  EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(o.status().message(), "setting up the sandbox: user \"nobody\" not found");
}

class RemoveMountStubsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("stubs");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    upper_ = tmp_->path();
  }
  bool Exists(const std::string& rel) {
    struct stat st;
    return lstat((upper_ + "/" + rel).c_str(), &st) == 0;
  }
  farm::v1::SandboxStub* Stub(const std::string& path, bool created, bool is_dir,
                              uint32_t mode = 0755) {
    farm::v1::SandboxStub* s = stubs_.Add();
    s->set_path(path);
    s->set_created(created);
    s->set_is_dir(is_dir);
    s->set_mode(mode);
    s->set_uid(getuid());
    s->set_gid(getgid());
    return s;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::string upper_;
  google::protobuf::RepeatedPtrField<farm::v1::SandboxStub> stubs_;
};

TEST_F(RemoveMountStubsTest, EmptyMountPointsGoWhatTheCommandWroteStays) {
  ASSERT_OK(common::MakeDirs(upper_ + "/run/secrets", 0755));  // empty mount point
  ASSERT_OK(common::MakeDirs(upper_ + "/cache", 0755));
  ASSERT_OK(common::WriteFileAtomic(upper_ + "/cache/kept", "x"));  // written by the command
  ASSERT_OK(common::WriteFileAtomic(upper_ + "/etc-hosts", ""));    // empty file mount point
  ASSERT_OK(common::WriteFileAtomic(upper_ + "/written", "data"));  // a file, now not empty
  Stub("run/secrets", true, true);
  Stub("cache", true, true);
  Stub("etc-hosts", true, false);
  Stub("written", true, false);
  RemoveMountStubs(upper_, stubs_);
  EXPECT_FALSE(Exists("run/secrets"));
  EXPECT_TRUE(Exists("cache/kept"));
  EXPECT_FALSE(Exists("etc-hosts"));
  EXPECT_TRUE(Exists("written"));
}

TEST_F(RemoveMountStubsTest, CopiedUpAncestorsGoUnlessTheCommandChangedThem) {
  ASSERT_OK(common::MakeDirs(upper_ + "/a/b", 0755));
  chmod((upper_ + "/a").c_str(), 0755);
  chmod((upper_ + "/a/b").c_str(), 0755);
  ASSERT_OK(common::MakeDirs(upper_ + "/c", 0755));
  chmod((upper_ + "/c").c_str(), 0700);  // chmod by the command: not as recorded
  ASSERT_OK(common::MakeDirs(upper_ + "/d", 0755));
  chmod((upper_ + "/d").c_str(), 0755);
  ASSERT_OK(common::WriteFileAtomic(upper_ + "/d/new", "x"));  // written into
  Stub("a", false, true);
  Stub("a/b", false, true);
  Stub("c", false, true);
  Stub("d", false, true);
  RemoveMountStubs(upper_, stubs_);
  EXPECT_FALSE(Exists("a"));  // deepest first: a/b, then a
  EXPECT_TRUE(Exists("c"));
  EXPECT_TRUE(Exists("d/new"));
}

}  // namespace
}  // namespace farm::worker
