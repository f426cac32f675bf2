#include "common/logging/logging.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace farm::common::logging {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Collects the lines a Logger writes.
class Lines {
 public:
  std::function<void(absl::string_view)> Sink() {
    return [this](absl::string_view line) {
      absl::MutexLock l(&mu_);
      lines_.emplace_back(line);
    };
  }
  std::vector<std::string> Get() {
    absl::MutexLock l(&mu_);
    return lines_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> lines_;
};

Logger::Options Fixed(Format format, Lines& lines) {
  Logger::Options o;
  o.component = "farm-scheduler";
  o.format = format;
  o.sink = lines.Sink();
  // 2026-12-03T09:29:28.123Z
  o.now = [] { return absl::FromUnixMillis(1796290168123); };
  return o;
}

TEST(LoggingTest, ParsesFlags) {
  EXPECT_EQ(*ParseFormat("text"), Format::kText);
  EXPECT_EQ(*ParseFormat("json"), Format::kJson);
  EXPECT_EQ(ParseFormat("JSON").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseFormat("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(*ParseLevel("warning"), Level::kWarning);
  EXPECT_EQ(ParseLevel("warn").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoggingTest, TextLinesKeepTodaysShape) {
  Lines lines;
  Logger log(Fixed(Format::kText, lines));
  log.Info("farm-cache at 10.0.0.2:9092 is reachable");
  log.Info("step finished", {{"cached", true},
                             {"step", "s3"},
                             {"build", "b-12"},
                             {"attempt", 2},
                             {"seconds", 1.25},
                             {"bytes", uint64_t{18446744073709551615u}},
                             {"path", "/a b/\"c\""},
                             {"empty", ""}});
  log.Warning("heartbeat late");
  log.Error("two\nlines\tand a \x01 control");
  EXPECT_THAT(
      lines.Get(),
      ElementsAre(
          "2026-12-03T09:29:28.123Z farm-scheduler: farm-cache at 10.0.0.2:9092 is reachable",
          "2026-12-03T09:29:28.123Z farm-scheduler: step finished build=b-12 step=s3 cached=true "
          "attempt=2 seconds=1.25 bytes=18446744073709551615 path=\"/a b/\\\"c\\\"\" empty=\"\"",
          "2026-12-03T09:29:28.123Z farm-scheduler: WARNING: heartbeat late",
          "2026-12-03T09:29:28.123Z farm-scheduler: ERROR: two\\nlines\\tand a \\x01 control"));
}

TEST(LoggingTest, JsonLines) {
  Lines lines;
  Logger log(Fixed(Format::kJson, lines));
  log.Info("step finished", {{"cached", true},
                             {"tenant", "team-a"},
                             {"step", "s3"},
                             {"worker", "w-1"},
                             {"build", "b-12"},
                             {"attempt", 2},
                             {"seconds", 1.25},
                             {"delta", -3}});
  ASSERT_EQ(lines.Get().size(), 1u);
  EXPECT_EQ(
      lines.Get()[0],
      "{\"ts\":\"2026-12-03T09:29:28.123Z\",\"level\":\"info\",\"msg\":\"step finished\","
      "\"component\":\"farm-scheduler\",\"build\":\"b-12\",\"step\":\"s3\",\"worker\":\"w-1\","
      "\"tenant\":\"team-a\",\"cached\":true,\"attempt\":2,\"seconds\":1.25,\"delta\":-3}");
}

TEST(LoggingTest, JsonEscapingAndOddValues) {
  Lines lines;
  Logger log(Fixed(Format::kJson, lines));
  const std::string nasty = "quote\" backslash\\ newline\n tab\t nul" + std::string(1, '\0') +
                            " bell\x07 é 日本 \xF0\x9F\x98\x80";
  log.Error(nasty, {{"value", nasty},
                    {"bad_utf8",
                     "a\xff\xfe"
                     "b"},
                    {"nan", std::nan("")}});
  ASSERT_EQ(lines.Get().size(), 1u);
  const std::string line = lines.Get()[0];
  EXPECT_EQ(line.find('\n'), std::string::npos);  // one line per event
  nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["msg"], nasty);
  EXPECT_EQ(j["value"], nasty);
  EXPECT_EQ(j["bad_utf8"],
            "a\xEF\xBF\xBD\xEF\xBF\xBD"
            "b");  // U+FFFD twice
  EXPECT_TRUE(j["nan"].is_null());
}

TEST(LoggingTest, ReservedAndRepeatedKeys) {
  Lines lines;
  Logger log(Fixed(Format::kJson, lines));
  log.With({{"worker", "w-1"}, {"k", "bound"}})
      .Info("m", {{"msg", "not the message"}, {"level", 3}, {"k", "call"}, {"worker", "w-2"}});
  ASSERT_EQ(lines.Get().size(), 1u);
  EXPECT_EQ(lines.Get()[0],
            "{\"ts\":\"2026-12-03T09:29:28.123Z\",\"level\":\"info\",\"msg\":\"m\","
            "\"component\":\"farm-scheduler\",\"worker\":\"w-2\",\"k\":\"call\","
            "\"field.msg\":\"not the message\",\"field.level\":3}");
}

TEST(LoggingTest, WithBindsFieldsAndSharesTheSink) {
  Lines lines;
  Logger log(Fixed(Format::kText, lines));
  Logger worker = log.With({{"worker", "w-1"}});
  Logger task = worker.With({{"build", "b-1"}, {"step", "s-2"}});
  task.Info("running");
  worker.Info("connected");
  log.Info("plain");
  EXPECT_THAT(lines.Get(),
              ElementsAre("2026-12-03T09:29:28.123Z farm-scheduler: running build=b-1 step=s-2 "
                          "worker=w-1",
                          "2026-12-03T09:29:28.123Z farm-scheduler: connected worker=w-1",
                          "2026-12-03T09:29:28.123Z farm-scheduler: plain"));
}

TEST(LoggingTest, LevelsBelowTheMinimumAreDropped) {
  Lines lines;
  Logger::Options o = Fixed(Format::kText, lines);
  o.min_level = Level::kWarning;
  Logger log(o);
  log.Debug("d");
  log.Info("i");
  log.Warning("w");
  log.Error("e");
  EXPECT_FALSE(log.Enabled(Level::kInfo));
  EXPECT_TRUE(log.Enabled(Level::kError));
  EXPECT_EQ(lines.Get().size(), 2u);
  Lines all;
  Logger::Options d = Fixed(Format::kJson, all);
  d.min_level = Level::kDebug;
  Logger(d).Debug("d");
  EXPECT_THAT(all.Get()[0], HasSubstr("\"level\":\"debug\""));
}

// LineFunc() fits the callbacks components take today.
TEST(LoggingTest, LineFuncAdaptsLineCallbacks) {
  Lines lines;
  Logger log(Fixed(Format::kJson, lines));
  std::function<void(const std::string&)> build_manager_log = log.With({{"x", 1}}).LineFunc();
  std::function<void(absl::string_view)> dispatcher_log = log.LineFunc(Level::kWarning);
  build_manager_log("build b-1 finished");
  dispatcher_log("lease lost");
  ASSERT_EQ(lines.Get().size(), 2u);
  EXPECT_THAT(lines.Get()[0], HasSubstr("\"msg\":\"build b-1 finished\""));
  EXPECT_THAT(lines.Get()[0], HasSubstr("\"x\":1"));
  EXPECT_THAT(lines.Get()[1], HasSubstr("\"level\":\"warning\",\"msg\":\"lease lost\""));
}

// Lines from many threads arrive whole, one per event.
TEST(LoggingTest, ConcurrentLinesStayWhole) {
  std::vector<std::string> got;
  bool overlapped = false;
  std::atomic<int> inside{0};
  Logger::Options o;
  o.format = Format::kJson;
  o.sink = [&](absl::string_view line) {
    if (inside.fetch_add(1) != 0) overlapped = true;  // the sink is never entered twice at once
    got.emplace_back(line);
    inside.fetch_sub(1);
  };
  Logger log(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Logger mine = log.With({{"worker", absl::StrCat("w-", t)}});
      for (int i = 0; i < 500; ++i) mine.Info("tick", {{"i", i}});
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_FALSE(overlapped);
  ASSERT_EQ(got.size(), 8u * 500);
  for (const std::string& line : got) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j["msg"], "tick");
  }
}

// The default sink: one line per event on stderr.
TEST(LoggingTest, DefaultSinkWritesLinesToStderr) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp ? tmp : "/tmp", "/stderr-", getpid());
  const int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const int saved = dup(STDERR_FILENO);
  ASSERT_GE(dup2(fd, STDERR_FILENO), 0);
  {
    Logger::Options o;
    o.component = "farm-worker";
    Logger log(o);
    log.Info("first");
    log.Error("second", {{"worker", "w-9"}});
  }
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<std::string> got = absl::StrSplit(ss.str(), '\n');
  ASSERT_EQ(got.size(), 3u) << ss.str();  // two lines and the empty rest
  EXPECT_THAT(got[0], ::testing::EndsWith(" farm-worker: first"));
  EXPECT_THAT(got[1], ::testing::EndsWith(" farm-worker: ERROR: second worker=w-9"));
  EXPECT_EQ(got[2], "");
  unlink(path.c_str());
}

}  // namespace
}  // namespace farm::common::logging
