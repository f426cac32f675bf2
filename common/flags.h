// A small command-line parser for Farm's binaries, in the style of docker's CLI (pflag):
// `--name=value`, `--name value`, `-n value`, `-nvalue`, grouped short booleans (`-qv`),
// `--bool`/`--bool=false`, repeatable flags, `--` ends flags, a lone `-` is a positional.
// Flags and positionals may be interleaved unless StopAtFirstPositional() is set (for
// commands such as `farm run IMAGE ARGS...` whose tail belongs to someone else).
//
//   common::FlagSet fs("farm build [OPTIONS] PATH | -", "Build an image from a Dockerfile");
//   std::vector<std::string> tags; bool quiet = false;
//   fs.Repeated("tag", 't', &tags, "Name and optionally a tag (name:tag)");
//   fs.Bool("quiet", 'q', &quiet, "Suppress the build output and print the image ID");
//   ASSIGN_OR_RETURN(std::vector<std::string> args, fs.Parse(argv_tail));
//   if (fs.help_requested()) { std::cout << fs.Help(); return 0; }
//
// Errors name the flag and say what was expected; no exceptions are thrown.
#ifndef FARM_COMMON_FLAGS_H_
#define FARM_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::common {

class FlagSet {
 public:
  FlagSet(std::string usage, std::string description);

  // Each registration binds a flag to a variable that keeps its default until parsed.
  // `short_name` is 0 for none. Names are given without dashes.
  void String(absl::string_view name, char short_name, std::string* out, absl::string_view help,
              absl::string_view value_name = "string");
  void Bool(absl::string_view name, char short_name, bool* out, absl::string_view help);
  void Int(absl::string_view name, char short_name, int64_t* out, absl::string_view help);
  // Every occurrence appends; the variable's initial content is kept as a default.
  void Repeated(absl::string_view name, char short_name, std::vector<std::string>* out,
                absl::string_view help, absl::string_view value_name = "string");
  // A size such as 10G, 512MiB, 1000000 (bytes). Binary units: K=KiB, M=MiB, G=GiB, T=TiB.
  void Size(absl::string_view name, char short_name, int64_t* out, absl::string_view help);
  // A flag whose value is checked by `set`; `set` returns an error for a bad value.
  void Custom(absl::string_view name, char short_name, absl::string_view value_name,
              absl::string_view help, std::function<absl::Status(absl::string_view)> set);

  // Stop treating arguments as flags after the first positional (for `run IMAGE ARGS...`).
  void StopAtFirstPositional() { stop_at_first_positional_ = true; }

  // Parses `args` (without the program/subcommand name). Returns the positionals in order.
  // `-h`/`--help` sets help_requested() and stops parsing successfully.
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_requested_; }
  // True if the flag was given on the command line (for flags whose default matters).
  bool WasSet(absl::string_view name) const;
  // "Usage: ...\n\n<description>\n\nOptions:\n  -t, --tag string   help\n..."
  std::string Help() const;

 private:
  enum class Kind { kString, kBool, kInt, kRepeated, kCustom };
  struct Flag {
    std::string name;
    char short_name = 0;
    Kind kind;
    std::string value_name;
    std::string help;
    std::function<absl::Status(absl::string_view)> set;
    bool* bool_out = nullptr;
    bool was_set = false;
  };
  void Add(Flag flag);
  Flag* Find(absl::string_view name);
  Flag* FindShort(char c);

  std::string usage_;
  std::string description_;
  std::vector<Flag> flags_;
  bool stop_at_first_positional_ = false;
  bool help_requested_ = false;
};

// Parses "10G", "512MiB", "1.5GB"(not allowed: integers only), "1000" into bytes.
absl::StatusOr<int64_t> ParseSize(absl::string_view text);
// Formats bytes the way docker does ("1.23GB", "45.6MB", "789B"), decimal units.
std::string HumanSize(int64_t bytes);
// Formats a bound in the binary units ParseSize reads: "64 GiB", "512 KiB", "1.5 MiB", "300 B",
// so an error can name a limit as the operator set it.
std::string HumanBinarySize(int64_t bytes);

}  // namespace farm::common

#endif  // FARM_COMMON_FLAGS_H_
