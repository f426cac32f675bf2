// Checking a server's listen address before starting anything (farm-cache, farm-scheduler).
#ifndef FARM_COMMON_LISTEN_H_
#define FARM_COMMON_LISTEN_H_

#include <string>

#include "absl/status/status.h"

namespace farm::common {

// Fails (FAILED_PRECONDITION: in use; INVALID_ARGUMENT: malformed) if `listen` ("HOST:PORT",
// "[::1]:PORT", "unix:PATH") cannot be bound now, so a binary can say so before doing anything
// else. Port 0 (any free port) always passes.
absl::Status ProbeListenAddress(const std::string& listen);

}  // namespace farm::common

#endif  // FARM_COMMON_LISTEN_H_
