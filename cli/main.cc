// farm: the Farm client. Dispatches to one subcommand (cli/commands.h).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "worker/sandbox/sandbox.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const cli::Args&);
};

// Only commands that exist are listed: `farm --help` is accurate.
const Command kCommands[] = {
    {"parse", "Parse a Dockerfile and print its syntax tree as JSON", cli::RunParse},
    {"plan", "Plan a build: stages, keyed steps and config changes", cli::RunPlan},
    {"version", "Show the Farm version", cli::RunVersion},
    {"cache", "Show and enforce the cache's size budget (stats, gc)", cli::RunCache},
};

void PrintUsage(std::ostream& out) {
  out << "Usage:  farm COMMAND [OPTIONS]\n\n"
         "Farm builds container images from Dockerfiles, on one machine or a fleet.\n\n"
         "Commands:\n";
  for (const Command& c : kCommands) {
    out << "  " << c.name << std::string(12 - std::strlen(c.name), ' ') << c.summary << "\n";
  }
  out << "\nRun 'farm COMMAND --help' for more information on a command.\n";
}

}  // namespace

int main(int argc, char** argv) {
  // `farm` is also its own sandbox runner (see worker/sandbox/sandbox.h): must come first.
  sandbox::RunSandboxIfRequested(argc, argv);
  if (argc < 2) {
    PrintUsage(std::cerr);
    return 2;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(std::cout);
    return 0;
  }
  if (name == "--version" || name == "-v") name = "version";
  cli::Args args(argv + 2, argv + argc);
  for (const Command& c : kCommands) {
    if (name == c.name) return c.run(args);
  }
  std::cerr << "farm: unknown command \"" << name << "\"\nRun 'farm --help' for usage.\n";
  return 2;
}
