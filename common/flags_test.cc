#include "common/flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FlagsTest, DockerStyle) {
  FlagSet fs("t [OPTIONS] PATH", "test");
  std::vector<std::string> tags;
  std::string file;
  bool quiet = false, pull = false;
  int64_t n = 0;
  fs.Repeated("tag", 't', &tags, "tags");
  fs.String("file", 'f', &file, "file");
  fs.Bool("quiet", 'q', &quiet, "quiet");
  fs.Bool("pull", 0, &pull, "pull");
  fs.Int("n", 0, &n, "n");
  auto pos = fs.Parse({"-t", "a:1", "--tag=b", "ctx", "-fDocker", "-q", "--pull=false", "--n", "7",
                       "-", "--", "-x"});
  ASSERT_TRUE(pos.ok()) << pos.status();
  EXPECT_THAT(*pos, ElementsAre("ctx", "-", "-x"));
  EXPECT_THAT(tags, ElementsAre("a:1", "b"));
  EXPECT_EQ(file, "Docker");
  EXPECT_TRUE(quiet);
  EXPECT_FALSE(pull);
  EXPECT_EQ(n, 7);
  EXPECT_TRUE(fs.WasSet("file"));
}

TEST(FlagsTest, Errors) {
  FlagSet fs("t", "test");
  std::string file;
  bool b = false;
  fs.String("file", 'f', &file, "file");
  fs.Bool("b", 'b', &b, "b");
  EXPECT_THAT(std::string(fs.Parse({"--nope"}).status().message()), HasSubstr("--nope"));
  EXPECT_THAT(std::string(fs.Parse({"--file"}).status().message()), HasSubstr("argument"));
  EXPECT_THAT(std::string(fs.Parse({"-z"}).status().message()), HasSubstr("'z'"));
  EXPECT_FALSE(fs.Parse({"--b=maybe"}).ok());
}

TEST(FlagsTest, StopAtFirstPositional) {
  FlagSet fs("run IMAGE [ARGS]", "test");
  bool rm = false;
  fs.Bool("rm", 0, &rm, "rm");
  fs.StopAtFirstPositional();
  auto pos = fs.Parse({"--rm", "img", "--rm", "-x"});
  ASSERT_TRUE(pos.ok());
  EXPECT_THAT(*pos, ElementsAre("img", "--rm", "-x"));
}

TEST(FlagsTest, HelpListsFlags) {
  FlagSet fs("t", "does things");
  std::string file;
  fs.String("file", 'f', &file, "Name of the Dockerfile");
  auto pos = fs.Parse({"--help"});
  ASSERT_TRUE(pos.ok());
  EXPECT_TRUE(fs.help_requested());
  EXPECT_THAT(fs.Help(), HasSubstr("-f, --file string"));
  EXPECT_THAT(fs.Help(), HasSubstr("Name of the Dockerfile"));
}

TEST(FlagsTest, Sizes) {
  EXPECT_EQ(*ParseSize("10G"), 10LL << 30);
  EXPECT_EQ(*ParseSize("512MiB"), 512LL << 20);
  EXPECT_EQ(*ParseSize("1000"), 1000);
  EXPECT_FALSE(ParseSize("ten").ok());
  EXPECT_FALSE(ParseSize("10X").ok());
  EXPECT_EQ(HumanSize(999), "999B");
  EXPECT_EQ(HumanSize(1234567), "1.235MB");
  EXPECT_EQ(HumanBinarySize(300), "300 B");
  EXPECT_EQ(HumanBinarySize(512 << 10), "512 KiB");
  EXPECT_EQ(HumanBinarySize(int64_t{64} << 30), "64 GiB");
  EXPECT_EQ(HumanBinarySize(3 << 19), "1.5 MiB");
}

}  // namespace
}  // namespace farm::common
