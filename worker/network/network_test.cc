// Address ranges, the destination policy, resolver selection and the firewall rules' text.
// (The rules at work, with real namespaces, are tested in worker/sandbox and tests/sandbox.)
#include <arpa/inet.h>

#include "absl/strings/match.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/network/cidr.h"
#include "worker/network/destination_policy.h"
#include "worker/network/step_network.h"

namespace farm::worker::network {
namespace {

IpAddress Ip(const char* s) { return *IpAddress::Parse(s); }
Cidr Net(const char* s) { return *Cidr::Parse(s); }

TEST(CidrTest, ParseAndContains) {
  Cidr c = Net("10.1.2.77/24");
  EXPECT_EQ(c.ToString(), "10.1.2.0/24");
  EXPECT_TRUE(c.Contains(Ip("10.1.2.200")));
  EXPECT_FALSE(c.Contains(Ip("10.1.3.1")));
  EXPECT_FALSE(c.Contains(Ip("::ffff:10.1.2.1")));  // v6 never matches a v4 range
  EXPECT_EQ(Net("192.0.2.7").ToString(), "192.0.2.7/32");
  EXPECT_TRUE(Net("fc00::/7").Contains(Ip("fd12::1")));
  EXPECT_TRUE(Net("0.0.0.0/0").Contains(Ip("203.0.113.80")));
  for (const char* bad : {"10.0.0.0/33", "nope", "10.0.0/8", "fe80::/129", "1.2.3.4/x"}) {
    EXPECT_FALSE(Cidr::Parse(bad).ok()) << bad;
  }
  // A v4-mapped socket address is judged as the v4 address it carries.
  struct sockaddr_in6 sa6 = {};
  sa6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "::ffff:127.0.0.1", &sa6.sin6_addr);
  IpAddress a;
  ASSERT_TRUE(IpAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&sa6), &a));
  EXPECT_FALSE(a.v6);
  EXPECT_EQ(a.ToString(), "127.0.0.1");
}

TEST(DestinationPolicyTest, FixedDenialsThenAllowThenDeny) {
  DestinationPolicy p(PrivateRanges(), {Net("10.1.2.0/24")});
  EXPECT_OK(p.Check(Ip("203.0.113.80")));  // the apt mirror here: public
  EXPECT_OK(p.Check(Ip("10.1.2.3")));      // the operator's exception
  absl::Status s = p.Check(Ip("10.9.9.9"));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(absl::StrContains(s.message(), "10.0.0.0/8, denied by the operator")) << s;
  for (const char* always :
       {"127.0.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.1", "::1", "fe80::1"}) {
    s = p.Check(Ip(always));
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << always;
    EXPECT_TRUE(absl::StrContains(s.message(), "always denied")) << s;
  }
  // An allow list cannot open the always-denied ranges, unless it names an address in one.
  EXPECT_FALSE(DestinationPolicy({}, {Net("0.0.0.0/0")}).Check(Ip("169.254.169.254")).ok());
  DestinationPolicy named({}, {Net("127.0.0.1/32"), Net("10.0.0.0/8")});
  EXPECT_OK(named.Check(Ip("127.0.0.1")));
  EXPECT_FALSE(named.Check(Ip("127.0.0.2")).ok());
  EXPECT_FALSE(named.Check(Ip("169.254.169.254")).ok());
  ASSERT_EQ(named.ExplicitExceptions().size(), 1u);
  EXPECT_EQ(named.ExplicitExceptions()[0].ToString(), "127.0.0.1/32");
  // The host's own addresses.
  for (const IpAddress& own : HostAddresses()) {
    s = DestinationPolicy().Check(own);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << own.ToString();
  }
}

TEST(StepNetworkTest, ResolversSkipLoopbackAndIpv6) {
  bool loopback = false;
  std::vector<IpAddress> r = StepResolvers(
      "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver fd00::1\n"
      "search example.com\nnameserver 1.1.1.1\n",
      &loopback);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].ToString(), "10.255.255.53");
  EXPECT_EQ(r[1].ToString(), "1.1.1.1");
  EXPECT_TRUE(loopback);
}

}  // namespace
}  // namespace farm::worker::network
