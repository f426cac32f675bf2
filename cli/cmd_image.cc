// farm image SUBCOMMAND: docker's management-command spelling of the image commands
// (`docker image ls|history|inspect|tag|rm|save|load|pull|push`), for scripts written for it.
#include <iostream>
#include <string>

#include "cli/commands.h"

namespace farm::cli {

namespace {

struct Subcommand {
  const char* name;
  const char* same_as;
  int (*run)(const Args&);
};

const Subcommand kSubcommands[] = {
    {"ls", "images", RunImages},
    {"list", "images", RunImages},
    {"history", "history", RunHistory},
    {"inspect", "inspect", RunInspect},
    {"tag", "tag", RunTag},
    {"rm", "rmi", RunRmi},
    {"save", "save", RunSave},
    {"load", "load", RunLoad},
    {"pull", "pull", RunPull},
    {"push", "push", RunPush},
};

void Usage(std::ostream& out) {
  out << "Usage:  farm image COMMAND\n\nManage images\n\nCommands:\n";
  for (const Subcommand& s : kSubcommands) {
    out << "  " << s.name << std::string(10 - std::string(s.name).size(), ' ') << "same as farm "
        << s.same_as << "\n";
  }
}

}  // namespace

int RunImage(const Args& args) {
  if (args.empty()) {
    Usage(std::cerr);
    return 2;
  }
  if (args[0] == "--help" || args[0] == "-h") {
    Usage(std::cout);
    return 0;
  }
  for (const Subcommand& s : kSubcommands) {
    if (args[0] == s.name) return s.run(Args(args.begin() + 1, args.end()));
  }
  std::cerr << "farm image: unknown command \"" << args[0] << "\"\nRun 'farm image --help'.\n";
  return 2;
}

}  // namespace farm::cli
