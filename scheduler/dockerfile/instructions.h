// Stage 2 of the Dockerfile front end: syntax tree → typed instructions grouped in stages.
//
// Each syntax-tree node becomes one typed instruction with its flags checked (an unknown,
// repeated or malformed flag is an error naming it), its arguments counted, and its words
// kept *unexpanded*: variables are expanded by the planner (stage 3), which knows the
// environment at that point of the stage. Errors carry FILE:LINE:COL (unknown instruction,
// missing FROM, bad stage name, wrong argument counts, HEALTHCHECK options, ONBUILD rules).
//
//   ASSIGN_OR_RETURN(scheduler::dockerfile::SyntaxTree tree, scheduler::dockerfile::Parse(text,
//   "Dockerfile")); ASSIGN_OR_RETURN(scheduler::dockerfile::Dockerfile df,
//   scheduler::dockerfile::BuildInstructions(tree)); for (const scheduler::dockerfile::Stage& s :
//   df.stages) ...
#ifndef FARM_SCHEDULER_DOCKERFILE_INSTRUCTIONS_H_
#define FARM_SCHEDULER_DOCKERFILE_INSTRUCTIONS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/dockerfile/parser.h"

namespace farm::scheduler::dockerfile {

// Words below are as written (quotes and variables intact) unless a comment says otherwise.

struct KeyValuePair {
  std::string key;
  std::string value;
};

struct ArgDef {
  std::string key;
  std::optional<std::string> value;  // ARG name (no default) vs ARG name=default
};

// A shell-form or exec-form command line (RUN, CMD, ENTRYPOINT, SHELL, HEALTHCHECK CMD).
struct CommandLine {
  std::vector<std::string> args;  // exec form: the JSON strings; shell form: one element
  bool prepend_shell = true;      // shell form
};

struct FromCmd {
  std::string image;       // "scratch", "alpine:3.19", "${BASE}", a stage name
  std::string stage_name;  // lowercased AS name, "" if none
  std::string platform;    // --platform
};

struct RunCmd {
  CommandLine command;
  std::vector<std::string> mounts;  // --mount values, unparsed (parsed after expansion)
  std::string network;              // --network ("" = default)
  std::string security;             // --security ("" = sandbox)
  std::vector<Heredoc> heredocs;
};

struct CmdCmd {
  CommandLine command;
};
struct EntrypointCmd {
  CommandLine command;
};
struct ShellCmd {
  std::vector<std::string> shell;
};
struct LabelCmd {
  std::vector<KeyValuePair> labels;
};
struct MaintainerCmd {
  std::string maintainer;
};
struct ExposeCmd {
  std::vector<std::string> ports;
};
struct EnvCmd {
  std::vector<KeyValuePair> env;
};

// ADD and COPY.
struct CopyCmd {
  bool add = false;
  std::vector<std::string> sources;  // heredoc sources appear as "<<NAME"
  std::string dest;
  std::vector<Heredoc> heredocs;
  std::string from;  // COPY --from
  std::string chown;
  std::string chmod;
  bool link = false;
  bool parents = false;
  std::vector<std::string> excludes;
  std::string checksum;        // ADD --checksum
  bool keep_git_dir = false;   // ADD --keep-git-dir
  std::optional<bool> unpack;  // ADD --unpack
  bool json = false;
};

struct VolumeCmd {
  std::vector<std::string> volumes;
};
struct UserCmd {
  std::string user;
};
struct WorkdirCmd {
  std::string path;
};
struct ArgCmd {
  std::vector<ArgDef> args;
};
struct OnbuildCmd {
  std::string expression;  // the trigger as written ("RUN make"), heredoc bodies appended
};
struct StopSignalCmd {
  std::string signal;
};
struct HealthcheckCmd {
  bool none = false;  // HEALTHCHECK NONE
  CommandLine test;   // CMD ...: exec form → ["CMD", ...], shell form → ["CMD-SHELL", cmd]
  int64_t interval_ns = 0;
  int64_t timeout_ns = 0;
  int64_t start_period_ns = 0;
  int64_t start_interval_ns = 0;
  int32_t retries = 0;
};

using Command = std::variant<RunCmd, CmdCmd, EntrypointCmd, ShellCmd, LabelCmd, MaintainerCmd,
                             ExposeCmd, EnvCmd, CopyCmd, VolumeCmd, UserCmd, WorkdirCmd, ArgCmd,
                             OnbuildCmd, StopSignalCmd, HealthcheckCmd>;

struct Instruction {
  std::string name;      // upper-case keyword ("RUN")
  std::string original;  // the logical line as written
  Position pos;
  int end_line = 0;
  Command command;
};

struct Stage {
  int index = 0;
  FromCmd from;
  Position pos;  // of FROM
  std::string original;
  std::vector<Instruction> instructions;
};

struct Dockerfile {
  std::string filename;
  char escape = '\\';
  std::vector<ArgDef> meta_args;  // ARGs before the first FROM
  std::vector<Position> meta_arg_positions;
  std::vector<Stage> stages;
  std::vector<Warning> warnings;
};

// Builds typed instructions from a syntax tree.
absl::StatusOr<Dockerfile> BuildInstructions(const SyntaxTree& tree);

// Parses one instruction node outside a stage context (ONBUILD triggers of a base image).
absl::StatusOr<Instruction> ParseInstruction(const Node& node, absl::string_view filename);

// Go time.ParseDuration ("1m30s", "500ms", "1.5h"); INVALID_ARGUMENT on bad input.
absl::StatusOr<int64_t> ParseGoDuration(absl::string_view text);

}  // namespace farm::scheduler::dockerfile

#endif  // FARM_SCHEDULER_DOCKERFILE_INSTRUCTIONS_H_
