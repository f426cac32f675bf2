// The pieces of issue 16 wired together the way a server's main() will: a Registry and
// readiness checks served on an HTTP port (/metrics, /healthz, /readyz), a gRPC server with the
// metrics interceptor and grpc.health.v1 following the same readiness, and JSON logs. Checks
// them from the outside: scrapes over HTTP (and runs promtool on the scrape), gRPC health
// checks, and the log lines.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/grpc_health/health.h"
#include "common/http/observability.h"
#include "common/http/test_client.h"
#include "common/logging/logging.h"
#include "common/metrics/grpc_server_metrics.h"
#include "common/metrics/metrics.h"
#include "common/metrics/promtool_check.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "testing/echo.grpc.pb.h"

namespace farm::common {
namespace {

using ::testing::HasSubstr;

class Echo final : public farm::test::Echo::Service {
 public:
  grpc::Status Say(grpc::ServerContext*, const farm::test::EchoRequest* req,
                   farm::test::EchoReply* reply) override {
    reply->set_text(req->text());
    return grpc::Status::OK;
  }
};

TEST(WiringTest, AServerWithMetricsHealthAndLogs) {
  // --log-format json
  absl::Mutex mu;
  std::vector<std::string> lines;
  logging::Logger::Options lo;
  lo.component = "farm-test";
  lo.format = *logging::ParseFormat("json");
  lo.sink = [&](absl::string_view line) {
    absl::MutexLock l(&mu);
    lines.emplace_back(line);
  };
  logging::Logger log(lo);

  // The component's own metrics and readiness.
  metrics::Registry registry;
  std::atomic<bool> cache_up{false};
  std::atomic<int> queued{7};
  http::ReadinessChecks ready;
  ready.Add("cache", [&] {
    return cache_up ? absl::OkStatus() : absl::UnavailableError("farm-cache unreachable");
  });
  auto builds = registry.AddCounter({"farm_test_builds_total", "Builds by outcome.", {"outcome"}});
  ASSERT_TRUE(builds.ok());
  ASSERT_TRUE(registry
                  .AddGaugeCallback({"farm_test_queued_tasks", "Steps waiting."},
                                    [&] { return static_cast<double>(queued.load()); })
                  .ok());

  // --metrics-listen 127.0.0.1:0
  auto ops = http::HttpServer::Create("127.0.0.1:0");
  ASSERT_TRUE(ops.ok()) << ops.status();
  ASSERT_TRUE(http::ServeObservability(**ops, &registry, &ready).ok());

  // The gRPC server.
  Echo echo;
  grpc::ServerBuilder builder;
  grpc_health::EnableHealthService(builder);
  metrics::GrpcServerMetrics::Options mo;
  mo.services = {"farm.test.Echo", "grpc.health.v1.Health"};
  ASSERT_TRUE(metrics::GrpcServerMetrics::Install(builder, &registry, mo).ok());
  builder.RegisterService(&echo);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  grpc_health::HealthPublisher::Options ho;
  ho.ready = [&ready] { return ready.Check(); };
  ho.services = {"farm.test.Echo"};
  ho.log = log.LineFunc(logging::Level::kWarning);
  auto health = grpc_health::HealthPublisher::Create(server.get(), ho);
  ASSERT_TRUE(health.ok()) << health.status();
  log.Info("listening", {{"port", port}, {"metrics_port", (*ops)->port()}});

  // Not ready: /readyz and gRPC health agree.
  const std::string base = absl::StrCat("http://127.0.0.1:", (*ops)->port());
  auto channel =
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  auto health_stub = grpc::health::v1::Health::NewStub(channel);
  auto grpc_status = [&] {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service("farm.test.Echo");
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_TRUE(health_stub->Check(&ctx, req, &resp).ok());
    return resp.status();
  };
  EXPECT_EQ(http::Fetch(base + "/readyz")->status, 503);
  EXPECT_EQ(http::Fetch(base + "/healthz")->status, 200);
  EXPECT_EQ(grpc_status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);

  // Ready.
  cache_up = true;
  (*health)->Refresh();
  EXPECT_EQ(http::Fetch(base + "/readyz")->status, 200);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (grpc_status() != grpc::health::v1::HealthCheckResponse::SERVING &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));  // polling a condition, bounded by the deadline
  }
  EXPECT_EQ(grpc_status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // Traffic, then a scrape.
  auto stub = farm::test::Echo::NewStub(channel);
  for (int i = 0; i < 4; ++i) {
    grpc::ClientContext ctx;
    farm::test::EchoReply reply;
    ASSERT_TRUE(stub->Say(&ctx, farm::test::EchoRequest(), &reply).ok());
  }
  (*builds)->WithLabels({"succeeded"}).Increment();
  absl::StatusOr<http::ClientResponse> scrape = http::Fetch(base + "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_THAT(scrape->body, HasSubstr("farm_grpc_server_handled_total{method=\"/farm.test.Echo/Say"
                                      "\",code=\"OK\"} 4\n"));
  EXPECT_THAT(scrape->body, HasSubstr("farm_grpc_server_handled_total{method=\"/grpc.health.v1."
                                      "Health/Check\",code=\"OK\"}"));
  EXPECT_THAT(scrape->body, HasSubstr("farm_test_builds_total{outcome=\"succeeded\"} 1\n"));
  EXPECT_THAT(scrape->body, HasSubstr("farm_test_queued_tasks 7\n"));
  ASSERT_EQ(access(metrics::kPromtoolPath, X_OK), 0) << "install prometheus (tools/setup.sh)";
  metrics::PromtoolResult lint = metrics::PromtoolCheckMetrics(scrape->body);
  EXPECT_EQ(lint.exit_code, 0) << lint.output << "\n" << scrape->body;
  EXPECT_EQ(lint.output, "");

  // Stop: drain gRPC health, then the servers.
  (*health)->Drain();
  EXPECT_EQ(grpc_status(), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  health->reset();
  (*ops)->Shutdown();

  absl::MutexLock l(&mu);
  ASSERT_GE(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("\"level\":\"warning\",\"msg\":\"grpc health: not serving: "
                                  "cache: farm-cache unreachable\""));
  EXPECT_THAT(lines[1], HasSubstr("\"msg\":\"listening\""));
  EXPECT_THAT(lines.back(), HasSubstr("draining"));
}

}  // namespace
}  // namespace farm::common
