// Routes gRPC's own log messages (gpr_log) into a Logger, so that they come out in the server's
// format (one line, JSON with --log-format json) instead of gRPC's. Replaces the GrpcLog
// functions the three servers' main.cc each have today.
//
//   logging::Logger log(options);
//   logging::InstallGrpcLogger(log);  // before starting gRPC servers or channels
#ifndef FARM_COMMON_LOGGING_GRPC_LOG_H_
#define FARM_COMMON_LOGGING_GRPC_LOG_H_

#include "common/logging/logging.h"

namespace farm::common::logging {

// Sends gRPC messages at `min_level` or above (ERROR by default: gRPC's INFO is chatty) to a
// copy of `logger`, as "grpc: <message>" with the field "source" ("file:line"). Process-wide;
// a later call replaces the logger. The copy is never freed: gRPC may log until the process
// ends.
void InstallGrpcLogger(const Logger& logger, Level min_level = Level::kError);

}  // namespace farm::common::logging

#endif  // FARM_COMMON_LOGGING_GRPC_LOG_H_
