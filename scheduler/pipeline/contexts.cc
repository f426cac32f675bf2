#include "scheduler/pipeline/contexts.h"

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::scheduler::pipeline {

absl::Status LocalContext::Load(const std::function<void(const std::string&)>& log) {
  ASSIGN_OR_RETURN(std::vector<std::string> ignore,
                   context::LoadIgnorePatterns(dir_, dockerfile_path_));
  ASSIGN_OR_RETURN(snapshot_, context::Snapshot::FromDirectory(dir_, ignore, options_));
  log(absl::StrCat("context: ", snapshot_->file_count(), " files, ",
                   common::HumanSize(snapshot_->total_bytes()), ", ", snapshot_->files_hashed(),
                   " read (the others unchanged)"));
  return absl::OkStatus();
}

absl::Status CasContext::Load(const std::function<void(const std::string&)>& log) {
  absl::StatusOr<common::Digest> root = common::Digest::ParseOci(root_.digest(), root_.size());
  if (!root.ok()) return common::Annotate(root.status(), "build context");
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas_->FindMissing({*root}));
  if (!missing.empty()) {
    return absl::NotFoundError(absl::StrCat("build context ", root_.digest(),
                                            " is not in the cache (the client uploads it first)"));
  }
  tree_ = std::make_unique<worker::copy::CasTree>(cas_, *root);
  log(absl::StrCat("context ", root_.digest(), " from the cache"));
  return absl::OkStatus();
}

}  // namespace farm::scheduler::pipeline
