// RPC counts and latencies of a gRPC server, recorded into a Registry by a server interceptor:
//
//   farm_grpc_server_handled_total{method, code}   RPCs completed, by status code
//   farm_grpc_server_handling_seconds{method}      time from the call's start to its status
//
// `method` is the full gRPC method name ("/farm.v1.Scheduler/Submit"). Only the methods of the
// services named at creation get their own label value; anything else (an unknown method, a
// service registered later) is counted as "unknown", so the label sets stay bounded by the
// server's API: methods x 17 status codes. `code` is the canonical status name ("OK",
// "NOT_FOUND", ...). A streaming call's latency is its whole lifetime.
//
//   metrics::GrpcServerMetrics::Options o;
//   o.services = {"farm.v1.Scheduler", "farm.v1.WorkerHub", "grpc.health.v1.Health"};
//   RETURN_IF_ERROR(metrics::GrpcServerMetrics::Install(builder, &registry, o));
//
// or, next to other interceptors, Create() the factory and pass it with them to
// builder.experimental().SetInterceptorCreators().
//
// The Registry must outlive the gRPC server (the server owns the interceptor factory).
#ifndef FARM_COMMON_METRICS_GRPC_SERVER_METRICS_H_
#define FARM_COMMON_METRICS_GRPC_SERVER_METRICS_H_

#include <grpcpp/server_builder.h>
#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/metrics/metrics.h"

namespace farm::common::metrics {

// The method label value of RPCs to methods not declared at creation.
inline constexpr absl::string_view kUnknownMethod = "unknown";

class GrpcServerMetrics {
 public:
  struct Options {
    // Full names of the services whose methods get their own label value, e.g.
    // "farm.v1.Scheduler". Their methods are read from the generated protobuf descriptors, so
    // the service's generated code must be linked in. "grpc.health.v1.Health" (the default
    // health service, which has no C++ descriptors) is known without them.
    std::vector<std::string> services;
    // Upper bounds of the latency histogram, in seconds.
    std::vector<double> buckets = DefaultLatencyBuckets();
  };

  // Registers the two families in `registry` and returns the interceptor factory to hand to
  // grpc::ServerBuilder::experimental().SetInterceptorCreators(). NOT_FOUND for a service that
  // is not in the generated descriptor pool; the Registry's errors (ALREADY_EXISTS when called
  // twice on one registry).
  static absl::StatusOr<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
  Create(Registry* registry, const Options& options);

  // Create() and make the result `builder`'s only interceptor (SetInterceptorCreators replaces
  // any set before).
  static absl::Status Install(grpc::ServerBuilder& builder, Registry* registry,
                              const Options& options);

  // "OK", "CANCELLED", ... "UNAUTHENTICATED"; "UNKNOWN" for values outside the canonical 17.
  static absl::string_view CodeName(int code);
};

}  // namespace farm::common::metrics

#endif  // FARM_COMMON_METRICS_GRPC_SERVER_METRICS_H_
