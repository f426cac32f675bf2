#include "cli/format.h"

#include "gtest/gtest.h"

namespace farm::cli {
namespace {

TEST(FormatTest, SizesLikeGoUnits) {
  EXPECT_EQ(DockerSize(0), "0B");
  EXPECT_EQ(DockerSize(512), "512B");
  EXPECT_EQ(DockerSize(7332941), "7.33MB");
  EXPECT_EQ(DockerSize(1000), "1kB");
  EXPECT_EQ(DockerSize(123456789012), "123GB");
  EXPECT_EQ(DockerSize(999999), "1e+03kB");  // go-units prints this too
}

TEST(FormatTest, DurationsLikeGoUnits) {
  EXPECT_EQ(HumanDuration(absl::Milliseconds(500)), "Less than a second");
  EXPECT_EQ(HumanDuration(absl::Seconds(1)), "1 second");
  EXPECT_EQ(HumanDuration(absl::Seconds(45)), "45 seconds");
  EXPECT_EQ(HumanDuration(absl::Seconds(90)), "About a minute");
  EXPECT_EQ(HumanDuration(absl::Minutes(59)), "59 minutes");
  EXPECT_EQ(HumanDuration(absl::Minutes(70)), "About an hour");
  EXPECT_EQ(HumanDuration(absl::Hours(47)), "47 hours");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 10)), "10 days");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 20)), "2 weeks");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 100)), "3 months");
  EXPECT_EQ(HumanDuration(absl::Hours(24 * 365 * 3)), "3 years");
  absl::Time now = absl::FromUnixSeconds(86400 * 365 * 56 + 86400 * 14);
  EXPECT_EQ(CreatedSince("1970-01-01T00:00:00Z", now), "56 years ago");
  EXPECT_EQ(CreatedSince("", now), "N/A");
}

TEST(FormatTest, EllipsisAndIds) {
  EXPECT_EQ(Ellipsis("short", 45), "short");
  std::string long_cmd = "RUN /bin/sh -c apt-get update && apt-get install -y curl # buildkit";
  std::string e = Ellipsis(long_cmd, 45);
  EXPECT_EQ(e, long_cmd.substr(0, 44) + "…");
  EXPECT_EQ(ShortId("sha256:0123456789abcdef0123"), "0123456789ab");
}

TEST(FormatTest, TableLikeDockersTabwriter) {
  Table t({"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"});
  t.AddRow({"alpine", "latest", "c1aabb73d233", "2 weeks ago", "7.33MB"});
  EXPECT_EQ(t.Render(),
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n"
            "alpine       latest    c1aabb73d233   2 weeks ago   7.33MB\n");
}

TEST(FormatTest, TemplatesAndTableFormats) {
  nlohmann::json item = {
      {"Repository", "alpine"}, {"Tag", "3.19"}, {"Labels", {{"a", "1"}}}, {"List", {"x", "y"}}};
  EXPECT_EQ(RenderTemplate("{{.Repository}}:{{ .Tag }}", item).value(), "alpine:3.19");
  EXPECT_EQ(RenderTemplate("{{json .Labels}}", item).value(), "{\"a\":\"1\"}");
  EXPECT_EQ(RenderTemplate("{{.List}}\\t{{.Labels.a}}", item).value(), "[x y]\t1");
  EXPECT_FALSE(RenderTemplate("{{.Nope}}", item).ok());
  EXPECT_FALSE(RenderTemplate("{{.Repository", item).ok());
  EXPECT_FALSE(RenderTemplate("{{range .List}}", item).ok());
  absl::StatusOr<std::string> table = RenderFormat("table {{.Repository}}\\t{{.Tag}}", {item},
                                                   {{"Repository", "REPOSITORY"}, {"Tag", "TAG"}});
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(*table, "REPOSITORY   TAG\nalpine       3.19\n");
  EXPECT_EQ(RenderFormat("{{.Tag}}", {item, item}, {}).value(), "3.19\n3.19\n");
}

TEST(FormatTest, JsonEscapedAsGoWritesIt) {
  // Docker's {{json .}} and inspect (Go's encoding/json) escape <, > and & in strings.
  EXPECT_EQ(
      RenderTemplate("{{json .}}", nlohmann::json{{"Digest", "<none>"}, {"Cmd", "a && b"}}).value(),
      "{\"Cmd\":\"a \\u0026\\u0026 b\",\"Digest\":\"\\u003cnone\\u003e\"}");
  EXPECT_EQ(GoJsonEscape("\"\xE2\x80\xA8\""), "\"\\u2028\"");
}

TEST(FormatTest, CreatedAtLikeGosRfc3339) {
  EXPECT_EQ(CreatedAt("2026-12-03T09:27:54.833528317Z"), "2026-12-03T09:27:54Z");
  EXPECT_EQ(CreatedAt("1970-01-01T00:00:00Z"), "1970-01-01T00:00:00Z");
  EXPECT_EQ(CreatedAt("2026-12-03T10:27:54+01:00"), "2026-12-03T09:27:54Z");
  EXPECT_EQ(CreatedAt(""), "N/A");
}

}  // namespace
}  // namespace farm::cli
