// gRPC health checking (grpc.health.v1.Health) on Farm's gRPC servers, for load balancers,
// Kubernetes gRPC probes and `grpc_health_probe`. gRPC's C++ library has the service built in;
// this turns it on and keeps its status equal to the server's readiness.
//
//   grpc::ServerBuilder builder;
//   grpc_health::EnableHealthService(builder);
//   ... RegisterService, BuildAndStart ...
//   grpc_health::HealthPublisher::Options o;
//   o.ready = [&ready] { return ready.Check(); };  // e.g. http::ReadinessChecks (/readyz)
//   o.services = {"farm.v1.Scheduler", "farm.v1.WorkerHub"};
//   ASSIGN_OR_RETURN(auto health, grpc_health::HealthPublisher::Create(server.get(), o));
//   ...
//   ...
//   health->Drain();     // on SIGTERM: NOT_SERVING while in-flight work finishes
//   server->Shutdown();
//   health.reset();      // before the server is destroyed
#ifndef FARM_COMMON_GRPC_HEALTH_HEALTH_H_
#define FARM_COMMON_GRPC_HEALTH_HEALTH_H_

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace farm::common::grpc_health {

// Turns on gRPC's built-in grpc.health.v1.Health service for servers built from now on; the
// whole server ("") starts SERVING. gRPC's switch is process-wide and not thread-safe: call it
// from main() before BuildAndStart(). `builder` keeps the call next to the server it is for.
void EnableHealthService(grpc::ServerBuilder& builder);

// Sets the status that Check/Watch report for `service` ("" is the server as a whole; any other
// name becomes known to the service from then on). FAILED_PRECONDITION if `server` was built
// without the health service. Ignored after the server's Shutdown() (all NOT_SERVING).
absl::Status SetServing(grpc::Server& server, const std::string& service, bool serving);

// Publishes a readiness verdict as the server's health: SERVING for "" and every listed service
// while `ready` returns OK, NOT_SERVING otherwise. Evaluates it at Create(), on Refresh() and
// every `period` on a thread of its own.
class HealthPublisher {
 public:
  struct Options {
    // The verdict; quick and thread-safe (runs on the publisher's thread).
    std::function<absl::Status()> ready;
    // Services reported besides "" (full names, "farm.v1.Scheduler").
    std::vector<std::string> services;
    absl::Duration period = absl::Seconds(2);
    // Told about every change ("serving" / "not serving: <why>"); optional.
    std::function<void(absl::string_view)> log;
  };

  // INVALID_ARGUMENT without `ready` or with a period under 1 ms; FAILED_PRECONDITION if
  // `server` has no health service. `server` must outlive the publisher.
  static absl::StatusOr<std::unique_ptr<HealthPublisher>> Create(grpc::Server* server,
                                                                 Options options);
  ~HealthPublisher();  // stops and joins the thread
  HealthPublisher(const HealthPublisher&) = delete;
  HealthPublisher& operator=(const HealthPublisher&) = delete;

  // Evaluates `ready` now (on the publisher's thread) instead of at the next period.
  void Refresh();

  // For a graceful stop: reports NOT_SERVING for "" and every service from now on, whatever
  // `ready` says, so that clients and load balancers move away while the server finishes its
  // work; then Shutdown() the server. Idempotent.
  void Drain();

 private:
  HealthPublisher(grpc::Server* server, Options options);
  void Publish();  // evaluates and sets the statuses
  void Run();

  grpc::Server* const server_;
  const Options options_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool refresh_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  int last_ ABSL_GUARDED_BY(mu_) = -1;  // last published: 1 serving, 0 not, -1 nothing yet
  std::thread thread_;
};

}  // namespace farm::common::grpc_health

#endif  // FARM_COMMON_GRPC_HEALTH_HEALTH_H_
