// Stage 1 of the Dockerfile front end: text → syntax tree.
//
// Like Docker's own parser (BuildKit frontend/dockerfile/parser) this stage is syntax only:
// parser directives, comments, line continuations, heredocs, builder flags, and each
// instruction's arguments split the way that instruction is written (JSON array or shell
// form, key=value pairs, whitespace-separated words). It does not know which flags an
// instruction accepts, that FROM must come first, or what an unknown instruction is: those
// are stage 2's errors (instructions.h). Its own errors are those Docker's parser has: an
// empty file, an unterminated heredoc or JSON array of non-strings, ENV/LABEL without a value,
// a bad escape directive, a repeated directive, ONBUILD of nothing.
//
//   ASSIGN_OR_RETURN(scheduler::dockerfile::SyntaxTree tree, scheduler::dockerfile::Parse(text,
//   "Dockerfile")); for (const scheduler::dockerfile::Node& n : tree.nodes) { ... n.keyword ...
//   n.args ... }
#ifndef FARM_SCHEDULER_DOCKERFILE_PARSER_H_
#define FARM_SCHEDULER_DOCKERFILE_PARSER_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::scheduler::dockerfile {

// 1-based line and column (columns count bytes).
struct Position {
  int line = 0;
  int column = 0;
};

struct Heredoc {
  std::string name;     // the delimiter word, quotes removed
  std::string content;  // the lines between the delimiters, each ending in "\n"
  bool expand = true;   // false when any part of the delimiter was quoted (<<'EOF', <<"EOF")
  bool chomp = false;   // <<-EOF: leading tabs are stripped from the content and terminator
  int fd = 0;           // 3<<EOF gives 3; 0 when not written
};

// A key=value pair of ENV, LABEL (values keep their quotes: stage 2 expands and unquotes).
struct KeyValue {
  std::string key;
  std::string value;
  bool legacy = false;  // written as `ENV key value` (no '=')
};

struct Node {
  std::string command;   // the instruction as written ("run", "RUN")
  std::string keyword;   // lowercased ("run")
  std::string original;  // the logical line: continuations joined, comments inside removed
  std::vector<std::string> flags;  // builder flags, e.g. "--mount=type=cache,target=/x"
  std::vector<Position> flag_positions;
  // The arguments, split as the instruction is written:
  //  - JSON form (json == true): the array's strings;
  //  - RUN/CMD/ENTRYPOINT/SHELL shell form: one element, the rest of the line;
  //  - HEALTHCHECK: args[0] is the type (CMD, NONE, ...), then the command as above;
  //  - ADD/COPY/VOLUME/FROM/EXPOSE shell form, ARG: whitespace/quote-separated words;
  //  - MAINTAINER/USER/WORKDIR/STOPSIGNAL and unknown instructions: one element, the rest.
  std::vector<std::string> args;
  std::vector<Position> arg_positions;  // where each argument starts (JSON: the '[')
  std::vector<KeyValue> key_values;     // ENV, LABEL
  bool json = false;                    // exec (JSON array) form
  std::vector<Heredoc> heredocs;
  std::unique_ptr<Node> onbuild;      // ONBUILD's trigger instruction
  Position start;                     // the instruction keyword
  int end_line = 0;                   // last line, heredoc bodies included
  std::vector<std::string> comments;  // comment lines right before the instruction

  Node() = default;
  Node(Node&&) = default;
  Node& operator=(Node&&) = default;
  Node Clone() const;
};

struct Directive {
  std::string name;  // lowercased: syntax, escape, check
  std::string value;
  int line = 0;
};

struct Warning {
  std::string message;
  int line = 0;
};

struct SyntaxTree {
  std::string filename;
  char escape = '\\';
  std::vector<Directive> directives;
  std::vector<Node> nodes;
  std::vector<Warning> warnings;
};

// Parses `text` (the Dockerfile's bytes; `filename` is used in error messages). Errors are
// INVALID_ARGUMENT with the message "FILE:LINE:COL: what".
absl::StatusOr<SyntaxTree> Parse(absl::string_view text, absl::string_view filename);

// Parses one instruction line (used for ONBUILD triggers stored in an image config).
absl::StatusOr<Node> ParseLine(absl::string_view line, char escape, absl::string_view filename,
                               int line_number);

// If `line` continues on the next one (BuildKit's rule: it ends with the escape character and
// blanks, and that escape is not itself escaped), removes the escape and what follows it and
// returns true; otherwise leaves `line` alone and returns false.
bool TrimContinuation(std::string* line, char escape);

// Removes leading tabs from each line (the content of a <<- heredoc).
std::string ChompHeredocContent(absl::string_view content);

// Recognizes a heredoc redirection word ("<<EOF", "<<-'EOF'", "3<<EOF"); nullopt-like empty
// name when `word` is not one. INVALID_ARGUMENT for an unterminated quote in the delimiter.
absl::StatusOr<Heredoc> ParseHeredocWord(absl::string_view word);

// The syntax tree as JSON (what `farm parse` prints; documented in README).
std::string SyntaxTreeToJson(const SyntaxTree& tree);

// "FILE:LINE:COL: message" as an INVALID_ARGUMENT status.
absl::Status ErrorAt(absl::string_view filename, Position pos, absl::string_view message);

}  // namespace farm::scheduler::dockerfile

#endif  // FARM_SCHEDULER_DOCKERFILE_PARSER_H_
