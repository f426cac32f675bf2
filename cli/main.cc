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
    {"build", "Build an image from a Dockerfile (in this process)", cli::RunBuild},
    {"builds", "List builds (this home's, or a farm's with --scheduler)", cli::RunBuilds},
    {"cancel", "Cancel builds on a farm", cli::RunCancel},
    {"cache", "Show and enforce the cache's size budget (stats, gc)", cli::RunCache},
    {"history", "Show the history of an image", cli::RunHistory},
    {"image", "Manage images (docker image ls|history|inspect|tag|rm|save|load|pull|push)",
     cli::RunImage},
    {"images", "List images", cli::RunImages},
    {"inspect", "Display detailed information on images", cli::RunInspect},
    {"logs", "Show (and follow) a farm build's progress and output", cli::RunLogs},
    {"load", "Load images from a tar archive or STDIN", cli::RunLoad},
    {"login", "Log in to a registry", cli::RunLogin},
    {"logout", "Log out from a registry", cli::RunLogout},
    {"parse", "Parse a Dockerfile and print its syntax tree as JSON", cli::RunParse},
    {"plan", "Plan a build: stages, keyed steps and config changes", cli::RunPlan},
    {"pull", "Download an image from a registry", cli::RunPull},
    {"push", "Upload an image to a registry", cli::RunPush},
    {"rmi", "Remove one or more images", cli::RunRmi},
    {"run", "Run a command in a new container from an image", cli::RunRun},
    {"save", "Save images to a tar archive (docker-archive or OCI layout)", cli::RunSave},
    {"submit", "Build an image on a farm (farm-scheduler and its workers)", cli::RunSubmit},
    {"tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", cli::RunTag},
    {"version", "Show the Farm version", cli::RunVersion},
    {"workers", "List a farm's workers", cli::RunWorkers},
    {"why-miss", "Explain why a build step missed the cache", cli::RunWhyMiss},
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
