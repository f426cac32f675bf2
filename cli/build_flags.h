// The `docker build` flags that `farm build` (in process) and `farm submit` (on a farm) share,
// and their checking: what both accept means the same on both.
#ifndef FARM_CLI_BUILD_FLAGS_H_
#define FARM_CLI_BUILD_FLAGS_H_

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/build_inputs.h"
#include "common/flags.h"
#include "common/fs.h"
#include "farm/v1/step.pb.h"
#include "oci/reference.h"

namespace farm::cli {

struct BuildFlags {
  BuildInputFlags in;
  std::vector<std::string> tags;
  std::vector<std::string> labels;
  std::vector<std::string> secrets;
  std::vector<std::string> insecure;
  std::vector<std::string> cache_from_scopes;
  // Entitlements the build asks for (--allow network.host, --allow security.insecure): a RUN
  // needing one runs only if the host (or the farm) permits it too.
  std::vector<std::string> allow;
  std::string cache_scope = "main";
  std::string progress = "auto";
  std::string network = "default";
  std::string iidfile, metadata_file;
  std::string compression;  // "" = deferred: uncompressed locally, gzip when exported
  std::string format = "oci";
  bool no_cache = false, pull = false, push = false, quiet = false;

  // Registers the shared flags on `fs`.
  void Register(common::FlagSet* fs);
};

// The flags' values, checked.
struct CheckedBuildFlags {
  std::vector<oci::Reference> tags;
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> secrets;  // --secret id → bytes
  std::map<std::string, std::string> build_args;
  farm::v1::LayerOptions layer_options;  // compression, SOURCE_DATE_EPOCH, permissions
  std::optional<int64_t> source_date_epoch;
  std::set<std::string> allow;  // --allow, checked names
};

// Checks every shared flag (reading --secret files and variables); INVALID_ARGUMENT names the
// flag and the value.
absl::StatusOr<CheckedBuildFlags> CheckBuildFlags(const BuildFlags& f);

// Where a build's context and Dockerfile come from: the context is PATH, or a tar of it on
// stdin ("-"); the Dockerfile is -f (default PATH/Dockerfile), or stdin with -f -.
struct BuildSource {
  std::string context_dir;
  std::unique_ptr<common::TempDir> tar_dir;     // set when the context came as a tar on stdin
  std::string dockerfile_path;                  // meaningless when stdin_dockerfile is set
  std::optional<std::string> stdin_dockerfile;  // the Dockerfile's text, read from stdin
  std::string dockerfile_text;                  // the Dockerfile's text, wherever it came from
  std::string dockerfile_name;  // as shown: "<stdin>", a path, or a path inside a stdin tar
};

// Extracts a context tar from stdin (a relative -f then names a file inside it) or reads a
// Dockerfile from stdin, and reads the Dockerfile. INVALID_ARGUMENT if both would come from
// stdin or the context directory does not exist; the read error if the Dockerfile cannot be
// read.
absl::StatusOr<BuildSource> OpenBuildSource(const std::string& context_arg, BuildInputFlags* in);

}  // namespace farm::cli

#endif  // FARM_CLI_BUILD_FLAGS_H_
