#include "cli/build_inputs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/reference.h"
#include "scheduler/dockerfile/parser.h"

namespace farm::cli {

void BuildInputFlags::Register(common::FlagSet* fs) {
  fs->String("file", 'f', &file, "Name of the Dockerfile (default: PATH/Dockerfile; - for stdin)");
  fs->Repeated("build-arg", 0, &build_args, "Set build-time variables (NAME=VALUE)", "list");
  fs->String("target", 0, &target, "Set the target build stage to build");
  fs->Repeated("build-context", 0, &build_contexts,
               "Additional build context (NAME=PATH or NAME=docker-image://REF): COPY --from=NAME, "
               "RUN --mount=from=NAME and FROM NAME read it",
               "stringArray");
  fs->String("platform", 0, &platform, "Set the target platform for the build");
  fs->Bool("normalize-permissions", 0, &normalize_permissions,
           "Make context files 0644 (0755 if executable) and directories 0755 in COPY/ADD, "
           "instead of keeping their permission bits as docker build does");
  fs->Bool("preserve-permissions", 0, &preserve_permissions,
           "Deprecated: keeping the permission bits is the default");
}

absl::StatusOr<std::map<std::string, BuildContextArg>> BuildInputFlags::BuildContexts() const {
  constexpr size_t kMaxNamedContexts = 64;
  std::map<std::string, BuildContextArg> out;
  for (const std::string& a : build_contexts) {
    size_t eq = a.find('=');
    std::string name = a.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : a.substr(eq + 1);
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("--build-context ", a, ": ", why));
    };
    if (name.empty() || eq == std::string::npos || value.empty()) {
      return bad("expected NAME=PATH or NAME=docker-image://REF");
    }
    if (out.count(name)) return bad(absl::StrCat("the name ", name, " is given twice"));
    BuildContextArg c;
    if (absl::StartsWith(value, "docker-image://")) {
      c.image = value.substr(15);
      if (c.image.empty()) return bad("docker-image:// names no image");
      absl::StatusOr<oci::Reference> ref = oci::Reference::ParseWithDefaultTag(c.image);
      if (!ref.ok()) return bad(ref.status().message());
    } else if (absl::StrContains(value, "://") || absl::StartsWith(value, "target:") ||
               absl::StartsWith(value, "git@")) {
      return bad(
          "farm takes a local directory or docker-image://REF (not oci-layout://, URLs, "
          "git or target:, which is farm bake's)");
    } else {
      struct stat st;
      if (stat(value.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        return bad(absl::StrCat(value, " is not a directory"));
      }
      c.dir = value;
      if (c.dir[0] != '/') {
        char buf[4096];
        if (getcwd(buf, sizeof(buf)) != nullptr) c.dir = common::JoinPath(buf, c.dir);
      }
      c.dir = common::CleanPath(c.dir);
    }
    out[name] = std::move(c);
  }
  if (out.size() > kMaxNamedContexts) {
    return absl::InvalidArgumentError(absl::StrCat("--build-context: ", out.size(),
                                                   " named contexts, at most ", kMaxNamedContexts));
  }
  return out;
}

absl::StatusOr<std::map<std::string, std::string>> BuildInputFlags::BuildArgs() const {
  std::map<std::string, std::string> out;
  for (const std::string& a : build_args) {
    size_t eq = a.find('=');
    if (eq == 0)
      return absl::InvalidArgumentError(absl::StrCat("--build-arg \"", a, "\": no name"));
    if (eq == std::string::npos) {
      const char* v = getenv(a.c_str());
      if (v != nullptr) out[a] = v;
      continue;
    }
    out[a.substr(0, eq)] = a.substr(eq + 1);
  }
  return out;
}

absl::StatusOr<PreparedBuild> PrepareBuild(const BuildInputFlags& flags,
                                           const std::string& context_dir,
                                           scheduler::image::BaseImageResolver* resolver,
                                           const farm::v1::LayerOptions& layer_options,
                                           const std::string* stdin_dockerfile,
                                           const std::string& stat_cache) {
  PreparedBuild p;
  p.dockerfile_path = flags.file.empty() ? common::JoinPath(context_dir, "Dockerfile") : flags.file;
  if (p.dockerfile_path == "-") {
    if (stdin_dockerfile != nullptr) {
      p.dockerfile_text = *stdin_dockerfile;
    } else {
      p.dockerfile_text = std::string(std::istreambuf_iterator<char>(std::cin), {});
    }
  } else {
    absl::StatusOr<std::string> text = common::ReadFile(p.dockerfile_path);
    if (!text.ok()) {
      return common::Annotate(text.status(), "reading the Dockerfile");
    }
    p.dockerfile_text = *std::move(text);
  }
  std::string name = p.dockerfile_path == "-" ? "<stdin>" : p.dockerfile_path;
  ASSIGN_OR_RETURN(scheduler::dockerfile::SyntaxTree tree,
                   scheduler::dockerfile::Parse(p.dockerfile_text, name));
  ASSIGN_OR_RETURN(p.dockerfile, scheduler::dockerfile::BuildInstructions(tree));

  ASSIGN_OR_RETURN(std::vector<std::string> ignore,
                   scheduler::context::LoadIgnorePatterns(
                       context_dir, p.dockerfile_path == "-" ? "" : p.dockerfile_path));
  scheduler::context::SnapshotOptions so;
  so.normalize_permissions = flags.normalize_permissions;
  so.stat_cache = stat_cache;
  ASSIGN_OR_RETURN(p.context, scheduler::context::Snapshot::FromDirectory(context_dir, ignore, so));

  scheduler::plan::PlanOptions po;
  ASSIGN_OR_RETURN(po.build_args, flags.BuildArgs());
  po.target = flags.target;
  po.platform = flags.platform;
  po.resolver = resolver;
  po.context = &p.context->tree();
  po.context_root = p.context->root();
  po.layer_options = layer_options;
  po.layer_options.set_normalize_permissions(flags.normalize_permissions);
  po.default_network = flags.network;
  po.allow_unresolved = flags.allow_unresolved;
  ASSIGN_OR_RETURN(p.plan, scheduler::plan::MakePlan(p.dockerfile, po));
  return p;
}

}  // namespace farm::cli
