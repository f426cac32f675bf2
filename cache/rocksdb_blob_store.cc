// RocksDbBlobStore: construction, presence (FindMissing) and leases. Reads are in
// rocksdb_blob_reads.cc, writes in rocksdb_blob_writes.cc; the database, the budget and the
// pins they share are RocksDbStore's (rocksdb_store.h).
#include "cache/rocksdb_blob_store.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "cache/rocksdb_store.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"

namespace farm::cache {
namespace {

using common::FromRocks;
using format::BlobMeta;

}  // namespace

RocksDbBlobStore::RocksDbBlobStore(std::shared_ptr<RocksDbStore> store)
    : store_(std::move(store)) {}
RocksDbBlobStore::~RocksDbBlobStore() = default;

absl::StatusOr<std::unique_ptr<RocksDbBlobStore>> RocksDbBlobStore::Create(
    const RocksDbStoreOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> store, RocksDbStore::Open(options));
  return std::unique_ptr<RocksDbBlobStore>(new RocksDbBlobStore(std::move(store)));
}

int64_t RocksDbBlobStore::max_size() const { return store_->max_size(); }
int64_t RocksDbBlobStore::limit() const { return store_->limit(); }
const std::string& RocksDbBlobStore::dir() const { return store_->dir(); }

absl::StatusOr<CacheStats> RocksDbBlobStore::Stats() { return store_->Stats(); }
absl::StatusOr<GcResult> RocksDbBlobStore::Gc(const GcOptions& options) {
  return store_->Gc(options);
}
absl::StatusOr<int64_t> RocksDbBlobStore::Remove(absl::Span<const Digest> digests) {
  return store_->Remove(digests);
}

absl::StatusOr<std::vector<Digest>> RocksDbBlobStore::FindMissing(
    absl::Span<const Digest> digests) {
  std::vector<std::string> keys;
  std::vector<const Digest*> key_digests;
  absl::flat_hash_set<absl::string_view> seen;
  keys.reserve(digests.size());
  for (const Digest& d : digests) {
    RETURN_IF_ERROR(ValidateDigest(d));
    if (d.empty_blob()) continue;
    keys.push_back(format::BlobKey(d));
    key_digests.push_back(&d);
  }
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  if (!keys.empty()) {
    store_->db()->MultiGet(rocksdb::ReadOptions(), store_->meta_cf(), keys.size(), slices.data(),
                           values.data(), statuses.data());
  }
  std::vector<Digest> missing;
  std::vector<std::string> touch;
  const int64_t now = store_->NowMs();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!seen.insert(keys[i]).second) continue;
    if (statuses[i].IsNotFound()) {
      missing.push_back(*key_digests[i]);
      continue;
    }
    RETURN_IF_ERROR(FromRocks(statuses[i], "reading blob metadata"));
    BlobMeta meta;
    if (format::DecodeMeta(ToView(values[i]), &meta) && store_->TouchDue(meta.atime_ms, now)) {
      touch.push_back(keys[i]);
    }
  }
  if (!touch.empty()) store_->TouchBlobs(touch);
  return missing;
}

// ---------------------------------------------------------------------------------------------
// Leases.

absl::StatusOr<BlobStore::Lease> RocksDbBlobStore::AcquireLease(absl::Span<const Digest> digests,
                                                                absl::Duration ttl) {
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease TTL must be positive, got ", absl::FormatDuration(ttl)));
  }
  ttl = std::min(ttl, store_->options().max_lease_ttl);
  store_->DropExpiredLeases();
  std::vector<std::string> keys;
  std::vector<const Digest*> key_digests;
  absl::flat_hash_set<std::string> seen;
  for (const Digest& d : digests) {
    RETURN_IF_ERROR(ValidateDigest(d));
    if (d.empty_blob()) continue;
    std::string k = format::BlobKey(d);
    if (seen.insert(k).second) {
      keys.push_back(std::move(k));
      key_digests.push_back(&d);
    }
  }
  BlobStore::Lease lease;
  lease.id = common::RandomHex(16);
  const int64_t now = store_->NowMs();
  const int64_t expiry = now + absl::ToInt64Milliseconds(ttl);
  format::LeaseRecord rec;
  rec.expiry_ms = expiry;
  std::vector<std::string> touch;
  {
    // Under the stripes, so that a blob found present here cannot be evicted before it is
    // pinned.
    std::vector<int> stripes;
    for (const std::string& k : keys) stripes.push_back(RocksDbStore::StripeOfBlob(k));
    RocksDbStore::StripeLocks locks(store_.get(), std::move(stripes));
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    store_->db()->MultiGet(rocksdb::ReadOptions(), store_->meta_cf(), keys.size(), slices.data(),
                           values.data(), statuses.data());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) {
        lease.missing.push_back(*key_digests[i]);
        continue;
      }
      RETURN_IF_ERROR(FromRocks(statuses[i], "reading blob metadata"));
      rec.keys.push_back(keys[i]);
      BlobMeta meta;
      if (format::DecodeMeta(ToView(values[i]), &meta) && store_->TouchDue(meta.atime_ms, now)) {
        touch.push_back(keys[i]);
      }
    }
    store_->pins().AddLease(lease.id, expiry, rec.keys);
  }
  absl::Status s =
      FromRocks(store_->db()->Put(store_->SyncWrite(), store_->default_cf(),
                                  format::LeaseKey(lease.id), format::EncodeLease(rec)),
                "recording lease");
  if (!s.ok()) {
    ReleaseLease(lease.id).IgnoreError();
    return s;
  }
  if (!touch.empty()) store_->TouchBlobs(touch);
  return lease;
}

absl::Status RocksDbBlobStore::ReleaseLease(const std::string& lease_id) {
  if (!store_->pins().ReleaseLease(lease_id, store_->NowMs())) {
    return absl::NotFoundError(absl::StrCat("lease ", lease_id, " is unknown or expired"));
  }
  return FromRocks(store_->db()->Delete(rocksdb::WriteOptions(), store_->default_cf(),
                                        format::LeaseKey(lease_id)),
                   "releasing lease");
}

}  // namespace farm::cache
