#include "cli/build_flags.h"

#include <cstdlib>
#include <iostream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/build_outputs.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "executor/entitlements.h"

namespace farm::cli {

namespace {

// --secret id=X[,src=PATH|,env=VAR] (docker's syntax; type=file|env accepted).
absl::Status AddSecret(const std::string& spec, std::map<std::string, std::string>* out) {
  std::string id, src, env;
  for (absl::string_view f : absl::StrSplit(spec, ',')) {
    size_t eq = f.find('=');
    std::string k(f.substr(0, eq));
    std::string v = eq == absl::string_view::npos ? "" : std::string(f.substr(eq + 1));
    if (k == "id") {
      id = v;
    } else if (k == "src" || k == "source") {
      src = v;
    } else if (k == "env") {
      env = v;
    } else if (k != "type") {
      return absl::InvalidArgumentError(absl::StrCat("--secret ", spec, ": unknown key ", k));
    }
  }
  if (id.empty()) {
    if (!src.empty()) id = src.substr(src.rfind('/') + 1);
    if (!env.empty()) id = env;
  }
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat("--secret ", spec, ": no id"));
  if (src.empty() && env.empty()) env = id;
  if (!src.empty()) {
    absl::StatusOr<std::string> bytes = common::ReadFile(src);
    if (!bytes.ok()) return common::Annotate(bytes.status(), absl::StrCat("--secret ", id));
    (*out)[id] = *bytes;
  } else {
    const char* v = getenv(env.c_str());
    if (v == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("--secret ", id, ": environment variable ", env, " is not set"));
    }
    (*out)[id] = v;
  }
  return absl::OkStatus();
}

}  // namespace

void BuildFlags::Register(common::FlagSet* fs) {
  in.Register(fs);
  fs->Repeated("tag", 't', &tags, "Name and optionally a tag (name:tag)", "list");
  fs->Bool("no-cache", 0, &no_cache, "Do not use the cache when building the image");
  fs->Bool("pull", 0, &pull, "Always attempt to pull a newer version of the base images");
  fs->Repeated("label", 0, &labels, "Set metadata for the image (key=value)", "list");
  fs->String("progress", 0, &progress, "Progress output: auto, tty, plain, quiet");
  fs->String("network", 0, &network, "Networking mode for RUN instructions: default, none or host");
  fs->Repeated("secret", 0, &secrets,
               "Secret to expose to the build (id=mysecret[,src=/local/secret|,env=VAR])",
               "stringArray");
  fs->Bool("push", 0, &push, "Push the image to its registry after building it");
  fs->String("iidfile", 0, &iidfile, "Write the image ID to the file");
  fs->String("metadata-file", 0, &metadata_file, "Write build result metadata to the file");
  fs->Bool("quiet", 'q', &quiet, "Suppress the build output and print image ID on success");
  fs->Repeated("insecure-registry", 0, &insecure, "Registry (host:port) reachable over plain HTTP",
               "list");
  fs->String("cache-scope", 0, &cache_scope,
             "Action-cache scope to read and write (e.g. a branch: pr/123)");
  fs->Repeated("cache-from-scope", 0, &cache_from_scopes,
               "Further scopes to read from, in order (e.g. main)", "list");
  fs->String("compression", 0, &compression,
             "Compress each layer as it is made: gzip or zstd (default: layers stay "
             "uncompressed and are gzip-compressed once, when pushed or exported)");
  fs->String("format", 0, &format, "Manifest format: oci or docker (Docker v2 schema 2)");
  fs->Repeated("allow", 0, &allow,
               "Allow an extra privileged entitlement (network.host, security.insecure); the "
               "host must permit it too",
               "stringArray");
}

absl::StatusOr<CheckedBuildFlags> CheckBuildFlags(const BuildFlags& f) {
  CheckedBuildFlags c;
  if (!f.compression.empty() && f.compression != "gzip" && f.compression != "zstd") {
    return absl::InvalidArgumentError(
        absl::StrCat("--compression ", f.compression, ": want gzip or zstd"));
  }
  if (f.format != "oci" && f.format != "docker") {
    return absl::InvalidArgumentError(absl::StrCat("--format ", f.format, ": want oci or docker"));
  }
  if (f.network != "default" && f.network != "none" && f.network != "host") {
    return absl::InvalidArgumentError(
        absl::StrCat("--network ", f.network, ": want default, none or host"));
  }
  if (f.cache_scope.empty()) return absl::InvalidArgumentError("--cache-scope must not be empty");
  for (const std::string& a : f.allow) {
    for (absl::string_view e : absl::StrSplit(a, ',', absl::SkipEmpty())) {
      RETURN_IF_ERROR(executor::CheckEntitlementName(e, "--allow"));
      c.allow.insert(std::string(e));
    }
  }
  for (const std::string& t : f.tags) {
    absl::StatusOr<oci::Reference> r = oci::Reference::ParseWithDefaultTag(t);
    if (!r.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "invalid argument \"", t, "\" for \"-t, --tag\" flag: ", r.status().message()));
    }
    if (!r->digest().empty()) {
      return absl::InvalidArgumentError(absl::StrCat("-t ", t, ": a tag cannot name a digest"));
    }
    c.tags.push_back(*r);
  }
  if (f.push && c.tags.empty()) {
    return absl::InvalidArgumentError("--push needs at least one -t NAME:TAG");
  }
  for (const std::string& l : f.labels) {
    size_t eq = l.find('=');
    c.labels[l.substr(0, eq)] = eq == std::string::npos ? "" : l.substr(eq + 1);
  }
  for (const std::string& s : f.secrets) {
    absl::Status st = AddSecret(s, &c.secrets);
    if (!st.ok()) return st;
  }
  absl::StatusOr<std::map<std::string, std::string>> args = f.in.BuildArgs();
  if (!args.ok()) return args.status();
  c.build_args = *std::move(args);

  // SOURCE_DATE_EPOCH: the environment, or a build arg of that name.
  c.layer_options.set_compression(f.compression == "zstd"   ? farm::v1::LayerOptions::ZSTD
                                  : f.compression == "gzip" ? farm::v1::LayerOptions::GZIP
                                                            : farm::v1::LayerOptions::UNCOMPRESSED);
  if (f.in.preserve_permissions && f.in.normalize_permissions) {
    return absl::InvalidArgumentError(
        "--preserve-permissions and --normalize-permissions contradict each other");
  }
  c.layer_options.set_normalize_permissions(f.in.normalize_permissions);
  const char* env_epoch = getenv("SOURCE_DATE_EPOCH");
  std::string epoch_text = env_epoch ? env_epoch : "";
  if (c.build_args.count("SOURCE_DATE_EPOCH")) epoch_text = c.build_args.at("SOURCE_DATE_EPOCH");
  if (!epoch_text.empty()) {
    int64_t v;
    if (!absl::SimpleAtoi(epoch_text, &v) || v < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SOURCE_DATE_EPOCH=", epoch_text, ": want Unix seconds"));
    }
    c.source_date_epoch = v;
    c.layer_options.set_source_date_epoch(v);
  }
  return c;
}

absl::StatusOr<BuildSource> OpenBuildSource(const std::string& context_arg, BuildInputFlags* in) {
  BuildSource src;
  src.context_dir = context_arg;
  if (context_arg == "-") {
    if (in->file == "-") {
      return absl::InvalidArgumentError(
          "the context and the Dockerfile cannot both come from stdin");
    }
    absl::StatusOr<common::TempDir> t = common::TempDir::Create("farm-context");
    if (!t.ok()) return t.status();
    src.tar_dir = std::make_unique<common::TempDir>(*std::move(t));
    absl::StatusOr<int64_t> n = ExtractContextTar(0, src.tar_dir->path());
    if (!n.ok()) return n.status();
    src.context_dir = src.tar_dir->path();
    if (!in->file.empty() && in->file[0] != '/') {
      in->file = common::JoinPath(src.context_dir, in->file);
    }
  } else if (in->file == "-") {
    src.stdin_dockerfile = std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  if (!common::PathExists(src.context_dir)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unable to prepare context: path \"", src.context_dir, "\" not found"));
  }
  src.dockerfile_path =
      in->file.empty() ? common::JoinPath(src.context_dir, "Dockerfile") : in->file;
  if (src.stdin_dockerfile) {
    src.dockerfile_text = *src.stdin_dockerfile;
    src.dockerfile_name = "<stdin>";
  } else {
    absl::StatusOr<std::string> text = common::ReadFile(src.dockerfile_path);
    if (!text.ok()) return common::Annotate(text.status(), "reading the Dockerfile");
    src.dockerfile_text = *std::move(text);
    src.dockerfile_name = src.dockerfile_path;
    if (src.tar_dir && absl::StartsWith(src.dockerfile_name, src.tar_dir->path() + "/")) {
      src.dockerfile_name = src.dockerfile_name.substr(src.tar_dir->path().size() + 1);
    }
  }
  return src;
}

}  // namespace farm::cli
