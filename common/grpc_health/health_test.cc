#include "common/grpc_health/health.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"

namespace farm::common::grpc_health {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;

// Reads updates from a Watch until one reports `want`; false if the stream ends first. (gRPC may
// repeat a status: every SetServingStatus reaches every watcher.)
bool ReadUntil(grpc::ClientReader<HealthCheckResponse>& watch, int want) {
  HealthCheckResponse update;
  while (watch.Read(&update)) {
    if (update.status() == want) return true;
  }
  return false;
}

class HealthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    EnableHealthService(builder);
    // gRPC builds no server from the health service alone: give it a (generic) service too.
    builder.RegisterCallbackGenericService(&generic_);
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    stub_ = Health::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  }

  // The status Check reports for `service`, or the RPC's error as -code.
  int Check(const std::string& service) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    HealthCheckRequest req;
    req.set_service(service);
    HealthCheckResponse resp;
    grpc::Status s = stub_->Check(&ctx, req, &resp);
    return s.ok() ? resp.status() : -s.error_code();
  }

  // Waits (up to 10 s) for Check(service) to report `want`.
  bool WaitFor(const std::string& service, int want) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (Check(service) == want) return true;
      absl::SleepFor(absl::Milliseconds(5));  // polling a condition, bounded by the deadline
    }
    return false;
  }

  grpc::CallbackGenericService generic_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Health::Stub> stub_;
};

TEST_F(HealthTest, TheBuiltInServiceAnswersOverLoopback) {
  EXPECT_EQ(Check(""), HealthCheckResponse::SERVING);
  EXPECT_EQ(Check("farm.v1.Scheduler"), -grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(SetServing(*server_, "farm.v1.Scheduler", true).ok());
  EXPECT_EQ(Check("farm.v1.Scheduler"), HealthCheckResponse::SERVING);
  ASSERT_TRUE(SetServing(*server_, "", false).ok());
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("farm.v1.Scheduler"), HealthCheckResponse::SERVING);
}

TEST_F(HealthTest, PublisherFollowsReadiness) {
  std::atomic<bool> ready{false};
  absl::Mutex mu;
  std::vector<std::string> log;
  HealthPublisher::Options o;
  o.ready = [&] {
    return ready ? absl::OkStatus() : absl::UnavailableError("farm-cache unreachable");
  };
  o.services = {"farm.v1.Scheduler", "farm.v1.WorkerHub"};
  o.period = absl::Milliseconds(20);
  o.log = [&](absl::string_view line) {
    absl::MutexLock l(&mu);
    log.emplace_back(line);
  };
  auto publisher = HealthPublisher::Create(server_.get(), o);
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  // Published by Create itself.
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("farm.v1.WorkerHub"), HealthCheckResponse::NOT_SERVING);

  // A Watch sees the change when readiness flips (picked up by the periodic evaluation).
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  HealthCheckRequest req;
  req.set_service("farm.v1.Scheduler");
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> watch = stub_->Watch(&watch_ctx, req);
  ASSERT_TRUE(ReadUntil(*watch, HealthCheckResponse::NOT_SERVING));
  ready = true;
  ASSERT_TRUE(ReadUntil(*watch, HealthCheckResponse::SERVING));
  EXPECT_EQ(Check(""), HealthCheckResponse::SERVING);
  watch_ctx.TryCancel();

  // Refresh() applies it without waiting for the period.
  ready = false;
  (*publisher)->Refresh();
  EXPECT_TRUE(WaitFor("farm.v1.WorkerHub", HealthCheckResponse::NOT_SERVING));
  publisher->reset();
  absl::MutexLock l(&mu);
  EXPECT_EQ(log, (std::vector<std::string>{"grpc health: not serving: farm-cache unreachable",
                                           "grpc health: serving",
                                           "grpc health: not serving: farm-cache unreachable"}));
}

TEST_F(HealthTest, DrainReportsNotServingWhateverReadinessSays) {
  HealthPublisher::Options o;
  o.ready = [] { return absl::OkStatus(); };
  o.services = {"farm.v1.Scheduler"};
  o.period = absl::Milliseconds(5);
  auto publisher = HealthPublisher::Create(server_.get(), o);
  ASSERT_TRUE(publisher.ok());
  grpc::ClientContext watch_ctx;
  watch_ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  HealthCheckRequest req;
  std::unique_ptr<grpc::ClientReader<HealthCheckResponse>> watch = stub_->Watch(&watch_ctx, req);
  ASSERT_TRUE(ReadUntil(*watch, HealthCheckResponse::SERVING));
  (*publisher)->Drain();
  ASSERT_TRUE(ReadUntil(*watch, HealthCheckResponse::NOT_SERVING));
  EXPECT_EQ(Check("farm.v1.Scheduler"), HealthCheckResponse::NOT_SERVING);
  // The periodic evaluation (ready: OK) does not undo it.
  (*publisher)->Refresh();
  (*publisher)->Drain();  // idempotent
  publisher->reset();     // joins the thread: every evaluation it made is in
  EXPECT_EQ(Check(""), HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(Check("farm.v1.Scheduler"), HealthCheckResponse::NOT_SERVING);
  watch_ctx.TryCancel();
}

TEST(HealthNoServiceTest, ServerWithoutHealthService) {
  grpc::EnableDefaultHealthCheckService(false);
  grpc::ServerBuilder builder;
  grpc::CallbackGenericService generic;
  builder.RegisterCallbackGenericService(&generic);
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(SetServing(*server, "", true).code(), absl::StatusCode::kFailedPrecondition);
  HealthPublisher::Options o;
  o.ready = [] { return absl::OkStatus(); };
  EXPECT_EQ(HealthPublisher::Create(server.get(), o).status().code(),
            absl::StatusCode::kFailedPrecondition);
  o.ready = nullptr;
  EXPECT_EQ(HealthPublisher::Create(server.get(), o).status().code(),
            absl::StatusCode::kInvalidArgument);
  server->Shutdown();
}

}  // namespace
}  // namespace farm::common::grpc_health
