#include "scheduler/pipeline/contexts.h"

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::scheduler::pipeline {

namespace {

absl::StatusOr<std::unique_ptr<context::Snapshot>> Hash(const std::string& dir,
                                                        const std::string& dockerfile_path,
                                                        const context::SnapshotOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> ignore,
                   context::LoadIgnorePatterns(dir, dockerfile_path));
  return context::Snapshot::FromDirectory(dir, ignore, options);
}

}  // namespace

LocalContext::~LocalContext() {
  if (prefetch_.joinable()) prefetch_.join();
}

void LocalContext::Prefetch() {
  if (prefetch_.joinable() || snapshot_ != nullptr) return;
  prefetch_ = std::thread([this] { prefetched_ = Hash(dir_, dockerfile_path_, options_); });
}

absl::Status LocalContext::Load(const std::function<void(const std::string&)>& log) {
  if (prefetch_.joinable()) {
    prefetch_.join();
    ASSIGN_OR_RETURN(snapshot_, std::move(prefetched_));
  } else {
    ASSIGN_OR_RETURN(snapshot_, Hash(dir_, dockerfile_path_, options_));
  }
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
