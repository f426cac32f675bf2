#include "cache/action_result_refs.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "farm/v1/build.pb.h"

namespace farm::cache {

namespace reapi = build::bazel::remote::execution::v2;

absl::StatusOr<common::Digest> FromProto(const reapi::Digest& d, absl::string_view what) {
  absl::StatusOr<common::Digest> digest = common::Digest::Create(d.hash(), d.size_bytes());
  if (!digest.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", digest.status().message()));
  }
  return digest;
}

void ToProto(const common::Digest& d, reapi::Digest* out) {
  out->set_hash(d.hash);
  out->set_size_bytes(d.size_bytes);
}

absl::StatusOr<std::vector<common::Digest>> DirectReferences(const reapi::ActionResult& result) {
  std::vector<common::Digest> out;
  for (const reapi::OutputFile& f : result.output_files()) {
    ASSIGN_OR_RETURN(common::Digest d,
                     FromProto(f.digest(), absl::StrCat("output file ", f.path())));
    out.push_back(std::move(d));
  }
  if (result.has_stdout_digest()) {
    ASSIGN_OR_RETURN(common::Digest d, FromProto(result.stdout_digest(), "stdout_digest"));
    out.push_back(std::move(d));
  }
  if (result.has_stderr_digest()) {
    ASSIGN_OR_RETURN(common::Digest d, FromProto(result.stderr_digest(), "stderr_digest"));
    out.push_back(std::move(d));
  }
  // Farm's steps name their layer in execution metadata (farm.v1.StepOutput): the engine
  // uses that layer, so an entry whose layer is gone is as incomplete as a missing output.
  for (const google::protobuf::Any& any : result.execution_metadata().auxiliary_metadata()) {
    farm::v1::StepOutput step;
    if (!any.Is<farm::v1::StepOutput>()) continue;
    if (!any.UnpackTo(&step)) {
      return absl::InvalidArgumentError(
          "auxiliary metadata: a farm.v1.StepOutput that does not parse");
    }
    if (!step.has_layer()) continue;
    absl::StatusOr<common::Digest> d =
        common::Digest::ParseOci(step.layer().digest(), step.layer().size());
    if (!d.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("auxiliary metadata: step layer: ", d.status().message()));
    }
    out.push_back(*std::move(d));
  }
  for (const reapi::OutputDirectory& dir : result.output_directories()) {
    ASSIGN_OR_RETURN(common::Digest d,
                     FromProto(dir.tree_digest(), absl::StrCat("output directory ", dir.path())));
    out.push_back(std::move(d));
    if (dir.has_root_directory_digest()) {
      ASSIGN_OR_RETURN(common::Digest r,
                       FromProto(dir.root_directory_digest(),
                                 absl::StrCat("output directory ", dir.path(), " root")));
      out.push_back(std::move(r));
    }
  }
  return out;
}

namespace {

absl::Status AddTreeFiles(const reapi::Directory& dir, absl::flat_hash_set<common::Digest>* seen,
                          std::vector<common::Digest>* out) {
  for (const reapi::FileNode& f : dir.files()) {
    ASSIGN_OR_RETURN(common::Digest d, FromProto(f.digest(), absl::StrCat("tree file ", f.name())));
    if (seen->insert(d).second) out->push_back(std::move(d));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<common::Digest>> FindMissingReferences(
    absl::string_view serialized_result, BlobStore& cas, int64_t max_tree_size) {
  reapi::ActionResult result;
  if (!result.ParseFromArray(serialized_result.data(),
                             static_cast<int>(serialized_result.size()))) {
    return absl::InvalidArgumentError("action result does not parse as an ActionResult");
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> direct, DirectReferences(result));
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas.FindMissing(direct));
  if (!missing.empty()) return missing;

  std::vector<common::Digest> files;
  absl::flat_hash_set<common::Digest> seen;
  for (const reapi::OutputDirectory& dir : result.output_directories()) {
    ASSIGN_OR_RETURN(common::Digest tree_digest, FromProto(dir.tree_digest(), "tree_digest"));
    if (tree_digest.size_bytes > max_tree_size) return std::vector<common::Digest>{tree_digest};
    absl::StatusOr<std::string> bytes = cas.ReadBlob(tree_digest, max_tree_size);
    if (absl::IsNotFound(bytes.status())) return std::vector<common::Digest>{tree_digest};
    if (!bytes.ok()) return bytes.status();
    reapi::Tree tree;
    if (!tree.ParseFromString(*bytes)) return std::vector<common::Digest>{tree_digest};
    absl::Status s = AddTreeFiles(tree.root(), &seen, &files);
    for (int i = 0; s.ok() && i < tree.children_size(); ++i) {
      s = AddTreeFiles(tree.children(i), &seen, &files);
    }
    // A Tree naming malformed digests cannot be served: treat it as missing.
    if (!s.ok()) return std::vector<common::Digest>{tree_digest};
  }
  if (files.empty()) return std::vector<common::Digest>{};
  return cas.FindMissing(files);
}

}  // namespace farm::cache
