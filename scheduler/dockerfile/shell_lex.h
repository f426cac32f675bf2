// Docker's shell-word lexer (BuildKit frontend/dockerfile/shell/lex.go): variable expansion
// and quote removal for the words of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
// VOLUME, WORKDIR, ARG and RUN --mount, exactly as `docker build` does it.
//
// Supported: $v, ${v}, ${v:-w}, ${v-w}, ${v:+w}, ${v+w}, ${v:?msg}, ${v?msg}, ${v#p},
// ${v##p}, ${v%p}, ${v%%p}, ${v/p/r}, ${v//p/r}; '…' (literal), "…" (with $ expansion and
// escapes of " $ and the escape character), the escape character (\ or `) outside quotes.
// Unset variables expand to "" (like Docker; the caller can report them as unmatched).
//
//   scheduler::dockerfile::ShellLex lex('\\');
//   ASSIGN_OR_RETURN(auto r, lex.Process("${HOME:-/root}/bin", env));   // r.word
#ifndef FARM_SCHEDULER_DOCKERFILE_SHELL_LEX_H_
#define FARM_SCHEDULER_DOCKERFILE_SHELL_LEX_H_

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::scheduler::dockerfile {

// Looks a variable up: its value, or nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(absl::string_view name)>;

class ShellLex {
 public:
  explicit ShellLex(char escape) : escape_(escape) {}

  // Keep quote characters in the result (heredoc delimiter detection).
  bool raw_quotes = false;
  // Keep escape characters in the result.
  bool raw_escapes = false;
  // Leave unset variables as written ("$v", "${v:-w}") instead of "".
  bool skip_unset_env = false;
  // Treat quotes as ordinary characters.
  bool skip_process_quotes = false;

  struct Result {
    std::string word;                 // the whole input, expanded, quotes removed
    std::vector<std::string> words;   // the same split on unquoted whitespace
    std::set<std::string> matched;    // variables referenced that were set
    std::set<std::string> unmatched;  // variables referenced that were unset
  };
  // INVALID_ARGUMENT for an unterminated quote, a bad substitution, or ${v?msg} with v unset;
  // the message is Docker's ("failed to process \"…\": …").
  absl::StatusOr<Result> Process(absl::string_view input, const EnvLookup& env) const;

  absl::StatusOr<std::string> ProcessWord(absl::string_view input, const EnvLookup& env) const;
  absl::StatusOr<std::vector<std::string>> ProcessWords(absl::string_view input,
                                                        const EnvLookup& env) const;

 private:
  char escape_;
};

// An EnvLookup over "KEY=VALUE" entries; later entries win.
EnvLookup EnvFromList(const std::vector<std::string>* env);

}  // namespace farm::scheduler::dockerfile

#endif  // FARM_SCHEDULER_DOCKERFILE_SHELL_LEX_H_
