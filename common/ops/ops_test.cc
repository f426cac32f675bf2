#include "common/ops/ops.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/http/test_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::ops {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<OpsFlags> Parse(std::vector<std::string> args) {
  FlagSet fs("test", "");
  OpsFlags f;
  RegisterOpsFlags(&fs, &f);
  absl::StatusOr<std::vector<std::string>> rest = fs.Parse(args);
  if (!rest.ok()) return rest.status();
  return f;
}

TEST(OpsFlagsTest, DefaultsAreOffAndText) {
  absl::StatusOr<OpsFlags> f = Parse({});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->metrics_listen, "");
  EXPECT_EQ(f->log_format, logging::Format::kText);
}

TEST(OpsFlagsTest, ParsesBothAndRejectsAnUnknownFormat) {
  absl::StatusOr<OpsFlags> f = Parse({"--metrics-listen", "127.0.0.1:0", "--log-format", "json"});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->metrics_listen, "127.0.0.1:0");
  EXPECT_EQ(f->log_format, logging::Format::kJson);
  absl::StatusOr<OpsFlags> bad = Parse({"--log-format", "xml"});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--log-format"));
}

TEST(StartMetricsServerTest, OffWithoutTheFlagServesTheEndpointsWithIt) {
  metrics::Registry registry;
  http::ReadinessChecks ready;
  logging::Logger log(logging::Logger::Options{"test"});
  OpsFlags off;
  auto none = StartMetricsServer(off, &registry, &ready, log);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);

  ASSERT_TRUE(registry.AddGaugeCallback({"farm_test_up", "Always 1."}, [] { return 1.0; }).ok());
  OpsFlags on;
  on.metrics_listen = "127.0.0.1:0";
  auto server = StartMetricsServer(on, &registry, &ready, log);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_NE(*server, nullptr);
  const std::string base = absl::StrCat("http://127.0.0.1:", (*server)->port());
  auto m = http::Fetch(base + "/metrics");
  ASSERT_TRUE(m.ok());
  EXPECT_THAT(m->body, HasSubstr("farm_test_up 1\n"));
  EXPECT_EQ(http::Fetch(base + "/healthz")->status, 200);
  EXPECT_EQ(http::Fetch(base + "/readyz")->status, 200);

  // A port in use is an error naming the flag.
  OpsFlags taken;
  taken.metrics_listen = (*server)->address();
  auto second = StartMetricsServer(taken, &registry, &ready, log);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("--metrics-listen"));
}

}  // namespace
}  // namespace farm::common::ops
