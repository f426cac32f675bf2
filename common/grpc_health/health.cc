#include "common/grpc_health/health.h"

#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"

namespace farm::common::grpc_health {

void EnableHealthService(grpc::ServerBuilder& builder) {
  (void)builder;
  grpc::EnableDefaultHealthCheckService(true);
}

absl::Status SetServing(grpc::Server& server, const std::string& service, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) {
    return absl::FailedPreconditionError(
        "gRPC server has no health service (EnableHealthService before BuildAndStart)");
  }
  health->SetServingStatus(service, serving);
  return absl::OkStatus();
}

HealthPublisher::HealthPublisher(grpc::Server* server, Options options)
    : server_(server), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<HealthPublisher>> HealthPublisher::Create(grpc::Server* server,
                                                                         Options options) {
  if (!options.ready || options.period < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError("HealthPublisher: want a ready function and a period >= 1ms");
  }
  if (server == nullptr || server->GetHealthCheckService() == nullptr) {
    return absl::FailedPreconditionError(
        "gRPC server has no health service (EnableHealthService before BuildAndStart)");
  }
  auto p = std::unique_ptr<HealthPublisher>(new HealthPublisher(server, std::move(options)));
  p->Publish();  // right from the start, not one period later
  p->thread_ = std::thread([raw = p.get()] { raw->Run(); });
  return p;
}

HealthPublisher::~HealthPublisher() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void HealthPublisher::Refresh() {
  absl::MutexLock l(&mu_);
  refresh_ = true;
}

void HealthPublisher::Drain() {
  absl::MutexLock l(&mu_);
  if (draining_) return;
  draining_ = true;
  // Under mu_, so that no Publish() of a stale verdict can land after this.
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", false);
  for (const std::string& s : options_.services) health->SetServingStatus(s, false);
  if (options_.log) options_.log("grpc health: not serving: draining");
}

void HealthPublisher::Publish() {
  const absl::Status ready = options_.ready();
  absl::MutexLock l(&mu_);
  if (draining_) return;
  const int now = ready.ok() ? 1 : 0;
  // Only changes: gRPC sends every Set to every watcher, changed or not. The first Publish()
  // (last_ == -1) also makes the service names known to gRPC.
  if (now == last_) return;
  grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService();
  health->SetServingStatus("", now == 1);
  for (const std::string& s : options_.services) health->SetServingStatus(s, now == 1);
  if (options_.log) {
    options_.log(now ? "grpc health: serving"
                     : absl::StrCat("grpc health: not serving: ", ready.message()));
  }
  last_ = now;
}

void HealthPublisher::Run() {
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || refresh_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken), options_.period);
      if (stop_) return;
      refresh_ = false;
    }
    Publish();
  }
}

}  // namespace farm::common::grpc_health
