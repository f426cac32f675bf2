#include "cli/progress.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cli {
namespace {

using ::testing::HasSubstr;

farm::v1::BuildEvent Vertex(int id, const std::string& name, farm::v1::VertexUpdate::State st,
                            int64_t micros = 0) {
  farm::v1::BuildEvent e;
  e.mutable_vertex()->set_id(id);
  e.mutable_vertex()->set_name(name);
  e.mutable_vertex()->set_state(st);
  e.mutable_vertex()->set_duration_micros(micros);
  return e;
}

farm::v1::BuildEvent Log(int id, const std::string& line, int64_t offset) {
  farm::v1::BuildEvent e;
  e.mutable_log()->set_id(id);
  e.mutable_log()->set_data(line);
  e.mutable_log()->set_offset_micros(offset);
  return e;
}

std::string Capture(ProgressMode mode, const std::vector<farm::v1::BuildEvent>& events,
                    const std::string& dockerfile) {
  auto tmp = common::TempDir::Create("progress");
  std::string path = tmp->path() + "/out";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  {
    auto p = ProgressPrinter::Create(mode, fd, dockerfile);
    for (const auto& e : events) p->OnEvent(e);
    p->Finish();
  }
  close(fd);
  return *common::ReadFile(path);
}

TEST(ProgressTest, PlainLooksLikeBuildKit) {
  std::string out = Capture(
      ProgressMode::kPlain,
      {Vertex(1, "[1/3] FROM docker.io/library/alpine:3.19", farm::v1::VertexUpdate::CACHED),
       Vertex(2, "[2/3] RUN make", farm::v1::VertexUpdate::STARTED), Log(2, "compiling", 512000),
       Vertex(2, "", farm::v1::VertexUpdate::DONE, 1234000)},
      "");
  EXPECT_EQ(out,
            "#1 [1/3] FROM docker.io/library/alpine:3.19\n#1 CACHED\n\n"
            "#2 [2/3] RUN make\n#2 0.512 compiling\n#2 DONE 1.2s\n");
}

TEST(ProgressTest, FailureShowsTheErrorBlockWithTheDockerfileLines) {
  farm::v1::BuildEvent fail = Vertex(2, "[2/2] RUN exit 3", farm::v1::VertexUpdate::FAILED, 10);
  fail.mutable_vertex()->set_error("process \"/bin/sh -c exit 3\" did not complete: exit code: 3");
  fail.mutable_vertex()->add_output_tail("last words");
  fail.mutable_vertex()->set_line(3);
  fail.mutable_vertex()->set_end_line(3);
  farm::v1::BuildEvent outcome;
  outcome.mutable_outcome()->set_ok(false);
  outcome.mutable_outcome()->set_error(
      "failed to build: process \"/bin/sh -c exit 3\" did not complete: exit code: 3");
  std::string out =
      Capture(ProgressMode::kQuiet, {fail, outcome}, "FROM alpine\n# comment\nRUN exit 3\nCMD x\n");
  EXPECT_THAT(out, HasSubstr(" > [2/2] RUN exit 3:\nlast words\n------\n"));
  EXPECT_THAT(out, HasSubstr("   3 | >>> RUN exit 3\n"));
  EXPECT_THAT(out, HasSubstr("   1 |     FROM alpine\n"));
  EXPECT_THAT(out, HasSubstr("ERROR: failed to build: process"));
}

TEST(ProgressTest, TtyRedrawsAndCollapsesFinishedSteps) {
  std::string out =
      Capture(ProgressMode::kTty,
              {Vertex(1, "[1/2] RUN a", farm::v1::VertexUpdate::STARTED),
               Log(1, "output line", 1000), Vertex(1, "", farm::v1::VertexUpdate::DONE, 2000000)},
              "");
  // The final frame lists the step with its time and no output lines (collapsed).
  size_t last = out.rfind("[+] Building");
  ASSERT_NE(last, std::string::npos);
  std::string frame = out.substr(last);
  EXPECT_THAT(frame, HasSubstr("FINISHED"));
  EXPECT_THAT(frame, HasSubstr(" => [1/2] RUN a"));
  EXPECT_THAT(frame, HasSubstr("2.0s"));
  EXPECT_EQ(frame.find("output line"), std::string::npos);
}

TEST(ProgressTest, ParseMode) {
  EXPECT_EQ(*ParseProgressMode("plain"), ProgressMode::kPlain);
  EXPECT_FALSE(ParseProgressMode("fancy").ok());
}

}  // namespace
}  // namespace farm::cli
