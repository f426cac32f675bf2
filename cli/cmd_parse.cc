// farm parse: the Dockerfile front end's first stage alone, printing the syntax tree as JSON.
#include <iostream>

#include "cli/commands.h"
#include "common/flags.h"
#include "common/fs.h"
#include "scheduler/dockerfile/parser.h"

namespace farm::cli {

int RunParse(const Args& args) {
  common::FlagSet fs("farm parse [-f Dockerfile | FILE]",
                     "Parse a Dockerfile and print its syntax tree as JSON.\n\n"
                     "Syntax only, like Docker's own parser: unknown instructions or flags, a\n"
                     "missing FROM and invalid JSON arrays (which fall back to shell form) are\n"
                     "checked by 'farm plan'. Exits 1 with FILE:LINE:COLUMN on a syntax error.");
  std::string file;
  fs.String("file", 'f', &file, "Name of the Dockerfile (default \"Dockerfile\"; - for stdin)");
  auto pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "farm parse: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (pos->size() > 1 || (!pos->empty() && !file.empty())) {
    std::cerr << "farm parse: give the Dockerfile once, as -f FILE or as an argument\n";
    return 2;
  }
  if (!pos->empty()) file = (*pos)[0];
  if (file.empty()) file = "Dockerfile";
  absl::StatusOr<std::string> text;
  if (file == "-") {
    text = std::string(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    text = common::ReadFile(file);
  }
  if (!text.ok()) {
    std::cerr << "farm parse: " << text.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<scheduler::dockerfile::SyntaxTree> tree =
      scheduler::dockerfile::Parse(*text, file == "-" ? "<stdin>" : file);
  if (!tree.ok()) {
    std::cerr << "farm parse: " << tree.status().message() << "\n";
    return 1;
  }
  std::cout << scheduler::dockerfile::SyntaxTreeToJson(*tree);
  return 0;
}

}  // namespace farm::cli
