// grpc_health_check ADDRESS [SERVICE]: asks ADDRESS's grpc.health.v1.Health for SERVICE ("" by
// default, the whole server) over plaintext and prints the status (SERVING, NOT_SERVING, ...).
// Exit 0 when SERVING, 1 otherwise, 2 when the call fails. For tests/ops.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::cerr << "usage: grpc_health_check ADDRESS [SERVICE]\n";
    return 2;
  }
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest req;
  if (argc == 3) req.set_service(argv[2]);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = stub->Check(&ctx, req, &resp);
  if (!s.ok()) {
    std::cerr << "grpc_health_check: " << s.error_code() << ": " << s.error_message() << "\n";
    return 2;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()) << "\n";
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}
