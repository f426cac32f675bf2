// The operator's sandbox settings: parsing, defaults (embedded vs farm-worker), and how they
// land in the policy.
#include "worker/sandbox_settings.h"

#include "absl/strings/match.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace farm::worker {
namespace {

std::vector<std::string> Ranges(const std::vector<network::Cidr>& c) {
  std::vector<std::string> out;
  for (const network::Cidr& r : c) out.push_back(r.ToString());
  return out;
}

TEST(SandboxSettingsTest, NetworkDefaultsEmbeddedAndWorker) {
  SandboxSettings embedded;
  EXPECT_TRUE(embedded.policy.isolate_network);
  EXPECT_TRUE(embedded.policy.network.deny.empty());  // farm build: the user's own machine
  SandboxSettings worker = WorkerSandboxDefaults();
  EXPECT_TRUE(worker.policy.isolate_network);
  EXPECT_EQ(Ranges(worker.policy.network.deny), Ranges(network::PrivateRanges()));
}

TEST(SandboxSettingsTest, DenyNetworkReplacesTheDefaultThenAccumulates) {
  SandboxSettings s = WorkerSandboxDefaults();
  ASSERT_OK(ApplySandboxSetting("deny-network", "192.0.2.0/24", &s));
  ASSERT_OK(ApplySandboxSetting("deny-network", "198.51.100.7", &s));
  EXPECT_EQ(Ranges(s.policy.network.deny),
            (std::vector<std::string>{"192.0.2.0/24", "198.51.100.7/32"}));
  SandboxSettings none = WorkerSandboxDefaults();
  ASSERT_OK(ApplySandboxSetting("deny-network", "none", &none));
  EXPECT_TRUE(none.policy.network.deny.empty());
  SandboxSettings priv;
  ASSERT_OK(ApplySandboxSetting("deny-network", "private", &priv));
  EXPECT_EQ(Ranges(priv.policy.network.deny), Ranges(network::PrivateRanges()));
  ASSERT_OK(ApplySandboxSetting("allow-network", "10.1.2.0/24", &priv));
  EXPECT_EQ(Ranges(priv.policy.network.allow), std::vector<std::string>{"10.1.2.0/24"});
}

TEST(SandboxSettingsTest, BadValuesNameTheSetting) {
  SandboxSettings s;
  struct Case {
    const char *name, *value, *message;
  };
  for (const Case& c : {Case{"deny-network", "10.0.0.0/33", "deny-network: "},
                        Case{"allow-network", "nope", "allow-network: "},
                        Case{"dns", "fd00::1", "dns: steps have IPv4 only"},
                        Case{"step-subnet", "10.0.0.0/8", "want an IPv4 range from /16 to /30"},
                        Case{"step-subnet", "198.18.0.0/31", "want an IPv4 range from /16 to /30"},
                        Case{"default-network", "bridge", "want isolated or host"},
                        Case{"add-max-size", "0", "must be positive"},
                        Case{"extract-max-size", "0", "must be positive"},
                        Case{"add-timeout", "soon", "want a duration"}}) {
    absl::Status st = ApplySandboxSetting(c.name, c.value, &s);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << c.name << " " << c.value;
    EXPECT_TRUE(absl::StrContains(st.message(), c.message)) << st;
  }
}

TEST(SandboxSettingsTest, ConfigFileSetsTheNetworkAndAddLimits) {
  auto dir = common::TempDir::Create("settings-test");
  ASSERT_OK(dir);
  std::string path = dir->path() + "/sandbox.conf";
  ASSERT_OK(common::WriteFileAtomic(path,
                                    "# the operator's choices\n"
                                    "default-network = host\n"
                                    "dns = 192.0.2.53\n"
                                    "step-subnet = 198.18.64.0/24\n"
                                    "add-max-size = 1G\n"
                                    "add-timeout = 90s\n"
                                    "extract-max-size = 2G\n"));
  auto s = ReadSandboxConfig(path);
  ASSERT_OK(s);
  EXPECT_FALSE(s->policy.isolate_network);
  ASSERT_EQ(s->policy.network.dns.size(), 1u);
  EXPECT_EQ(s->policy.network.dns[0].ToString(), "192.0.2.53");
  EXPECT_EQ(s->policy.network.pool, "198.18.64.0/24");
  EXPECT_EQ(s->policy.add_max_bytes, int64_t{1} << 30);
  EXPECT_EQ(s->policy.add_timeout, absl::Seconds(90));
  EXPECT_EQ(s->policy.extract_max_bytes, int64_t{2} << 30);
  EXPECT_EQ(SandboxSettings().policy.extract_max_bytes, int64_t{64} << 30);
  ASSERT_OK(common::WriteFileAtomic(path, "deny-network = 300.0.0.0/8\n"));
  EXPECT_TRUE(absl::StartsWith(ReadSandboxConfig(path).status().message(), path + ":1: "));
}

}  // namespace
}  // namespace farm::worker
