#include "common/http/observability.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "common/http/test_client.h"
#include "common/metrics/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::http {
namespace {

using ::testing::HasSubstr;

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<HttpServer>> s = HttpServer::Create("127.0.0.1:0");
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = *std::move(s);
  }
  std::string Url(absl::string_view path) {
    return absl::StrCat("http://127.0.0.1:", server_->port(), path);
  }

  metrics::Registry registry_;
  ReadinessChecks ready_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(ObservabilityTest, MetricsServesTheRegistry) {
  auto builds = registry_.AddCounter({"farm_test_builds_total", "Builds.", {"outcome"}});
  ASSERT_TRUE(builds.ok());
  ASSERT_TRUE(ServeObservability(*server_, &registry_, &ready_).ok());
  (*builds)->WithLabels({"succeeded"}).IncrementBy(3);
  absl::StatusOr<ClientResponse> r = Fetch(Url("/metrics"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(r->body, registry_.TextExposition());
  EXPECT_THAT(r->body, HasSubstr("farm_test_builds_total{outcome=\"succeeded\"} 3\n"));
  // Live: the next scrape sees the next value.
  (*builds)->WithLabels({"succeeded"}).Increment();
  EXPECT_THAT(Fetch(Url("/metrics"))->body,
              HasSubstr("farm_test_builds_total{outcome=\"succeeded\"} 4\n"));
  FetchOptions post;
  post.method = "POST";
  absl::StatusOr<ClientResponse> p = Fetch(Url("/metrics"), post);
  EXPECT_EQ(p->status, 405);
  EXPECT_EQ(p->headers["allow"], "GET, HEAD");
}

TEST_F(ObservabilityTest, HealthzIsAlwaysOkReadyzFollowsTheChecks) {
  std::atomic<bool> cache_up{false};
  std::atomic<bool> db_open{true};
  ready_.Add("db",
             [&] { return db_open ? absl::OkStatus() : absl::FailedPreconditionError("closed"); });
  ready_.Add("cache", [&] {
    return cache_up ? absl::OkStatus() : absl::UnavailableError("farm-cache unreachable");
  });
  ASSERT_TRUE(ServeObservability(*server_, &registry_, &ready_).ok());

  EXPECT_EQ(Fetch(Url("/healthz"))->status, 200);
  EXPECT_EQ(Fetch(Url("/healthz"))->body, "ok\n");
  absl::StatusOr<ClientResponse> r = Fetch(Url("/readyz"));
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "not ready: cache: farm-cache unreachable\n");
  EXPECT_EQ(ready_.Check().code(), absl::StatusCode::kUnavailable);

  cache_up = true;
  r = Fetch(Url("/readyz"));
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok\n");

  // The first failing check (in the order added) is the one reported.
  db_open = false;
  cache_up = false;
  r = Fetch(Url("/readyz"));
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "not ready: db: closed\n");
  EXPECT_EQ(Fetch(Url("/healthz"))->status, 200);
}

TEST_F(ObservabilityTest, WithoutRegistryOrChecks) {
  ASSERT_TRUE(ServeObservability(*server_, nullptr, nullptr).ok());
  EXPECT_EQ(Fetch(Url("/metrics"))->status, 404);
  EXPECT_EQ(Fetch(Url("/readyz"))->status, 200);
  EXPECT_EQ(Fetch(Url("/healthz"))->status, 200);
  EXPECT_TRUE(ReadinessChecks().Check().ok());
}

}  // namespace
}  // namespace farm::common::http
