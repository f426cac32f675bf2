#include "common/logging/grpc_log.h"

#include <grpc/support/log.h>

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::logging {
namespace {

using ::testing::HasSubstr;

TEST(GrpcLogTest, GrpcMessagesBecomeLoggerLines) {
  absl::Mutex mu;
  std::vector<std::string> lines;
  Logger::Options o;
  o.component = "farm-cache";
  o.format = Format::kJson;
  o.sink = [&](absl::string_view line) {
    absl::MutexLock l(&mu);
    lines.emplace_back(line);
  };
  Logger log(o);
  InstallGrpcLogger(log);
  gpr_log(GPR_ERROR, "bind failed: %s", "Address already in use");
  gpr_log(GPR_INFO, "chatty %d", 1);  // below the default minimum (errors)
  {
    absl::MutexLock l(&mu);
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_THAT(lines[0], HasSubstr("\"level\":\"error\""));
    EXPECT_THAT(lines[0], HasSubstr("\"msg\":\"grpc: bind failed: Address already in use\""));
    EXPECT_THAT(lines[0], HasSubstr("\"component\":\"farm-cache\""));
    EXPECT_THAT(lines[0], HasSubstr("\"source\":\"common/logging/grpc_log_test.cc:"));
  }
  // A later call replaces the logger and its minimum.
  InstallGrpcLogger(log, Level::kInfo);
  gpr_log(GPR_INFO, "now %s", "shown");
  absl::MutexLock l(&mu);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("\"level\":\"info\",\"msg\":\"grpc: now shown\""));
}

}  // namespace
}  // namespace farm::common::logging
