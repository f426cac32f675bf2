// The `farm` subcommands. Each takes the arguments after its name and returns the process
// exit code; each lives in its own cmd_<name>.cc and parses its flags with common::FlagSet.
#ifndef FARM_CLI_COMMANDS_H_
#define FARM_CLI_COMMANDS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "auth/grpc_auth.h"

namespace farm::cli {

using Args = std::vector<std::string>;

int RunVersion(const Args& args);
int RunBuild(const Args& args);
int RunBake(const Args& args);  // cmd_bake.cc: many targets of bake/Compose files at once
int RunRun(const Args& args);
int RunBuilds(const Args& args);
int RunWhyMiss(const Args& args);
int RunParse(const Args& args);
int RunPlan(const Args& args);
int RunCache(const Args& args);  // cmd_cache.cc: farm cache stats|gc

// The farm (cmd_submit.cc, cmd_farm.cc).
int RunSubmit(const Args& args);
int RunWorkers(const Args& args);
int RunLogs(const Args& args);
int RunCancel(const Args& args);
// farm builds --scheduler: the scheduler's builds.
int ListRemoteBuilds(const std::string& scheduler, const auth::ClientAuthOptions& security,
                     int64_t last, bool active, const std::string& tenant);

// Images (cmd_images.cc, cmd_history.cc, ...).
int RunImages(const Args& args);
int RunImage(const Args& args);  // cmd_image.cc: farm image ls|history|inspect|...
int RunHistory(const Args& args);
int RunTag(const Args& args);
int RunRmi(const Args& args);
int RunInspect(const Args& args);
int RunSave(const Args& args);
int RunLoad(const Args& args);
int RunPull(const Args& args);
int RunPush(const Args& args);
int RunLogin(const Args& args);
int RunLogout(const Args& args);

}  // namespace farm::cli

#endif  // FARM_CLI_COMMANDS_H_
