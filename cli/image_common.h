// Helpers shared by the image commands (cmd_images.cc, cmd_pull.cc, ...): argument errors,
// runtime errors, registry options from flags and the environment.
#ifndef FARM_CLI_IMAGE_COMMON_H_
#define FARM_CLI_IMAGE_COMMON_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/flags.h"
#include "scheduler/registry/client.h"

namespace farm::cli {

// Parses flags; on error prints "farm NAME: <error>" and usage hints. Returns false and sets
// `*exit_code` when the command must stop (error: 2, --help: 0).
bool ParseFlags(common::FlagSet& fs, const std::vector<std::string>& args, const char* name,
                std::vector<std::string>* positional, int* exit_code);
// Checks the positional count; prints Docker's wording ("\"farm tag\" requires exactly 2
// arguments.") and returns false if wrong.
bool CheckArgs(const std::vector<std::string>& positional, size_t min, size_t max, const char* name,
               const std::string& usage);
// Prints "Error: <message>" on stderr; returns 1.
int Fail(const absl::Status& status);

// Registry options: insecure registries from the flag values and $FARM_INSECURE_REGISTRIES
// (comma-separated), credentials from the Docker config.
scheduler::registry::RegistryOptions RegistryOptionsFrom(const std::vector<std::string>& insecure);

}  // namespace farm::cli

#endif  // FARM_CLI_IMAGE_COMMON_H_
