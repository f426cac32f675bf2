#include "worker/agent/connect.h"

#include <grpcpp/channel.h>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/agent/testing/fake_hub.h"

namespace farm::worker::agent {
namespace {

using ::testing::HasSubstr;

TEST(ParsePeerAddressTest, AcceptsHostPortFormsAndReturnsTheTarget) {
  EXPECT_EQ(*ParsePeerAddress("x", "sched:7070"), "sched:7070");
  EXPECT_EQ(*ParsePeerAddress("x", "10.0.0.1:9092"), "10.0.0.1:9092");
  EXPECT_EQ(*ParsePeerAddress("x", "[::1]:80"), "[::1]:80");
  EXPECT_EQ(*ParsePeerAddress("x", "grpc://10.0.0.1:9092"), "10.0.0.1:9092");
  EXPECT_EQ(*ParsePeerAddress("x", "unix:/run/farm.sock"), "unix:/run/farm.sock");
}

TEST(ParsePeerAddressTest, RejectsWhatItCannotDialNamingTheFlag) {
  struct Case {
    const char* address;
    const char* why;
  } cases[] = {
      {"", "empty address"},
      {"nohost", "no port"},
      {":7070", "no port"},
      {"::1:80", "an IPv6 address must be in brackets"},
      {"[::1:80", "an IPv6 address must be in brackets"},
      {"host:0", "the port must be a number from 1 to 65535"},
      {"host:70000", "the port must be a number from 1 to 65535"},
      {"host:http", "the port must be a number from 1 to 65535"},
      {"grpcs://sched:443", "TLS is not supported yet"},
      {"https://sched:443", "TLS is not supported yet"},
      {"unix:", "empty socket path"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> r = ParsePeerAddress("--scheduler", c.address);
    ASSERT_FALSE(r.ok()) << c.address;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.address;
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr(absl::StrCat("--scheduler \"", c.address, "\": ", c.why)));
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("(want HOST:PORT)"));
  }
}

// An address where nothing listens (a server was there a moment ago).
std::string DeadAddress() {
  auto hub = testing::FakeWorkerHub::Start({});
  if (hub == nullptr) return "";
  std::string address = hub->address();
  hub->Stop();
  return address;
}

TEST(WaitConnectedTest, ReadyWhenAServerAnswers) {
  auto hub = testing::FakeWorkerHub::Start({});
  ASSERT_NE(hub, nullptr);
  auto channel = NewChannel(hub->address(), Keepalive{absl::Minutes(5), absl::Seconds(20)});
  EXPECT_TRUE(WaitConnected(channel.get(), absl::Seconds(10), [] { return false; }).ok());
}

TEST(WaitConnectedTest, ARefusedConnectionFailsFastAsUnavailable) {
  auto channel = NewChannel(DeadAddress(), std::nullopt);
  absl::Time start = absl::Now();
  absl::Status s = WaitConnected(channel.get(), absl::Seconds(20), [] { return false; });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("connection failed"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // not the whole timeout
}

// A channel that already failed sits in gRPC's own reconnect backoff (at least 160 ms here):
// that failure is not this call's attempt, so the call waits, up to its timeout or a stop.
TEST(WaitConnectedTest, AChannelInItsOwnBackoffIsWaitedOnUntilTheTimeout) {
  auto channel = NewChannel(DeadAddress(), std::nullopt);
  ASSERT_EQ(WaitConnected(channel.get(), absl::Seconds(20), [] { return false; }).code(),
            absl::StatusCode::kUnavailable);
  absl::Status s = WaitConnected(channel.get(), absl::Milliseconds(50), [] { return false; });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("no connection within 50ms"));
}

TEST(WaitConnectedTest, StopsWhenAskedTo) {
  auto channel = NewChannel(DeadAddress(), std::nullopt);
  ASSERT_EQ(WaitConnected(channel.get(), absl::Seconds(20), [] { return false; }).code(),
            absl::StatusCode::kUnavailable);
  absl::Status s = WaitConnected(channel.get(), absl::Seconds(30), [] { return true; });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("shutting down"));
}

}  // namespace
}  // namespace farm::worker::agent
