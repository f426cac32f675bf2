#include <iostream>

#include "cli/commands.h"
#include "common/flags.h"

namespace farm::cli {

int RunVersion(const Args& args) {
  common::FlagSet fs("farm version", "Show the Farm version");
  auto pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "farm version: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  std::cout << "farm version 0.1.0\n";
  return 0;
}

}  // namespace farm::cli
