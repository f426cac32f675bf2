// ADD <url> downloads under the step network's destination policy, with size and time limits.
// The servers live in a peer network namespace (worker/testing/test_hosts.h): nothing leaves
// this machine.
#include "worker/copy/fetch.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/testing/test_hosts.h"

namespace farm::worker::copy {
namespace {

// An HTTP/1.0 server: each path answers with a fixed raw response; "/slow" sends its headers
// and then nothing until the server stops.
class HttpServer {
 public:
  HttpServer(const std::string& addr, std::map<std::string, std::string> responses)
      : responses_(std::move(responses)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
    socklen_t len = sizeof(sa);
    bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    listen(fd_, 16);
    url_ = absl::StrCat("http://", addr, ":", port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~HttpServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string Url(const std::string& path) const { return url_ + path; }

 private:
  void Serve() {
    std::vector<int> stalled;
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 20) != 1) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      char buf[4096];
      ssize_t n = read(c, buf, sizeof(buf));
      std::string req(buf, n > 0 ? static_cast<size_t>(n) : 0);
      std::string path = req.size() > 4 ? req.substr(4, req.find(' ', 4) - 4) : "";
      auto it = responses_.find(path);
      std::string resp = it == responses_.end()
                             ? std::string("HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                             : it->second;
      (void)!write(c, resp.data(), resp.size());
      if (path == "/slow") {
        stalled.push_back(c);
      } else {
        close(c);
      }
    }
    for (int c : stalled) close(c);
  }
  std::map<std::string, std::string> responses_;
  int fd_ = -1, port_ = 0;
  std::string url_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string Ok(const std::string& body, bool length = true) {
  return absl::StrCat("HTTP/1.0 200 OK\r\n",
                      length ? absl::StrCat("Content-Length: ", body.size(), "\r\n") : "", "\r\n",
                      body);
}

std::string Redirect(const std::string& to) {
  return absl::StrCat("HTTP/1.0 302 Found\r\nLocation: ", to, "\r\nContent-Length: 0\r\n\r\n");
}

class FetchTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto hosts = testing::TestHosts::Create();
    ASSERT_OK(hosts);
    hosts_ = hosts->release();
    ASSERT_OK(hosts_->AddPeerAddress("169.254.169.254"));
    std::string big(1 << 20, 'x');
    // This host's own servers: on loopback and on its LAN address.
    loopback_ = new HttpServer("127.0.0.1", {{"/f", Ok("loopback\n")}});
    lan_ = new HttpServer(testing::TestHosts::kHostAddress, {{"/f", Ok("host\n")}});
    ASSERT_OK(hosts_->InPeer([&] {
      metadata_ = new HttpServer("169.254.169.254", {{"/latest", Ok("secret\n")}});
      peer_ = new HttpServer(testing::TestHosts::kPeerAddress,
                             {{"/small", Ok("hello\n")},
                              {"/big", Ok(big)},
                              {"/big-unknown-length", Ok(big, false)},
                              {"/slow", "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\nabc"},
                              {"/to-metadata", Redirect(metadata_->Url("/latest"))},
                              {"/to-loopback", Redirect(loopback_->Url("/f"))},
                              {"/to-small", Redirect("/small")}});
    }));
    auto t = common::TempDir::Create("fetch-test");
    ASSERT_OK(t);
    tmp_ = new common::TempDir(std::move(*t));
  }
  static void TearDownTestSuite() {
    delete peer_;
    delete metadata_;
    delete lan_;
    delete loopback_;
    delete hosts_;
    delete tmp_;
  }

  absl::StatusOr<std::string> Fetch(const FetchOptions& o, const std::string& url) {
    std::string dest = absl::StrCat(tmp_->path(), "/dl", counter_++);
    absl::StatusOr<Fetched> f = CurlFetcher(o)(url, dest, nullptr);
    if (!f.ok()) return f.status();
    return common::ReadFile(dest);
  }
  static FetchOptions Policy(std::vector<network::Cidr> deny = {},
                             std::vector<network::Cidr> allow = {}) {
    FetchOptions o;
    o.policy = std::make_shared<network::DestinationPolicy>(std::move(deny), std::move(allow));
    return o;
  }

  static testing::TestHosts* hosts_;
  static HttpServer *loopback_, *lan_, *metadata_, *peer_;
  static common::TempDir* tmp_;
  int counter_ = 0;
};

testing::TestHosts* FetchTest::hosts_ = nullptr;
HttpServer* FetchTest::loopback_ = nullptr;
HttpServer* FetchTest::lan_ = nullptr;
HttpServer* FetchTest::metadata_ = nullptr;
HttpServer* FetchTest::peer_ = nullptr;
common::TempDir* FetchTest::tmp_ = nullptr;

void ExpectDenied(const absl::StatusOr<std::string>& r, absl::string_view why) {
  ASSERT_FALSE(r.ok()) << *r;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), why)) << r.status();
}

TEST_F(FetchTest, WithoutAPolicyEverythingIsReachable) {
  // The topology works: what the policy refuses below is the policy's doing.
  FetchOptions none;
  EXPECT_EQ(*Fetch(none, loopback_->Url("/f")), "loopback\n");
  EXPECT_EQ(*Fetch(none, lan_->Url("/f")), "host\n");
  EXPECT_EQ(*Fetch(none, metadata_->Url("/latest")), "secret\n");
  EXPECT_EQ(*Fetch(none, peer_->Url("/to-metadata")), "secret\n");
}

TEST_F(FetchTest, PolicyRefusesThisHostLinkLocalAndDeniedRanges) {
  FetchOptions o = Policy();
  EXPECT_EQ(*Fetch(o, peer_->Url("/small")), "hello\n");
  EXPECT_EQ(*Fetch(o, peer_->Url("/to-small")), "hello\n");
  ExpectDenied(Fetch(o, loopback_->Url("/f")), "127.0.0.0/8, always denied");
  // ... unless the operator names the address (allow-network 127.0.0.1/32).
  EXPECT_EQ(*Fetch(Policy({}, {*network::Cidr::Parse("127.0.0.1")}), loopback_->Url("/f")),
            "loopback\n");
  ExpectDenied(Fetch(o, lan_->Url("/f")), "an address of the worker host itself");
  ExpectDenied(Fetch(o, metadata_->Url("/latest")), "169.254.0.0/16, always denied");
  // Redirects are judged too.
  ExpectDenied(Fetch(o, peer_->Url("/to-metadata")), "169.254.169.254 is not reachable");
  ExpectDenied(Fetch(o, peer_->Url("/to-loopback")), "127.0.0.1 is not reachable");
  // The operator's ranges, and exceptions to them.
  ExpectDenied(Fetch(Policy(network::PrivateRanges()), peer_->Url("/small")),
               "10.0.0.0/8, denied by the operator");
  EXPECT_EQ(*Fetch(Policy(network::PrivateRanges(), {*network::Cidr::Parse("10.77.0.2")}),
                   peer_->Url("/small")),
            "hello\n");
}

TEST_F(FetchTest, SizeLimit) {
  FetchOptions o = Policy();
  o.max_bytes = 1000;
  EXPECT_EQ(*Fetch(o, peer_->Url("/small")), "hello\n");
  // Announced (Content-Length) and discovered while streaming.
  for (const char* path : {"/big", "/big-unknown-length"}) {
    absl::StatusOr<std::string> r = Fetch(o, peer_->Url(path));
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
    EXPECT_TRUE(absl::StrContains(r.status().message(), "limit of 1000 bytes")) << r.status();
  }
}

TEST_F(FetchTest, TimeLimit) {
  FetchOptions o = Policy();
  o.timeout = absl::Milliseconds(300);
  absl::StatusOr<std::string> r = Fetch(o, peer_->Url("/slow"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded) << r.status();
}

}  // namespace
}  // namespace farm::worker::copy
