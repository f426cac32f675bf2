// The `farm` subcommands. Each takes the arguments after its name and returns the process
// exit code; each lives in its own cmd_<name>.cc and parses its flags with common::FlagSet.
#ifndef FARM_CLI_COMMANDS_H_
#define FARM_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace cli {

using Args = std::vector<std::string>;

int RunVersion(const Args& args);
int RunParse(const Args& args);
int RunPlan(const Args& args);

}  // namespace cli

#endif  // FARM_CLI_COMMANDS_H_
