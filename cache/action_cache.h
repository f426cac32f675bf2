// ActionCache: maps an action (step) key to its result, in named scopes.
//
// A key is a Digest (for Farm's steps: sha256 of the step's key preimage; for Bazel: the
// Action digest). A value is a serialized build.bazel.remote.execution.v2.ActionResult, kept
// byte for byte. Farm stores a step's layer as an ActionResult whose output_files name the
// layer blob and whose execution_metadata.auxiliary_metadata carries farm's layer info, so one
// completeness rule serves both Farm and Bazel.
//
// Scopes: every entry lives in one scope (e.g. "main", "pr/123", a tenant; REAPI instance
// names map to scopes). A reader gives an ordered list of scopes to read through; a writer
// writes only its own scope.
//
//   ASSIGN_OR_RETURN(std::string result, ac->Get({"pr/123", "main"}, key));
//   RETURN_IF_ERROR(ac->Update("pr/123", key, serialized_action_result));
#ifndef FARM_CACHE_ACTION_CACHE_H_
#define FARM_CACHE_ACTION_CACHE_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/digest.h"

namespace farm::cache {

class ActionCache {
 public:
  using Ptr = std::shared_ptr<ActionCache>;
  virtual ~ActionCache() = default;

  // Returns the serialized ActionResult stored for `key` in the first of `scopes` that has
  // one. NOT_FOUND if none does, or if the entry names a blob that is no longer in the CAS
  // (a miss, not an error). Thread-safe.
  virtual absl::StatusOr<std::string> Get(absl::Span<const std::string> scopes,
                                          const common::Digest& key) = 0;

  // Stores `action_result` (a serialized ActionResult) for `key` in `scope`. Every blob it
  // names must already be in the CAS (FAILED_PRECONDITION otherwise); INVALID_ARGUMENT if it
  // does not parse. Durable when it returns OK. Thread-safe.
  virtual absl::Status Update(const std::string& scope, const common::Digest& key,
                              absl::string_view action_result) = 0;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_ACTION_CACHE_H_
