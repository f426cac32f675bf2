// Reading bake definitions from files, as `docker buildx bake` does:
//   - docker-bake.json (and *.json): {"variable": {...}, "group": {...}, "target": {...}};
//     "${NAME}" in string values takes the variable's value: the environment's $NAME when set,
//     else the variable block's "default" ("$${" is a literal "${").
//   - Compose files (compose.yaml, docker-compose.yml, ...): each service with a `build:`
//     section becomes a target of that name; `image:` adds a tag; ${VAR}, ${VAR:-default},
//     ${VAR-default}, ${VAR:?error}, ${VAR:+alt}, $VAR and $$ are interpolated from the
//     environment, then from a `.env` file beside the compose file.
//   - HCL (*.hcl) is refused with a way out: `docker buildx bake --print` converts it to JSON.
// Errors name the file, and the line and column where the parser knows them.
//
//   ASSIGN_OR_RETURN(std::vector<std::string> files, bake::FindFiles(".", flag_files));
//   ASSIGN_OR_RETURN(bake::Definition def, bake::LoadFiles(files, bake::ProcessEnv()));
#ifndef FARM_CLI_BAKE_FILES_H_
#define FARM_CLI_BAKE_FILES_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cli/bake/definition.h"

namespace farm::cli::bake {

// Looks a variable up; nullopt when unset.
using Env = std::function<std::optional<std::string>(const std::string& name)>;
Env ProcessEnv();

// buildx's default files, in its lookup (and merge) order.
const std::vector<std::string>& DefaultFiles();

// `given` (-f, repeatable) when not empty, else the default files present in `dir`.
// NOT_FOUND when none is; INVALID_ARGUMENT for an HCL file (with how to convert it).
absl::StatusOr<std::vector<std::string>> FindFiles(const std::string& dir,
                                                   const std::vector<std::string>& given);

// Reads and merges `files` in order (later files override earlier ones, as buildx merges).
absl::StatusOr<Definition> LoadFiles(const std::vector<std::string>& files, const Env& env);

// The parsers on text (`filename` for messages and, for Compose, the directory relative
// paths are taken from). ParseBakeJson's variables come from every file of the set: see
// LoadFiles; here, from `text` alone.
absl::Status ParseBakeJson(const std::string& filename, absl::string_view text, const Env& env,
                           Definition* into);
absl::Status ParseCompose(const std::string& filename, absl::string_view text, const Env& env,
                          Definition* into);

// Compose's interpolation of one string. INVALID_ARGUMENT for ${VAR:?msg} with VAR unset, a
// malformed ${...}; `where` prefixes messages. Unset variables without a default become "" and
// are added to `unset` (compose warns about them).
absl::StatusOr<std::string> InterpolateCompose(absl::string_view s, const Env& env,
                                               const std::string& where,
                                               std::vector<std::string>* unset);

}  // namespace farm::cli::bake

#endif  // FARM_CLI_BAKE_FILES_H_
