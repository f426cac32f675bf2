#include "auth/flags.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm {
namespace auth {
namespace {

using ::testing::HasSubstr;

TEST(FlagsTest, ServerAndPrefixedClientFlags) {
  common::FlagSet fs("farm-scheduler", "test");
  ServerAuthOptions server;
  ClientAuthOptions cache;
  RegisterServerFlags(&fs, &server);
  RegisterClientFlags(&fs, "cache-", &cache, /*register_insecure=*/false);
  auto rest = fs.Parse({"--tls-cert",
                        "s.crt",
                        "--tls-key=s.key",
                        "--tls-client-ca",
                        "cas.crt",
                        "--worker-ca",
                        "w.crt",
                        "--token-keys",
                        "k.pub",
                        "--token-audience",
                        "farm",
                        "--insecure",
                        "--cache-tls-ca",
                        "ca.crt",
                        "--cache-tls-cert",
                        "c.crt",
                        "--cache-tls-key",
                        "c.key",
                        "--cache-token-file",
                        "t"});
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(server.tls.cert_file, "s.crt");
  EXPECT_EQ(server.tls.key_file, "s.key");
  EXPECT_EQ(server.tls.client_ca_file, "cas.crt");
  EXPECT_EQ(server.worker_ca_file, "w.crt");
  EXPECT_EQ(server.tokens.key_file, "k.pub");
  EXPECT_EQ(server.tokens.audience, "farm");
  EXPECT_TRUE(server.insecure);
  EXPECT_EQ(cache.tls.ca_file, "ca.crt");
  EXPECT_EQ(cache.tls.cert_file, "c.crt");
  EXPECT_EQ(cache.tls.key_file, "c.key");
  EXPECT_EQ(cache.token_file, "t");
  EXPECT_FALSE(cache.insecure);
  EXPECT_THAT(fs.Help(), HasSubstr("--cache-tls-ca FILE"));
}

TEST(FlagsTest, TokenClockSkew) {
  {
    common::FlagSet fs("farm-cache", "test");
    ServerAuthOptions server;
    RegisterServerFlags(&fs, &server);
    EXPECT_EQ(server.tokens.clock_skew, absl::Seconds(60));
    ASSERT_TRUE(fs.Parse({"--token-clock-skew", "0s"}).ok());
    EXPECT_EQ(server.tokens.clock_skew, absl::ZeroDuration());
  }
  for (const char* bad : {"-1s", "2h", "soon"}) {
    common::FlagSet fs("farm-cache", "test");
    ServerAuthOptions server;
    RegisterServerFlags(&fs, &server);
    auto rest = fs.Parse({"--token-clock-skew", bad});
    ASSERT_FALSE(rest.ok()) << bad;
    EXPECT_THAT(rest.status().message(), HasSubstr("--token-clock-skew")) << bad;
  }
}

TEST(FlagsTest, EnvironmentFillsOnlyWhatFlagsLeftEmpty) {
  setenv("FARM_TLS_CA", "env-ca.crt", 1);
  setenv("FARM_TOKEN", "tok", 1);
  setenv("FARM_TOKEN_FILE", "env-token", 1);
  ClientAuthOptions o;
  ASSERT_TRUE(ApplyClientEnvironment(&o).ok());
  EXPECT_EQ(o.tls.ca_file, "env-ca.crt");
  EXPECT_EQ(o.token, "tok");
  EXPECT_EQ(o.token_file, "");
  ClientAuthOptions flagged;
  flagged.tls.ca_file = "flag-ca.crt";
  flagged.token_file = "flag-token";
  ASSERT_TRUE(ApplyClientEnvironment(&flagged).ok());
  EXPECT_EQ(flagged.tls.ca_file, "flag-ca.crt");
  EXPECT_EQ(flagged.token, "");
  EXPECT_EQ(flagged.token_file, "flag-token");
  unsetenv("FARM_TOKEN");
  ClientAuthOptions from_file;
  ASSERT_TRUE(ApplyClientEnvironment(&from_file).ok());
  EXPECT_EQ(from_file.token_file, "env-token");
  setenv("FARM_TLS_CERT", "c.crt", 1);
  EXPECT_FALSE(ApplyClientEnvironment(&from_file).ok());
}

}  // namespace
}  // namespace auth
}  // namespace farm
