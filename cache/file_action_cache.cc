#include "cache/file_action_cache.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace cache {

namespace {

namespace re = build::bazel::remote::execution::v2;

// The blobs an ActionResult names (what must stay in the CAS for the entry to be usable).
absl::StatusOr<std::vector<Digest>> NamedBlobs(const re::ActionResult& r) {
  std::vector<Digest> out;
  auto add = [&](const re::Digest& d) -> absl::Status {
    if (d.hash().empty() && d.size_bytes() == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(Digest parsed, Digest::Create(d.hash(), d.size_bytes()));
    out.push_back(std::move(parsed));
    return absl::OkStatus();
  };
  for (const re::OutputFile& f : r.output_files()) RETURN_IF_ERROR(add(f.digest()));
  for (const re::OutputDirectory& d : r.output_directories()) {
    RETURN_IF_ERROR(add(d.tree_digest()));
  }
  if (r.has_stdout_digest()) RETURN_IF_ERROR(add(r.stdout_digest()));
  if (r.has_stderr_digest()) RETURN_IF_ERROR(add(r.stderr_digest()));
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileActionCache>> FileActionCache::Create(const std::string& root,
                                                                         BlobStore::Ptr cas) {
  if (cas == nullptr) return absl::InvalidArgumentError("FileActionCache needs a CAS");
  RETURN_IF_ERROR(common::MakeDirs(root, 0700));
  return std::unique_ptr<FileActionCache>(new FileActionCache(root, std::move(cas)));
}

absl::StatusOr<std::string> FileActionCache::PathOf(const std::string& scope,
                                                    const Digest& key) const {
  if (scope.empty() || scope.size() > 200) {
    return absl::InvalidArgumentError(absl::StrCat("invalid action cache scope \"", scope, "\""));
  }
  for (char c : scope) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == '/';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid character in action cache scope \"", scope, "\""));
    }
  }
  if (scope == "." || scope == ".." || scope.find("..") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("invalid action cache scope \"", scope, "\""));
  }
  return absl::StrCat(root_, "/", absl::StrReplaceAll(scope, {{"/", "%2F"}}), "/", key.hash, "-",
                      key.size_bytes);
}

absl::StatusOr<std::string> FileActionCache::Get(absl::Span<const std::string> scopes,
                                                 const Digest& key) {
  for (const std::string& scope : scopes) {
    ASSIGN_OR_RETURN(std::string path, PathOf(scope, key));
    absl::StatusOr<std::string> data = common::ReadFile(path);
    if (!data.ok()) {
      if (data.status().code() == absl::StatusCode::kNotFound) continue;
      return data.status();
    }
    re::ActionResult r;
    if (!r.ParseFromString(*data)) {
      return absl::DataLossError(absl::StrCat("action cache entry ", path, " does not parse"));
    }
    ASSIGN_OR_RETURN(std::vector<Digest> blobs, NamedBlobs(r));
    ASSIGN_OR_RETURN(std::vector<Digest> missing, cas_->FindMissing(blobs));
    if (!missing.empty()) continue;  // incomplete: a miss in this scope
    return *data;
  }
  return absl::NotFoundError(absl::StrCat("no action result for ", key.ToString()));
}

absl::Status FileActionCache::Update(const std::string& scope, const Digest& key,
                                     absl::string_view action_result) {
  ASSIGN_OR_RETURN(std::string path, PathOf(scope, key));
  re::ActionResult r;
  if (!r.ParseFromArray(action_result.data(), static_cast<int>(action_result.size()))) {
    return absl::InvalidArgumentError("action result does not parse as an ActionResult");
  }
  ASSIGN_OR_RETURN(std::vector<Digest> blobs, NamedBlobs(r));
  ASSIGN_OR_RETURN(std::vector<Digest> missing, cas_->FindMissing(blobs));
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "action result names blob ", missing[0].ToString(), " which is not in the CAS"));
  }
  RETURN_IF_ERROR(common::MakeDirs(path.substr(0, path.rfind('/')), 0700));
  return common::WriteFileAtomic(path, action_result, 0600);
}

}  // namespace cache
