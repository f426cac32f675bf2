// The operator's sandbox settings, one vocabulary for both places they are given:
// farm-worker's flags (`--allow-entitlement network.host`) and, for the embedded `farm build`
// and `farm run`, the lines of $FARM_HOME/sandbox.conf (`allow-entitlement = network.host`).
//
//   worker::SandboxSettings s;
//   worker::RegisterSandboxFlags(&flags, &s);                        // farm-worker
//   ASSIGN_OR_RETURN(s, worker::ReadSandboxConfig(home + "/sandbox.conf"));  // farm build
//   options.policy = s.policy; options.limits = s.limits;
#ifndef FARM_WORKER_SANDBOX_SETTINGS_H_
#define FARM_WORKER_SANDBOX_SETTINGS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/flags.h"
#include "worker/sandbox/cgroups.h"
#include "worker/sandbox_policy.h"

namespace farm::worker {

struct SandboxSettings {
  SandboxPolicy policy;
  sandbox::CgroupLimits limits;
  bool deny_network_given = false;  // the first deny-network replaces the default list
};

// A farm-worker's defaults: the embedded ones, and private ranges denied to steps (a worker
// sits in a data centre next to services that build steps have no business reaching).
SandboxSettings WorkerSandboxDefaults();

// One setting by name (a flag's name without the dashes). INVALID_ARGUMENT names the setting
// and the value.
absl::Status ApplySandboxSetting(absl::string_view name, absl::string_view value,
                                 SandboxSettings* settings);

// Registers every setting as a flag of `fs`, applied to `settings` as it is parsed.
void RegisterSandboxFlags(common::FlagSet* fs, SandboxSettings* settings);

// Reads `path` ("name = value" lines, '#' comments); a missing file means the defaults.
// INVALID_ARGUMENT with "path:line: ..." for a bad line.
absl::StatusOr<SandboxSettings> ReadSandboxConfig(const std::string& path,
                                                  SandboxSettings defaults = {});

// The settings as documentation: "name VALUE  help" lines (README, farm-worker --help).
std::vector<std::string> SandboxSettingNames();

}  // namespace farm::worker

#endif  // FARM_WORKER_SANDBOX_SETTINGS_H_
