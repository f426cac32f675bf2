#include "oci/config.h"

#include "gtest/gtest.h"

namespace farm::oci {
namespace {

TEST(ImageConfigTest, RoundTripKeepsKnownAndUnknownFields) {
  const char* kIn = R"({"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z",
    "config":{"Env":["PATH=/usr/bin","A=b=c"],"Cmd":["sh"],"Entrypoint":null,
      "ExposedPorts":{"80/tcp":{}},"Labels":{"k":"v"},"WorkingDir":"/w","User":"1:2",
      "Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":30000000000,"Retries":3},
      "OnBuild":["RUN echo hi"],"Shell":["/bin/bash","-c"],"Hostname":"h"},
    "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},
    "history":[{"created_by":"x","empty_layer":true},{"created_by":"y"}],
    "moby.buildkit.buildinfo.v1":"abc"})";
  auto c = ImageConfig::FromJson(kIn);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.GetEnv("A").value(), "b=c");
  EXPECT_FALSE(c->config.GetEnv("B").has_value());
  EXPECT_FALSE(c->config.entrypoint.has_value());
  ASSERT_TRUE(c->config.cmd.has_value());
  EXPECT_EQ(c->config.healthcheck->interval_ns, 30000000000);
  EXPECT_EQ(c->config.extra.at("Hostname"), "\"h\"");
  EXPECT_EQ(c->extra.at("moby.buildkit.buildinfo.v1"), "\"abc\"");
  ASSERT_EQ(c->history.size(), 2u);
  EXPECT_TRUE(c->history[0].empty_layer);

  std::string out = c->ToJson();
  auto again = ImageConfig::FromJson(out);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ToJson(), out);
  EXPECT_NE(out.find("\"Hostname\":\"h\""), std::string::npos);
  EXPECT_NE(out.find("\"moby.buildkit.buildinfo.v1\":\"abc\""), std::string::npos);
}

TEST(ImageConfigTest, EmptyCmdDiffersFromAbsent) {
  ImageConfig a, b;
  b.config.cmd = std::vector<std::string>{};
  EXPECT_EQ(a.ToJson().find("Cmd"), std::string::npos);
  EXPECT_NE(b.ToJson().find("\"Cmd\":[]"), std::string::npos);
}

TEST(ImageConfigTest, SetEnvReplacesInPlace) {
  ContainerConfig c;
  c.SetEnv("A", "1");
  c.SetEnv("B", "2");
  c.SetEnv("A", "3");
  EXPECT_EQ(c.env, (std::vector<std::string>{"A=3", "B=2"}));
}

TEST(ImageConfigTest, BadInputIsAnErrorNotACrash) {
  EXPECT_FALSE(ImageConfig::FromJson("{").ok());
  EXPECT_FALSE(ImageConfig::FromJson("[]").ok());
  EXPECT_FALSE(ImageConfig::FromJson(R"({"config":{"Env":"x"}})").ok());
  EXPECT_FALSE(ImageConfig::FromJson(R"({"config":{"Env":[1]}})").ok());
  EXPECT_FALSE(ImageConfig::FromJson(R"({"history":[{"empty_layer":"yes"}]})").ok());
}

TEST(ImageConfigTest, EntrypointResetsAnInheritedCmd) {
  ContainerConfig base;
  base.cmd = std::vector<std::string>{"/bin/sh"};
  ContainerConfig c = base;
  SetEntrypoint(&c, {"/app"}, /*cmd_set_in_stage=*/false);
  EXPECT_EQ(*c.entrypoint, std::vector<std::string>{"/app"});
  EXPECT_FALSE(c.cmd.has_value());
  ContainerConfig d = base;
  d.cmd = std::vector<std::string>{"--flag"};
  SetEntrypoint(&d, {"/app"}, /*cmd_set_in_stage=*/true);
  EXPECT_EQ(*d.cmd, std::vector<std::string>{"--flag"});
}

TEST(ImageConfigTest, FormatCreated) {
  EXPECT_EQ(FormatCreated(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatCreated(1700000000), "2023-11-14T22:13:20Z");
}

}  // namespace
}  // namespace farm::oci
