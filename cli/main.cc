// farm: the Farm client. Dispatches to one subcommand (cli/commands.h).
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "auth/token_command.h"
#include "cli/commands.h"
#include "worker/sandbox/sandbox.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const farm::cli::Args&);
};

// Only commands that exist are listed: `farm --help` is accurate.
const Command kCommands[] = {
    {"bake", "Build the targets of bake/Compose files as one graph", farm::cli::RunBake},
    {"build", "Build an image from a Dockerfile (in this process)", farm::cli::RunBuild},
    {"builds", "List builds (this home's, or a farm's with --scheduler)", farm::cli::RunBuilds},
    {"cancel", "Cancel builds on a farm", farm::cli::RunCancel},
    {"cache", "Show and enforce the cache's size budget (stats, gc)", farm::cli::RunCache},
    {"history", "Show the history of an image", farm::cli::RunHistory},
    {"image", "Manage images (docker image ls|history|inspect|tag|rm|save|load|pull|push)",
     farm::cli::RunImage},
    {"images", "List images", farm::cli::RunImages},
    {"inspect", "Display detailed information on images", farm::cli::RunInspect},
    {"logs", "Show (and follow) a farm build's progress and output", farm::cli::RunLogs},
    {"load", "Load images from a tar archive or STDIN", farm::cli::RunLoad},
    {"login", "Log in to a registry", farm::cli::RunLogin},
    {"logout", "Log out from a registry", farm::cli::RunLogout},
    {"parse", "Parse a Dockerfile and print its syntax tree as JSON", farm::cli::RunParse},
    {"plan", "Plan a build: stages, keyed steps and config changes", farm::cli::RunPlan},
    {"pull", "Download an image from a registry", farm::cli::RunPull},
    {"push", "Upload an image to a registry", farm::cli::RunPush},
    {"rmi", "Remove one or more images", farm::cli::RunRmi},
    {"run", "Run a command in a new container from an image", farm::cli::RunRun},
    {"save", "Save images to a tar archive (docker-archive or OCI layout)", farm::cli::RunSave},
    {"submit", "Build an image on a farm (farm-scheduler and its workers)", farm::cli::RunSubmit},
    {"tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", farm::cli::RunTag},
    {"token", "Mint and check a farm's bearer tokens (mint, verify, jwks)",
     farm::auth::RunTokenCommand},
    {"version", "Show the Farm version", farm::cli::RunVersion},
    {"workers", "List a farm's workers", farm::cli::RunWorkers},
    {"why-miss", "Explain why a build step missed the cache", farm::cli::RunWhyMiss},
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
  farm::worker::sandbox::RunSandboxIfRequested(argc, argv);
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
  farm::cli::Args args(argv + 2, argv + argc);
  for (const Command& c : kCommands) {
    if (name == c.name) return c.run(args);
  }
  std::cerr << "farm: unknown command \"" << name << "\"\nRun 'farm --help' for usage.\n";
  return 2;
}
