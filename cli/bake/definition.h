// What `farm bake` builds: buildx's bake definition (groups of targets, targets with their
// build settings), as read from bake JSON and Compose files (files.h), and its resolution
// for a set of requested names: groups expanded, `inherits` applied, defaults filled, the
// targets that others use as a named context (`contexts: {x: "target:other"}`) added and
// ordered before them.
//
//   ASSIGN_OR_RETURN(bake::Definition def, bake::LoadFiles(files, bake::ProcessEnv()));
//   ASSIGN_OR_RETURN(bake::Resolved r, bake::Resolve(def, {"default"}));
//   for (const bake::Target& t : r.targets) ...   // dependencies first
//   std::cout << bake::PrintJson(r);                 // buildx's --print shape
#ifndef FARM_CLI_BAKE_DEFINITION_H_
#define FARM_CLI_BAKE_DEFINITION_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace farm::cli::bake {

// One target. Unset fields (nullopt / empty) take their value from the targets it inherits,
// then from the defaults (context ".", dockerfile "Dockerfile").
struct Target {
  std::string name;
  std::vector<std::string> inherits;
  std::optional<std::string> context;
  std::optional<std::string> dockerfile;
  std::optional<std::string> dockerfile_inline;
  std::optional<std::string> target;  // the Dockerfile stage
  std::map<std::string, std::string> args;
  std::map<std::string, std::string> labels;
  // Named contexts: name → "path" | "docker-image://ref" | "target:other".
  std::map<std::string, std::string> contexts;
  std::optional<std::vector<std::string>> tags;
  std::optional<std::vector<std::string>> platforms;
  std::optional<std::vector<std::string>> cache_from;
  std::optional<std::vector<std::string>> output;
  std::optional<bool> no_cache;
  std::optional<bool> pull;
  // Where it was defined ("docker-bake.json", "compose.yaml:12:5"), for messages.
  std::string origin;
};

struct Group {
  std::vector<std::string> targets;  // targets or other groups
};

struct Definition {
  std::map<std::string, Group> groups;
  std::map<std::string, Target> targets;
  std::vector<std::string> files;  // what was read, in order
  std::vector<std::string> warnings;
};

// Merges `over` into `base` as buildx merges files: scalars and lists set in `over` replace,
// maps (args, labels, contexts) merge key by key, inherits append.
void MergeTarget(const Target& over, Target* base);

struct Resolved {
  std::vector<std::string> requested;  // the names asked for (groups expanded), in order
  std::vector<Target> targets;         // every target to build, dependencies first
  // For each target, the targets it needs built first (its "target:" contexts).
  std::map<std::string, std::vector<std::string>> needs;
};

// Resolves `names` (targets or groups; empty means "default"). With no "default" group, the
// default is every target when the definition has any (as buildx does for Compose files).
// NOT_FOUND for an unknown name; INVALID_ARGUMENT for inherits or context cycles, a target
// inheriting an unknown one, or a bad context value.
absl::StatusOr<Resolved> Resolve(const Definition& def, const std::vector<std::string>& names);

// The resolved definition as `docker buildx bake --print` prints it: {"group": {"default":
// {"targets": [...]}}, "target": {name: {"context": ..., "dockerfile": ..., ...}}}, indented.
std::string PrintJson(const Resolved& r);

// A named context's value, classified.
struct ContextSource {
  enum class Kind { kPath, kImage, kTarget } kind = Kind::kPath;
  std::string value;  // the path, the image reference, or the target's name
};
// INVALID_ARGUMENT for schemes farm does not take (oci-layout://, https://, git URLs).
absl::StatusOr<ContextSource> ParseContextSource(const std::string& value);

}  // namespace farm::cli::bake

#endif  // FARM_CLI_BAKE_DEFINITION_H_
