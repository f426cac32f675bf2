#include "scheduler/registry/auth.h"

#include <sys/stat.h>

#include <cstdlib>

#include "common/fs.h"
#include "gtest/gtest.h"

namespace farm::scheduler::registry {
namespace {

TEST(AuthTest, ParsesChallenges) {
  std::vector<Challenge> c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "bearer");
  EXPECT_EQ(c[0].params["realm"], "https://auth.docker.io/token");
  EXPECT_EQ(c[0].params["service"], "registry.docker.io");
  EXPECT_EQ(c[0].params["scope"], "repository:library/alpine:pull,push");
  c = ParseWwwAuthenticate(R"(Basic realm="farm-test")");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].scheme, "basic");
  EXPECT_EQ(c[0].params["realm"], "farm-test");
  // Two challenges, unquoted values, escaped quote, odd spacing.
  c = ParseWwwAuthenticate(R"(Basic realm=r1 , Bearer realm="a\"b", error="invalid_token")");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].params["realm"], "r1");
  EXPECT_EQ(c[1].params["realm"], "a\"b");
  EXPECT_EQ(c[1].params["error"], "invalid_token");
  EXPECT_TRUE(ParseWwwAuthenticate("").empty());
}

TEST(AuthTest, Base64) {
  EXPECT_EQ(Base64Encode("user:pass"), "dXNlcjpwYXNz");
  EXPECT_EQ(Base64Encode("a"), "YQ==");
  EXPECT_EQ(Base64Encode("ab"), "YWI=");
  EXPECT_EQ(Base64Decode("dXNlcjpwYXNz").value(), "user:pass");
  EXPECT_EQ(Base64Decode("YQ==").value(), "a");
  EXPECT_FALSE(Base64Decode("***").ok());
}

TEST(AuthTest, DockerConfigReadWriteLikeDocker) {
  auto tmp = common::TempDir::Create("dockercfg").value();
  // Unknown members survive; legacy URL keys are matched by host name.
  ASSERT_TRUE(common::WriteFileAtomic(tmp.path() + "/config.json", R"({
    "auths": {
      "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
      "http://old.example.com:5000/v1/": {"auth": "b2xkOnB3"}
    },
    "psFormat": "table {{.ID}}"
  })")
                  .ok());
  DockerConfig cfg = DockerConfig::Load(tmp.path()).value();
  Credentials hub = cfg.Get("docker.io").value();
  EXPECT_EQ(hub.username, "hub");
  EXPECT_EQ(hub.password, "secret");
  EXPECT_EQ(cfg.Get("old.example.com:5000").value().username, "old");
  EXPECT_TRUE(cfg.Get("localhost:5000").value().empty());

  ASSERT_TRUE(cfg.Set("localhost:5000", {"me", "pw:with:colons"}).ok());
  ASSERT_TRUE(cfg.Save().ok());
  struct stat st;
  ASSERT_EQ(stat((tmp.path() + "/config.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  std::string text = common::ReadFile(tmp.path() + "/config.json").value();
  EXPECT_NE(text.find("\"localhost:5000\""), std::string::npos);
  EXPECT_NE(text.find(Base64Encode("me:pw:with:colons")), std::string::npos);
  EXPECT_NE(text.find("psFormat"), std::string::npos);

  DockerConfig again = DockerConfig::Load(tmp.path()).value();
  EXPECT_EQ(again.Get("localhost:5000").value().password, "pw:with:colons");
  ASSERT_TRUE(again.Remove("localhost:5000").ok());
  EXPECT_EQ(again.Remove("localhost:5000").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(again.Save().ok());
  EXPECT_TRUE(DockerConfig::Load(tmp.path()).value().Get("localhost:5000").value().empty());
  EXPECT_EQ(DockerConfig::ServerKey("docker.io"), "https://index.docker.io/v1/");

  // Missing file: empty; malformed: an error naming the file.
  auto empty = common::TempDir::Create("dockercfg").value();
  EXPECT_TRUE(DockerConfig::Load(empty.path()).value().Get("x").value().empty());
  ASSERT_TRUE(common::WriteFileAtomic(empty.path() + "/config.json", "{nope").ok());
  absl::StatusOr<DockerConfig> bad = DockerConfig::Load(empty.path());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("config.json"), std::string::npos);
}

TEST(AuthTest, CredentialHelpers) {
  auto tmp = common::TempDir::Create("credhelper").value();
  // A docker-credential-fake on PATH that answers `get` and records `store`/`erase`.
  std::string helper = tmp.path() + "/docker-credential-fake";
  ASSERT_TRUE(common::WriteFileAtomic(helper, R"(#!/bin/sh
read server
case "$1" in
  get) if [ "$server" = "helped.example.com" ]; then
         echo '{"ServerURL":"helped.example.com","Username":"hu","Secret":"hs"}'
       else echo "credentials not found in native keychain"; exit 1; fi ;;
  store) echo "$server" > ")" + tmp.path() + R"(/stored" ;;
  erase) echo "$server" > ")" + tmp.path() + R"(/erased" ;;
esac
)",
                                      0755)
                  .ok());
  std::string path = std::string(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
  setenv("PATH", (tmp.path() + ":" + path).c_str(), 1);
  ASSERT_TRUE(common::WriteFileAtomic(tmp.path() + "/config.json",
                                      R"({"credHelpers":{"helped.example.com":"fake"}})")
                  .ok());
  DockerConfig cfg = DockerConfig::Load(tmp.path()).value();
  Credentials c = cfg.Get("helped.example.com").value();
  EXPECT_EQ(c.username, "hu");
  EXPECT_EQ(c.password, "hs");
  EXPECT_TRUE(cfg.Get("other.example.com").value().empty());  // no helper: the file
  ASSERT_TRUE(cfg.Set("helped.example.com", {"a", "b"}).ok());
  EXPECT_NE(common::ReadFile(tmp.path() + "/stored").value().find("ServerURL"), std::string::npos);
  ASSERT_TRUE(cfg.Remove("helped.example.com").ok());
  EXPECT_EQ(common::ReadFile(tmp.path() + "/erased").value(), "helped.example.com\n");
  setenv("PATH", path.c_str(), 1);
}

}  // namespace
}  // namespace farm::scheduler::registry
