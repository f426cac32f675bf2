#include "cache/rocksdb_action_cache.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cache/action_result_refs.h"
#include "cache/rocksdb_store.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"

namespace farm::cache {
namespace {

using common::FromRocks;
using format::LruType;

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
  std::shared_ptr<RocksDbStore> rocks = store->store_;
  return std::unique_ptr<RocksDbActionCache>(
      new RocksDbActionCache(std::move(store), std::move(rocks), options));
}

absl::StatusOr<std::string> RocksDbActionCache::Get(absl::Span<const std::string> scopes,
                                                    const common::Digest& key) {
  RETURN_IF_ERROR(ValidateKey(key));
  if (scopes.empty()) return absl::InvalidArgumentError("no action cache scope given");
  for (const std::string& scope : scopes) RETURN_IF_ERROR(ValidateScope(scope));
  for (const std::string& scope : scopes) {
    absl::StatusOr<std::string> result = ReadEntry(scope, key);
    if (absl::IsNotFound(result.status())) continue;
    if (!result.ok()) return result.status();
    absl::StatusOr<std::vector<common::Digest>> missing =
        FindMissingReferences(*result, *cas_, options_.max_tree_size);
    if (missing.ok() && missing->empty()) return result;
    if (!missing.ok() && !absl::IsInvalidArgument(missing.status())) return missing.status();
    // Incomplete (its blobs were evicted) or unparseable: a dead entry. Drop it and go on.
    DeleteEntryIf(scope, key, *result).IgnoreError();
  }
  return absl::NotFoundError(absl::StrCat("no complete action result for ", key.ToString(),
                                          " in scopes [", absl::StrJoin(scopes, ", "), "]"));
}

absl::Status RocksDbActionCache::Update(const std::string& scope, const common::Digest& key,
                                        absl::string_view action_result) {
  RETURN_IF_ERROR(ValidateKey(key));
  RETURN_IF_ERROR(ValidateScope(scope));
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing,
                   FindMissingReferences(action_result, *cas_, options_.max_tree_size));
  if (!missing.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "action result for ", key.ToString(), " names blob ", missing[0].ToString(),
        ", which is not in the CAS",
        missing.size() > 1 ? absl::StrCat(" (and ", missing.size() - 1, " more)") : ""));
  }
  return WriteEntry(scope, key, action_result);
}

// ---------------------------------------------------------------------------------------------
// The rows.

absl::StatusOr<std::string> RocksDbActionCache::ReadEntry(absl::string_view scope,
                                                          const common::Digest& key) {
  std::string ac_key = format::AcKey(scope, key);
  std::string value;
  rocksdb::Status s = rocks_->db()->Get(rocksdb::ReadOptions(), rocks_->ac_cf(), ac_key, &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(
        absl::StrCat("no action result for ", key.ToString(), " in scope \"", scope, "\""));
  }
  RETURN_IF_ERROR(FromRocks(s, "reading the action cache"));
  int64_t atime = 0;
  absl::string_view result;
  if (!format::DecodeAcValue(value, &atime, &result)) {
    return absl::DataLossError(absl::StrCat("corrupt action cache entry for ", key.ToString()));
  }
  std::string out(result);
  const int64_t now = rocks_->NowMs();
  if (rocks_->TouchDue(atime, now)) {
    absl::MutexLock stripe(rocks_->stripe(RocksDbStore::StripeOfAc(ac_key)));
    std::string current;
    if (rocks_->db()->Get(rocksdb::ReadOptions(), rocks_->ac_cf(), ac_key, &current).ok() &&
        current == value && atime < now) {
      int64_t charge =
          static_cast<int64_t>(ac_key.size() + value.size()) + RocksDbStore::kEntryOverhead;
      rocksdb::WriteBatch batch;
      batch.Delete(rocks_->lru_cf(), format::LruKey(atime, LruType::kAction, ac_key));
      batch.Put(rocks_->lru_cf(), format::LruKey(now, LruType::kAction, ac_key),
                format::EncodeInt64(charge));
      batch.Put(rocks_->ac_cf(), ac_key, format::EncodeAcValue(now, result));
      if (rocks_->db()->Write(rocksdb::WriteOptions(), &batch).ok()) {
        rocks_->NoteLsmWrite(static_cast<int64_t>(batch.GetDataSize()));
      }
    }
  }
  return out;
}

absl::Status RocksDbActionCache::WriteEntry(absl::string_view scope, const common::Digest& key,
                                            absl::string_view result) {
  RETURN_IF_ERROR(ValidateDigest(key));
  std::string ac_key = format::AcKey(scope, key);
  const int64_t charge =
      static_cast<int64_t>(ac_key.size() + result.size() + 9) + RocksDbStore::kEntryOverhead;
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore::Reservation> r, rocks_->Reserve(2 * charge));
  absl::MutexLock stripe(rocks_->stripe(RocksDbStore::StripeOfAc(ac_key)));
  std::string old;
  rocksdb::Status s = rocks_->db()->Get(rocksdb::ReadOptions(), rocks_->ac_cf(), ac_key, &old);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading the action cache");
  const int64_t now = rocks_->NowMs();
  rocksdb::WriteBatch batch;
  std::vector<int64_t> delta = format::ZeroCounters();
  int64_t scope_entries = 1, scope_bytes = static_cast<int64_t>(result.size());
  int64_t old_atime = 0;
  absl::string_view old_result;
  if (s.ok() && format::DecodeAcValue(old, &old_atime, &old_result)) {
    int64_t old_charge =
        static_cast<int64_t>(ac_key.size() + old.size()) + RocksDbStore::kEntryOverhead;
    batch.Delete(rocks_->lru_cf(), format::LruKey(old_atime, LruType::kAction, ac_key));
    delta[format::kAcCount] -= 1;
    delta[format::kAcCharge] -= old_charge;
    scope_entries -= 1;
    scope_bytes -= static_cast<int64_t>(old_result.size());
  }
  batch.Put(rocks_->ac_cf(), ac_key, format::EncodeAcValue(now, result));
  batch.Put(rocks_->lru_cf(), format::LruKey(now, LruType::kAction, ac_key),
            format::EncodeInt64(charge));
  delta[format::kAcCount] += 1;
  delta[format::kAcCharge] += charge;
  batch.Merge(rocks_->default_cf(), ToSlice(format::kGlobalCountersKey),
              format::EncodeCounters(delta));
  batch.Merge(rocks_->default_cf(), format::ScopeCountersKey(scope),
              format::EncodeCounters({scope_entries, scope_bytes}));
  RETURN_IF_ERROR(
      FromRocks(rocks_->db()->Write(rocks_->SyncWrite(), &batch), "writing the action cache"));
  rocks_->NoteLsmWrite(charge);
  rocks_->MirrorCounters(delta);
  return absl::OkStatus();
}

absl::Status RocksDbActionCache::DeleteEntryIf(absl::string_view scope, const common::Digest& key,
                                               absl::string_view result) {
  std::string ac_key = format::AcKey(scope, key);
  absl::MutexLock stripe(rocks_->stripe(RocksDbStore::StripeOfAc(ac_key)));
  std::string value;
  rocksdb::Status s = rocks_->db()->Get(rocksdb::ReadOptions(), rocks_->ac_cf(), ac_key, &value);
  if (s.IsNotFound()) return absl::OkStatus();
  RETURN_IF_ERROR(FromRocks(s, "reading the action cache"));
  int64_t atime = 0;
  absl::string_view stored;
  if (!format::DecodeAcValue(value, &atime, &stored) || stored != result) return absl::OkStatus();
  int64_t charge =
      static_cast<int64_t>(ac_key.size() + value.size()) + RocksDbStore::kEntryOverhead;
  rocksdb::WriteBatch batch;
  batch.Delete(rocks_->ac_cf(), ac_key);
  batch.Delete(rocks_->lru_cf(), format::LruKey(atime, LruType::kAction, ac_key));
  std::vector<int64_t> delta = format::ZeroCounters();
  delta[format::kAcCount] = -1;
  delta[format::kAcCharge] = -charge;
  batch.Merge(rocks_->default_cf(), ToSlice(format::kGlobalCountersKey),
              format::EncodeCounters(delta));
  batch.Merge(rocks_->default_cf(), format::ScopeCountersKey(scope),
              format::EncodeCounters({-1, -static_cast<int64_t>(stored.size())}));
  RETURN_IF_ERROR(
      FromRocks(rocks_->db()->Write(rocksdb::WriteOptions(), &batch), "dropping a dead entry"));
  rocks_->MirrorCounters(delta);
  rocks_->NoteLsmDropped(charge);
  return absl::OkStatus();
}

}  // namespace farm::cache
