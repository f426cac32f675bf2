// What `farm plan`, `farm build` and `farm submit` share: the docker-build flags that choose
// the Dockerfile and its inputs, and the front end run over them (read the Dockerfile, snapshot
// the context with .dockerignore, parse, build instructions, plan).
#ifndef FARM_CLI_BUILD_INPUTS_H_
#define FARM_CLI_BUILD_INPUTS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "farm/v1/step.pb.h"
#include "scheduler/context/context.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/image/resolver.h"
#include "scheduler/plan/planner.h"

namespace farm::cli {

// A --build-context value: a directory, or an image (docker-image://REF).
struct BuildContextArg {
  std::string dir;    // absolute, when a directory
  std::string image;  // the reference, when an image
};

struct BuildInputFlags {
  std::string file;                         // -f
  std::vector<std::string> build_args;      // --build-arg
  std::vector<std::string> build_contexts;  // --build-context NAME=VALUE
  std::string target;                       // --target
  std::string platform = "linux/amd64";     // --platform
  bool normalize_permissions = false;       // --normalize-permissions
  bool preserve_permissions = false;        // --preserve-permissions (deprecated: the default)
  std::string network = "default";          // RUN's default network (farm build --network)
  bool allow_unresolved = false;            // base images the resolver lacks get placeholder keys

  void Register(common::FlagSet* fs);
  // --build-arg values as a map; "NAME" alone takes $NAME from the environment (or is dropped
  // if unset), as docker does.
  absl::StatusOr<std::map<std::string, std::string>> BuildArgs() const;
  // --build-context values by name, as buildx takes them: NAME=PATH (an existing directory)
  // or NAME=docker-image://REF. INVALID_ARGUMENT naming the flag for anything else (other
  // schemes, a missing directory, a repeated or empty name, more than 64).
  absl::StatusOr<std::map<std::string, BuildContextArg>> BuildContexts() const;
};

struct PreparedBuild {
  std::string dockerfile_path;  // "-" for stdin
  std::string dockerfile_text;
  std::unique_ptr<scheduler::context::Snapshot> context;
  scheduler::dockerfile::Dockerfile dockerfile;
  scheduler::plan::Plan plan;
};

// Runs the front end. `resolver` may be null (FROM images get placeholder keys). `stat_cache`
// names a stat cache file for hashing the context ("" = hash every file).
absl::StatusOr<PreparedBuild> PrepareBuild(const BuildInputFlags& flags,
                                           const std::string& context_dir,
                                           scheduler::image::BaseImageResolver* resolver,
                                           const farm::v1::LayerOptions& layer_options = {},
                                           const std::string* stdin_dockerfile = nullptr,
                                           const std::string& stat_cache = "");

}  // namespace farm::cli

#endif  // FARM_CLI_BUILD_INPUTS_H_
