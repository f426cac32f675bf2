#include "common/http/http_server.h"

#include <unistd.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/http/test_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::http {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::unique_ptr<HttpServer> Start(HttpServer::Options options = {}) {
  if (options.listen.empty()) options.listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Create(std::move(options));
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : nullptr;
}

std::string Url(const HttpServer& s, absl::string_view path) {
  return absl::StrCat("http://127.0.0.1:", s.port(), path);
}

TEST(HttpServerTest, ServesAHandlerOnAnEphemeralPort) {
  std::unique_ptr<HttpServer> server = Start();
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_EQ(server->address(), absl::StrCat("127.0.0.1:", server->port()));
  Request seen;
  absl::Mutex mu;
  ASSERT_TRUE(server
                  ->Handle("/echo",
                           [&](const Request& r) {
                             absl::MutexLock l(&mu);
                             seen = r;
                             Response resp;
                             resp.status = 201;
                             resp.content_type = "application/json";
                             resp.body = "{\"ok\":true}";
                             resp.headers.emplace_back("X-Farm", "yes");
                             return resp;
                           })
                  .ok());
  FetchOptions get;
  get.headers = {"X-Tenant: team-a", "x-multi: 1", "X-Multi: 2"};
  absl::StatusOr<ClientResponse> r =
      Fetch(Url(*server, "/echo?state=running&state=queued&q=a%20b+c&empty=&flag"), get);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "{\"ok\":true}");
  EXPECT_EQ(r->headers["content-type"], "application/json");
  EXPECT_EQ(r->headers["x-farm"], "yes");
  EXPECT_EQ(r->headers["content-length"], "11");
  absl::MutexLock l(&mu);
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.path, "/echo");
  EXPECT_EQ(seen.query.count("state"), 2u);
  EXPECT_EQ(seen.QueryValue("state"), "running");
  EXPECT_EQ(seen.QueryValue("q"), "a b c");
  EXPECT_EQ(seen.query.count("empty"), 1u);
  EXPECT_EQ(seen.query.count("flag"), 1u);
  EXPECT_EQ(seen.QueryValue("missing"), "");
  EXPECT_EQ(seen.Header("X-TENANT"), "team-a");
  EXPECT_EQ(seen.Header("x-multi"), "1, 2");
  EXPECT_EQ(seen.remote_address, "127.0.0.1");
}

TEST(HttpServerTest, RoutesExactThenLongestPrefixElse404) {
  std::unique_ptr<HttpServer> server = Start();
  ASSERT_NE(server, nullptr);
  auto reply = [](std::string what) {
    return [what](const Request& r) { return Response::Text(200, what + " " + r.path); };
  };
  ASSERT_TRUE(server->Handle("/builds", reply("list")).ok());
  ASSERT_TRUE(server->Handle("/builds/*", reply("build")).ok());
  ASSERT_TRUE(server->Handle("/builds/b1/steps/*", reply("step")).ok());
  ASSERT_TRUE(server->Handle("/builds/special", reply("special")).ok());
  EXPECT_EQ(server->Handle("nope", reply("x")).code(), absl::StatusCode::kInvalidArgument);
  struct Case {
    const char* path;
    long status;
    const char* body;
  };
  for (const Case& c :
       {Case{"/builds", 200, "list /builds"}, Case{"/builds/b1", 200, "build /builds/b1"},
        Case{"/builds/b1/steps/3", 200, "step /builds/b1/steps/3"},
        Case{"/builds/special", 200, "special /builds/special"},
        Case{"/builds%2Fb2", 200, "build /builds/b2"},  // decoded first
        Case{"/buildsx", 404, "not found\n"}, Case{"/", 404, "not found\n"},
        Case{"/other", 404, "not found\n"}}) {
    absl::StatusOr<ClientResponse> r = Fetch(Url(*server, c.path));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, c.status) << c.path;
    EXPECT_EQ(r->body, c.body) << c.path;
  }
  // A handler can be replaced while serving.
  ASSERT_TRUE(server->Handle("/builds", reply("new")).ok());
  EXPECT_EQ(Fetch(Url(*server, "/builds"))->body, "new /builds");
}

TEST(HttpServerTest, PostBodiesAndHead) {
  std::unique_ptr<HttpServer> server = Start();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server
                  ->Handle("/post",
                           [](const Request& r) {
                             return Response::Text(
                                 200, absl::StrCat(r.method, " ", r.body.size(), " ", r.body));
                           })
                  .ok());
  FetchOptions post;
  post.method = "POST";
  post.body = "hello body";
  EXPECT_EQ(Fetch(Url(*server, "/post"), post)->body, "POST 10 hello body");
  // HEAD: the headers of a GET, no body.
  FetchOptions head;
  head.method = "HEAD";
  absl::StatusOr<ClientResponse> h = Fetch(Url(*server, "/post"), head);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "");
  EXPECT_EQ(h->headers["content-length"], "7");  // "HEAD 0 "
  // A chunked body is read too.
  absl::StatusOr<std::string> raw =
      RawExchange(server->port(),
                  "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
                  absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_THAT(*raw, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(*raw, HasSubstr("POST 11 hello world"));
}

TEST(HttpServerTest, RefusesOversizedBodiesAndHeaders) {
  HttpServer::Options o;
  o.max_body_bytes = 100;
  o.max_header_bytes = 2048;
  // Longer than the deadlines below: a refusal must not wait for the client (CivetWeb would
  // otherwise read and drop the declared body first).
  o.io_timeout = absl::Seconds(60);
  std::unique_ptr<HttpServer> server = Start(o);
  ASSERT_NE(server, nullptr);
  std::atomic<int> calls{0};
  ASSERT_TRUE(server
                  ->Handle("/post",
                           [&](const Request& r) {
                             ++calls;
                             return Response::Text(200, "ok");
                           })
                  .ok());
  FetchOptions post;
  post.method = "POST";
  post.body = std::string(100, 'a');
  EXPECT_EQ(Fetch(Url(*server, "/post"), post)->status, 200);
  post.body = std::string(101, 'a');
  EXPECT_EQ(Fetch(Url(*server, "/post"), post)->status, 413);
  // Content-Length is believed before anything is read: a huge one is refused at once.
  absl::StatusOr<std::string> big = RawExchange(
      server->port(), "POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n",
      absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_THAT(*big, StartsWith("HTTP/1.1 413"));
  // Chunked bodies are cut off at the limit.
  std::string chunked = "POST /post HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 20; ++i) absl::StrAppend(&chunked, "a\r\n0123456789\r\n");
  absl::StrAppend(&chunked, "0\r\n\r\n");
  absl::StatusOr<std::string> cut =
      RawExchange(server->port(), chunked, absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(cut.ok()) << cut.status();
  EXPECT_THAT(*cut, StartsWith("HTTP/1.1 413"));
  EXPECT_EQ(calls.load(), 1);
  // Headers beyond max_header_bytes never reach a handler.
  FetchOptions fat;
  fat.headers = {absl::StrCat("X-Big: ", std::string(4096, 'h'))};
  absl::StatusOr<ClientResponse> r = Fetch(Url(*server, "/post"), fat);
  if (r.ok()) {
    EXPECT_GE(r->status, 400);
  }  // else the connection was dropped: also refused
  EXPECT_EQ(calls.load(), 1);
  // The server is fine afterwards.
  EXPECT_EQ(Fetch(Url(*server, "/post"))->status, 200);
}

TEST(HttpServerTest, AHandlerThatThrowsGetsA500AndTheServerGoesOn) {
  std::vector<std::string> logged;
  absl::Mutex mu;
  HttpServer::Options o;
  o.log = [&](absl::string_view line) {
    absl::MutexLock l(&mu);
    logged.emplace_back(line);
  };
  std::unique_ptr<HttpServer> server = Start(o);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(
      server->Handle("/throw", [](const Request&) -> Response { throw std::runtime_error("boom"); })
          .ok());
  ASSERT_TRUE(server->Handle("/ok", [](const Request&) { return Response::Text(200, "ok"); }).ok());
  absl::StatusOr<ClientResponse> r = Fetch(Url(*server, "/throw"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(Fetch(Url(*server, "/ok"))->status, 200);
  absl::MutexLock l(&mu);
  EXPECT_THAT(logged, ::testing::Contains(HasSubstr("boom")));
}

// A client that sends half a request holds a worker only until io_timeout; with one thread,
// the next request is served once that happens.
TEST(HttpServerTest, ASlowClientIsCutOffAfterTheTimeout) {
  HttpServer::Options o;
  o.threads = 1;
  o.io_timeout = absl::Milliseconds(300);
  std::unique_ptr<HttpServer> server = Start(o);
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Handle("/ok", [](const Request&) { return Response::Text(200, "ok"); }).ok());
  const int fd = ConnectLoopback(server->port());
  ASSERT_GE(fd, 0);
  const char partial[] = "GET /ok HTTP/1.1\r\nHost: x\r\n";  // never finished
  ASSERT_EQ(write(fd, partial, sizeof(partial) - 1), static_cast<ssize_t>(sizeof(partial) - 1));
  const absl::Time start = absl::Now();
  EXPECT_TRUE(WaitForClose(fd, start + absl::Seconds(20)));
  close(fd);
  FetchOptions quick;
  quick.timeout = absl::Seconds(20);
  absl::StatusOr<ClientResponse> r = Fetch(Url(*server, "/ok"), quick);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
}

TEST(HttpServerTest, ManyConcurrentClientsOnFewThreads) {
  HttpServer::Options o;
  o.threads = 2;
  o.connection_queue = 4;
  std::unique_ptr<HttpServer> server = Start(o);
  ASSERT_NE(server, nullptr);
  std::atomic<int> in_flight{0}, max_in_flight{0};
  ASSERT_TRUE(server
                  ->Handle("/work",
                           [&](const Request& r) {
                             const int now = ++in_flight;
                             int seen = max_in_flight.load();
                             while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
                             }
                             --in_flight;
                             return Response::Text(200, r.QueryValue("i"));
                           })
                  .ok());
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t) {
    clients.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        const std::string id = absl::StrCat(t, "-", i);
        absl::StatusOr<ClientResponse> r = Fetch(Url(*server, "/work?i=" + id));
        if (r.ok() && r->status == 200 && r->body == id) ++ok;
      }
    });
  }
  for (std::thread& c : clients) c.join();
  EXPECT_EQ(ok.load(), 8 * 25);
  EXPECT_LE(max_in_flight.load(), 2);  // the pool is the bound
}

TEST(HttpServerTest, ShutdownWaitsForRunningHandlersAndStopsListening) {
  std::unique_ptr<HttpServer> server = Start();
  ASSERT_NE(server, nullptr);
  absl::Notification entered, release;
  std::atomic<bool> finished{false};
  ASSERT_TRUE(server
                  ->Handle("/slow",
                           [&](const Request&) {
                             entered.Notify();
                             release.WaitForNotification();
                             finished = true;
                             return Response::Text(200, "done");
                           })
                  .ok());
  const int port = server->port();
  std::thread client([&] { Fetch(Url(*server, "/slow")).IgnoreError(); });
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::thread stopper([&] { server->Shutdown(); });
  release.Notify();
  stopper.join();
  EXPECT_TRUE(finished.load());
  server->Shutdown();  // idempotent
  client.join();
  EXPECT_EQ(ConnectLoopback(port), -1);
}

TEST(HttpServerTest, BadListenAddresses) {
  for (const char* bad : {"nocolon", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", "[::1]:0",
                          "::1:0", "no-such-host.invalid:0"}) {
    absl::StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Create(bad);
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  HttpServer::Options zero;
  zero.listen = "127.0.0.1:0";
  zero.threads = 0;
  EXPECT_EQ(HttpServer::Create(zero).status().code(), absl::StatusCode::kInvalidArgument);
  // "localhost" resolves; a port in use is FAILED_PRECONDITION.
  std::unique_ptr<HttpServer> first = Start({"localhost:0"});
  ASSERT_NE(first, nullptr);
  absl::StatusOr<std::unique_ptr<HttpServer>> second =
      HttpServer::Create(absl::StrCat("127.0.0.1:", first->port()));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
}

}  // namespace
}  // namespace farm::common::http
