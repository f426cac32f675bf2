// Fuzz target for the Dockerfile front end's text handling: the parser (stage 1), typed
// instructions (stage 2) and the shell lexer over every word, as the planner would expand
// them. Any input must give a value or an error: no crash, no hang, no abort.
//
// Built two ways: with clang's libFuzzer by parser_libfuzzer_test (CI runs it for a bounded
// time), and with the normal toolchain by fuzz_corpus_test, which replays the corpus.
#include <cstddef>
#include <cstdint>
#include <string>

#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"
#include "scheduler/dockerfile/shell_lex.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<farm::scheduler::dockerfile::SyntaxTree> tree =
      farm::scheduler::dockerfile::Parse(text, "Dockerfile");
  if (!tree.ok()) {
    // An error must say where: "Dockerfile:LINE:COL: ...".
    if (tree.status().message().rfind("Dockerfile:", 0) != 0) __builtin_trap();
    return 0;
  }
  std::string json = farm::scheduler::dockerfile::SyntaxTreeToJson(*tree);
  if (json.empty()) __builtin_trap();
  absl::StatusOr<farm::scheduler::dockerfile::Dockerfile> df =
      farm::scheduler::dockerfile::BuildInstructions(*tree);
  std::vector<std::string> env = {"A=1", "PATH=/bin", "EMPTY="};
  farm::scheduler::dockerfile::EnvLookup lookup = farm::scheduler::dockerfile::EnvFromList(&env);
  farm::scheduler::dockerfile::ShellLex lex(tree->escape);
  for (const farm::scheduler::dockerfile::Node& n : tree->nodes) {
    for (const std::string& a : n.args) lex.Process(a, lookup).IgnoreError();
    for (const std::string& f : n.flags) lex.Process(f, lookup).IgnoreError();
    for (const farm::scheduler::dockerfile::KeyValue& kv : n.key_values) {
      lex.Process(kv.value, lookup).IgnoreError();
    }
    for (const farm::scheduler::dockerfile::Heredoc& h : n.heredocs) {
      farm::scheduler::dockerfile::ShellLex raw('\\');
      raw.skip_process_quotes = true;
      raw.Process(h.content, lookup).IgnoreError();
    }
  }
  (void)df;
  return 0;
}
