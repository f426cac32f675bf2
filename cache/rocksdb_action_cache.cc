#include "cache/rocksdb_action_cache.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cache/action_result_refs.h"
#include "cache/rocksdb_store_impl.h"
#include "common/status_macros.h"

namespace farm::cache {
namespace {

absl::Status ValidateScope(absl::string_view scope) {
  if (scope.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("action cache scope contains a NUL byte");
  }
  if (scope.size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("action cache scope is ", scope.size(), " bytes long; the limit is 1024"));
  }
  return absl::OkStatus();
}

absl::Status ValidateKey(const common::Digest& key) {
  if (!common::IsValidSha256Hex(key.hash) || key.size_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid action digest \"", key.hash, "/", key.size_bytes, "\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbActionCache>> RocksDbActionCache::Create(
    std::shared_ptr<RocksDbBlobStore> store, const Options& options) {
  if (store == nullptr) return absl::InvalidArgumentError("RocksDbActionCache needs a store");
  return std::unique_ptr<RocksDbActionCache>(new RocksDbActionCache(std::move(store), options));
}

absl::StatusOr<std::string> RocksDbActionCache::Get(absl::Span<const std::string> scopes,
                                                    const common::Digest& key) {
  RETURN_IF_ERROR(ValidateKey(key));
  if (scopes.empty()) return absl::InvalidArgumentError("no action cache scope given");
  for (const std::string& scope : scopes) RETURN_IF_ERROR(ValidateScope(scope));
  for (const std::string& scope : scopes) {
    absl::StatusOr<std::string> result = store_->impl()->AcGet(scope, key);
    if (absl::IsNotFound(result.status())) continue;
    if (!result.ok()) return result.status();
    absl::StatusOr<std::vector<common::Digest>> missing =
        FindMissingReferences(*result, *store_, options_.max_tree_size);
    if (missing.ok() && missing->empty()) return result;
    if (!missing.ok() && !absl::IsInvalidArgument(missing.status())) return missing.status();
    // Incomplete (its blobs were evicted) or unparseable: a dead entry. Drop it and go on.
    store_->impl()->AcDeleteIf(scope, key, *result).IgnoreError();
  }
  return absl::NotFoundError(absl::StrCat("no complete action result for ", key.ToString(),
                                          " in scopes [", absl::StrJoin(scopes, ", "), "]"));
}

absl::Status RocksDbActionCache::Update(const std::string& scope, const common::Digest& key,
                                        absl::string_view action_result) {
  RETURN_IF_ERROR(ValidateKey(key));
  RETURN_IF_ERROR(ValidateScope(scope));
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing,
                   FindMissingReferences(action_result, *store_, options_.max_tree_size));
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "action result for ", key.ToString(), " names blob ", missing[0].ToString(),
        ", which is not in the CAS",
        missing.size() > 1 ? absl::StrCat(" (and ", missing.size() - 1, " more)") : ""));
  }
  return store_->impl()->AcPut(scope, key, action_result);
}

}  // namespace farm::cache
