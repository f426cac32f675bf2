// The one place where absl::Status and grpc::Status are converted (codes map 1:1).
#ifndef FARM_COMMON_GRPC_STATUS_H_
#define FARM_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace farm::common {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace farm::common

#endif  // FARM_COMMON_GRPC_STATUS_H_
