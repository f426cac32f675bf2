// The blobs a REAPI ActionResult depends on, and whether a CAS still holds them all. This is
// the action cache's completeness rule (shared by every ActionCache implementation that checks
// it), so that an entry whose outputs were evicted is a miss and never a broken build.
//
//   build::bazel::remote::execution::v2::ActionResult result;  // parsed
//   ASSIGN_OR_RETURN(std::vector<common::Digest> missing,
//                    cache::FindMissingReferences(serialized, *cas, 256 << 20));
//   if (!missing.empty()) { ... incomplete ... }
#ifndef FARM_CACHE_ACTION_RESULT_REFS_H_
#define FARM_CACHE_ACTION_RESULT_REFS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/blob_store.h"
#include "common/digest.h"

namespace farm::cache {

// Converts a REAPI Digest, validating it (INVALID_ARGUMENT naming `what` otherwise).
absl::StatusOr<common::Digest> FromProto(const build::bazel::remote::execution::v2::Digest& d,
                                         absl::string_view what);
void ToProto(const common::Digest& d, build::bazel::remote::execution::v2::Digest* out);

// The digests `result` names directly: output files, stdout/stderr digests, the layer of a
// farm.v1.StepOutput in execution_metadata.auxiliary_metadata (what Farm's engine reads),
// output directories' tree_digest and root_directory_digest. INVALID_ARGUMENT for a malformed
// digest.
absl::StatusOr<std::vector<common::Digest>> DirectReferences(
    const build::bazel::remote::execution::v2::ActionResult& result);

// Parses `serialized_result` (INVALID_ARGUMENT if it is not an ActionResult) and returns the
// blobs it needs that `cas` lacks: its direct references, then every file inside each output
// directory's Tree. Empty means complete. A Tree blob larger than `max_tree_size`, or one that
// does not parse, counts as missing. Presence checks go through FindMissing, so they refresh
// the recency of what is present.
absl::StatusOr<std::vector<common::Digest>> FindMissingReferences(
    absl::string_view serialized_result, BlobStore& cas, int64_t max_tree_size);

}  // namespace farm::cache

#endif  // FARM_CACHE_ACTION_RESULT_REFS_H_
