#include "common/logging/line_fields.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace farm::common::logging {
namespace {

TEST(LogFieldsTest, JsonLinesCarryTheIdsTheLinesName) {
  std::vector<std::string> lines;
  Logger::Options o;
  o.component = "farm-scheduler";
  o.format = Format::kJson;
  o.sink = [&](absl::string_view l) { lines.emplace_back(l); };
  Logger log(o);
  auto f = FieldedLineFunc(log);
  f("build b-12 started (tenant \"team-a\", priority 0)");
  f("worker w1 connected from ipv4:127.0.0.1:5000: linux/amd64, 2 slots");
  f("task t-3 \"RUN make\" (key ab12) requeued (attempt 1 of 3 lost: silent)");
  f("WARNING: authentication is off");
  f("farm-cache at c:1 is unreachable");
  ASSERT_EQ(lines.size(), 5u);
  auto j = [&](int i) { return nlohmann::json::parse(lines[i]); };
  EXPECT_EQ(j(0)["build"], "b-12");
  EXPECT_EQ(j(0)["tenant"], "team-a");
  EXPECT_EQ(j(0)["msg"], "build b-12 started (tenant \"team-a\", priority 0)");
  EXPECT_EQ(j(1)["worker"], "w1");
  EXPECT_EQ(j(2)["task"], "t-3");
  EXPECT_EQ(j(3)["level"], "warning");
  EXPECT_EQ(j(3)["msg"], "authentication is off");
  EXPECT_FALSE(j(4).contains("build"));
  EXPECT_EQ(j(4)["component"], "farm-scheduler");
}

}  // namespace
}  // namespace farm::common::logging
