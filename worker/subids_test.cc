// Subordinate id ranges: START:COUNT, /etc/subuid and /etc/subgid, and the errors an operator
// sees when a user has no usable range.
#include "worker/subids.h"

#include "absl/strings/match.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/sandbox_settings.h"

namespace farm::worker {
namespace {

TEST(SubIdsTest, ParseRange) {
  auto r = ParseSubIdRange("100000:65536");
  ASSERT_OK(r);
  EXPECT_EQ(r->uid_start, 100000u);
  EXPECT_EQ(r->gid_start, 100000u);
  EXPECT_EQ(r->count, 65536u);
  EXPECT_EQ(ParseSubIdRange("100000:200000")->count, 65536u);  // only 0..65535 are mapped
  for (const char* bad : {"", "100000", "x:65536", "100000:65535", "0:65536", "4294967000:65536"}) {
    EXPECT_EQ(ParseSubIdRange(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(absl::StrContains(ParseSubIdRange("100000:1000").status().message(), "65536"));
}

TEST(SubIdsTest, FindByNameOrUidFirstRangeBigEnough) {
  const char* subuid = "# comment\nalice:100000:65536\nfarm:200000:1000\nfarm:300000:65536\n";
  const char* subgid = "1001:400000:70000\n";
  auto r = FindSubIds("farm", 1001, subuid, subgid);
  ASSERT_OK(r);
  EXPECT_EQ(r->uid_start, 300000u);
  EXPECT_EQ(r->gid_start, 400000u);
  EXPECT_EQ(r->count, 65536u);
}

TEST(SubIdsTest, ClearErrors) {
  auto none = FindSubIds("bob", -1, "alice:100000:65536\n", "bob:100000:65536\n");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(
      absl::StrContains(none.status().message(), "no subordinate ids for bob in /etc/subuid"))
      << none.status();
  auto small = FindSubIds("bob", -1, "bob:100000:1000\n", "bob:100000:65536\n");
  EXPECT_EQ(small.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(small.status().message(), "holds 1000 ids")) << small.status();
  auto missing = SubIdsOfUser("bob", "/nonexistent/subuid", "/nonexistent/subgid");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "/nonexistent/subuid"));
}

TEST(SubIdsTest, SettingsAndConfigFile) {
  SandboxSettings s;
  EXPECT_FALSE(s.policy.rootless);
  ASSERT_OK(ApplySandboxSetting("rootless-steps", "true", &s));
  ASSERT_OK(ApplySandboxSetting("subid-range", "500000:65536", &s));
  EXPECT_TRUE(s.policy.rootless);
  EXPECT_EQ(s.policy.subids.uid_start, 500000u);
  auto bad = ApplySandboxSetting("subid-range", "500000:10", &s);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad.message(), "subid-range: ")) << bad;
  auto tmp = common::TempDir::Create("subids-test");
  ASSERT_OK(tmp);
  std::string conf = tmp->path() + "/sandbox.conf";
  ASSERT_OK(common::WriteFileAtomic(conf, "rootless-steps = yes\nsubid-range = 600000:65536\n"));
  auto read = ReadSandboxConfig(conf);
  ASSERT_OK(read);
  EXPECT_TRUE(read->policy.rootless);
  EXPECT_EQ(read->policy.subids.gid_start, 600000u);
}

}  // namespace
}  // namespace farm::worker
