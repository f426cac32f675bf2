#include "common/metrics/grpc_server_metrics.h"

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/grpc_health/health.h"
#include "common/metrics/metrics.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "testing/echo.grpc.pb.h"

namespace farm::common::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class EchoService final : public farm::test::Echo::Service {
 public:
  grpc::Status Say(grpc::ServerContext*, const farm::test::EchoRequest* req,
                   farm::test::EchoReply* reply) override {
    if (req->code() != 0) return grpc::Status(static_cast<grpc::StatusCode>(req->code()), "asked");
    reply->set_text(req->text());
    return grpc::Status::OK;
  }
  grpc::Status Repeat(grpc::ServerContext* ctx, const farm::test::EchoRequest* req,
                      grpc::ServerWriter<farm::test::EchoReply>* writer) override {
    farm::test::EchoReply reply;
    reply.set_text(req->text());
    for (int i = 0; i < req->count(); ++i) {
      if (ctx->IsCancelled() || !writer->Write(reply)) return grpc::Status::CANCELLED;
    }
    if (req->code() != 0) return grpc::Status(static_cast<grpc::StatusCode>(req->code()), "asked");
    return grpc::Status::OK;
  }
};

// Lines of the exposition by series name ("name{labels}") → value.
std::map<std::string, std::string> Samples(const Registry& r) {
  std::map<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(r.TextExposition(), '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[std::string(line.substr(0, space))] = std::string(line.substr(space + 1));
  }
  return out;
}

std::string Handled(absl::string_view method, absl::string_view code) {
  return absl::StrCat("farm_grpc_server_handled_total{method=\"", method, "\",code=\"", code,
                      "\"}");
}

std::string LatencyCount(absl::string_view method) {
  return absl::StrCat("farm_grpc_server_handling_seconds_count{method=\"", method, "\"}");
}

class GrpcServerMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GrpcServerMetrics::Options o;
    o.services = {"farm.test.Echo", "grpc.health.v1.Health"};
    grpc::ServerBuilder builder;
    grpc_health::EnableHealthService(builder);
    absl::Status installed = GrpcServerMetrics::Install(builder, &registry_, o);
    ASSERT_TRUE(installed.ok()) << installed;
    builder.RegisterService(&service_);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
    stub_ = farm::test::Echo::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  grpc::Status Say(int code) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    farm::test::EchoRequest req;
    req.set_text("hi");
    req.set_code(code);
    farm::test::EchoReply reply;
    return stub_->Say(&ctx, req, &reply);
  }

  grpc::Status Repeat(int count, int code) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    farm::test::EchoRequest req;
    req.set_count(count);
    req.set_code(code);
    auto reader = stub_->Repeat(&ctx, req);
    farm::test::EchoReply reply;
    while (reader->Read(&reply)) {
    }
    return reader->Finish();
  }

  // A unary call to any method name through the generic stub.
  grpc::Status CallGeneric(const std::string& method) {
    grpc::GenericStub generic(channel_);
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    grpc::Slice payload(farm::test::EchoRequest().SerializeAsString());
    grpc::ByteBuffer request(&payload, 1), response;
    grpc::Status status;
    absl::Notification done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();
    return status;
  }

  // Waits (up to 10 s) for series `name` to have value `want`.
  bool WaitForSample(const std::string& name, const std::string& want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (Samples(registry_)[name] == want) return true;
      absl::SleepFor(absl::Milliseconds(5));  // polling a condition, bounded by the deadline
    }
    return false;
  }

  Registry registry_;
  EchoService service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<farm::test::Echo::Stub> stub_;
};

TEST_F(GrpcServerMetricsTest, EveryDeclaredMethodShowsFromTheStart) {
  std::map<std::string, std::string> s = Samples(registry_);
  for (const char* m :
       {"/farm.test.Echo/Say", "/farm.test.Echo/Repeat", "/farm.test.Echo/Missing",
        "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch", "unknown"}) {
    EXPECT_EQ(s[LatencyCount(m)], "0") << m;
  }
  EXPECT_EQ(s.count(Handled("/farm.test.Echo/Say", "OK")), 0u);
}

TEST_F(GrpcServerMetricsTest, CountsByMethodAndCode) {
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Say(0).ok());
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(Say(grpc::StatusCode::NOT_FOUND).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Say(grpc::StatusCode::UNAUTHENTICATED).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Repeat(3, 0).ok());
  EXPECT_EQ(Repeat(2, grpc::StatusCode::ABORTED).error_code(), grpc::StatusCode::ABORTED);
  {
    grpc::ClientContext ctx;
    farm::test::EchoReply reply;
    EXPECT_EQ(stub_->Missing(&ctx, farm::test::EchoRequest(), &reply).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  {
    auto health = grpc::health::v1::Health::NewStub(channel_);
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, grpc::health::v1::HealthCheckRequest(), &resp).ok());
  }
  // The status passes the interceptor before the client sees it: no waiting needed.
  std::map<std::string, std::string> s = Samples(registry_);
  EXPECT_EQ(s[Handled("/farm.test.Echo/Say", "OK")], "3");
  EXPECT_EQ(s[Handled("/farm.test.Echo/Say", "NOT_FOUND")], "2");
  EXPECT_EQ(s[Handled("/farm.test.Echo/Say", "UNAUTHENTICATED")], "1");
  EXPECT_EQ(s[LatencyCount("/farm.test.Echo/Say")], "6");
  EXPECT_EQ(s[Handled("/farm.test.Echo/Repeat", "OK")], "1");
  EXPECT_EQ(s[Handled("/farm.test.Echo/Repeat", "ABORTED")], "1");
  EXPECT_EQ(s[LatencyCount("/farm.test.Echo/Repeat")], "2");
  EXPECT_EQ(s[Handled("/farm.test.Echo/Missing", "UNIMPLEMENTED")], "1");
  EXPECT_EQ(s[Handled("/grpc.health.v1.Health/Check", "OK")], "1");
  // Latencies are real durations: positive, and in a bucket no later than +Inf.
  EXPECT_GT(std::stod(s["farm_grpc_server_handling_seconds_sum{method=\"/farm.test.Echo/Say\"}"]),
            0);
  EXPECT_EQ(
      s["farm_grpc_server_handling_seconds_bucket{method=\"/farm.test.Echo/Say\",le=\"+Inf\"}"],
      "6");
}

TEST_F(GrpcServerMetricsTest, UnknownMethodsShareOneLabelValue) {
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(CallGeneric(absl::StrCat("/farm.test.Nope/Method", i)).error_code(),
              grpc::StatusCode::UNIMPLEMENTED);
  }
  EXPECT_TRUE(WaitForSample(Handled("unknown", "UNIMPLEMENTED"), "20"));
  const std::string text = registry_.TextExposition();
  EXPECT_THAT(text, Not(HasSubstr("Method1")));
  EXPECT_THAT(text, Not(HasSubstr("__overflow__")));
}

TEST_F(GrpcServerMetricsTest, AClientThatCancelsIsCountedAsCancelled) {
  grpc::ClientContext ctx;
  farm::test::EchoRequest req;
  req.set_count(1000000);  // far more than flow control lets through without reading
  auto reader = stub_->Repeat(&ctx, req);
  farm::test::EchoReply reply;
  ASSERT_TRUE(reader->Read(&reply));
  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForSample(Handled("/farm.test.Echo/Repeat", "CANCELLED"), "1"));
}

TEST(GrpcServerMetricsCreateTest, Errors) {
  Registry r;
  GrpcServerMetrics::Options o;
  o.services = {"farm.test.NoSuchService"};
  EXPECT_EQ(GrpcServerMetrics::Create(&r, o).status().code(), absl::StatusCode::kNotFound);
  o.services = {"farm.test.Echo"};
  o.buckets = {2, 1};
  EXPECT_EQ(GrpcServerMetrics::Create(&r, o).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.TextExposition(), "");  // nothing half-registered
  o.buckets = DefaultLatencyBuckets();
  EXPECT_TRUE(GrpcServerMetrics::Create(&r, o).ok());
  EXPECT_EQ(GrpcServerMetrics::Create(&r, o).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(GrpcServerMetricsCreateTest, CodeNames) {
  EXPECT_EQ(GrpcServerMetrics::CodeName(0), "OK");
  EXPECT_EQ(GrpcServerMetrics::CodeName(grpc::StatusCode::RESOURCE_EXHAUSTED),
            "RESOURCE_EXHAUSTED");
  EXPECT_EQ(GrpcServerMetrics::CodeName(16), "UNAUTHENTICATED");
  EXPECT_EQ(GrpcServerMetrics::CodeName(17), "UNKNOWN");
  EXPECT_EQ(GrpcServerMetrics::CodeName(-1), "UNKNOWN");
}

}  // namespace
}  // namespace farm::common::metrics
