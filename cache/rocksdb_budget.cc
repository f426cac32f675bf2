// RocksDbStore's budget: admission (Reserve), LRU eviction of blobs and action results
// alike, compaction of what eviction left in the LSM, Remove, Stats and Gc. The accounting is
// described in cache/rocksdb_blob_store.h ("The size budget").
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "cache/rocksdb_store.h"
#include "common/fs.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"

namespace farm::cache {
namespace {

using common::FromRocks;
using format::BlobKind;
using format::BlobMeta;
using format::LruType;

// Disk bytes (allocated blocks) of the regular files in `dir`, recursively if asked.
int64_t DirBytes(const std::string& dir, bool recursive) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return 0;
  int64_t total = 0;
  int fd = dirfd(d);
  while (struct dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    struct stat st;
    if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISREG(st.st_mode)) {
      total += static_cast<int64_t>(st.st_blocks) * 512;
    } else if (S_ISDIR(st.st_mode) && recursive) {
      total += DirBytes(common::JoinPath(dir, e->d_name), true);
    }
  }
  closedir(d);
  return total;
}

}  // namespace

int64_t RocksDbStore::Used() const {
  return lsm_measured_.load() + lsm_since_measure_.load() + large_bytes_.load() + reserved_.load();
}

void RocksDbStore::MeasureLocked() {
  int64_t since = lsm_since_measure_.load();
  int64_t bytes = DirBytes(db_dir_, /*recursive=*/false);
  for (rocksdb::ColumnFamilyHandle* h : {default_, meta_, small_, lru_, ac_}) {
    uint64_t mem = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &mem)) {
      bytes += static_cast<int64_t>(mem);
    }
  }
  lsm_measured_ = bytes;
  lsm_since_measure_.fetch_sub(since);
  last_measure_ = absl::Now();
}

absl::Status RocksDbStore::CompactLsmLocked() {
  rocksdb::CompactRangeOptions opts;
  opts.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  for (rocksdb::ColumnFamilyHandle* h : {small_, ac_, meta_, lru_, default_}) {
    RETURN_IF_ERROR(FromRocks(db_->CompactRange(opts, h, nullptr, nullptr),
                              absl::StrCat("compacting ", h->GetName())));
  }
  lsm_evicted_since_compact_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RocksDbStore::Reservation>> RocksDbStore::Reserve(int64_t bytes) {
  if (bytes > limit_.load()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a write of ", bytes, " bytes does not fit in the cache budget (max size ",
                     max_size_.load(), " bytes, of which ", limit_.load(), " for data)"));
  }
  absl::MutexLock lock(&budget_mu_);
  RETURN_IF_ERROR(MakeRoomLocked(bytes));
  reserved_ += bytes;
  return std::make_unique<Reservation>(&reserved_, bytes);
}

absl::Status RocksDbStore::MakeRoomLocked(int64_t need) {
  const int64_t limit = limit_.load();
  if (Used() + need <= limit && absl::Now() - last_measure_ < absl::Seconds(1)) {
    return absl::OkStatus();
  }
  MeasureLocked();
  bool rescanned = false;
  for (;;) {
    int64_t used = Used();
    if (used + need <= limit) return absl::OkStatus();
    if (lsm_evicted_since_compact_.load() > 0) {
      // Evicted small entries are only reclaimed by compaction.
      RETURN_IF_ERROR(CompactLsmLocked());
      MeasureLocked();
      continue;
    }
    int64_t want = used + need - std::max<int64_t>(0, limit - low_water_.load());
    std::vector<Victim> victims;
    PickVictimsLocked(want, &victims);
    if (victims.empty()) {
      if (!rescanned && !lru_cursor_.empty()) {
        lru_cursor_.clear();
        rescanned = true;
        continue;
      }
      return absl::ResourceExhaustedError(
          absl::StrCat("cache budget exhausted: ", used, " bytes in use and ", need,
                       " more needed, limit ", limit, " (max size ", max_size_.load(),
                       "); everything left is pinned by leases or reads"));
    }
    RETURN_IF_ERROR(EvictLocked(victims));
  }
}

void RocksDbStore::PickVictimsLocked(int64_t want, std::vector<Victim>* out) {
  constexpr size_t kMaxVictims = 4096;
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, lru_));
  if (lru_cursor_.empty()) {
    it->SeekToFirst();
  } else {
    it->Seek(lru_cursor_);
  }
  int64_t sum = 0;
  int64_t now = NowMs();
  std::string first_pinned, last;
  for (; it->Valid() && sum < want && out->size() < kMaxVictims; it->Next()) {
    format::LruEntry e;
    if (!format::DecodeLruKey(ToView(it->key()), &e)) continue;
    last = it->key().ToString();
    if (e.type == LruType::kBlob && pins_.IsPinned(e.id, now)) {
      if (first_pinned.empty()) first_pinned = last;
      continue;
    }
    int64_t charge = format::DecodeInt64(ToView(it->value()));
    out->push_back(Victim{e.type, std::move(e.id), last, charge});
    sum += charge;
  }
  lru_cursor_ = !first_pinned.empty() ? first_pinned : last;
}

absl::Status RocksDbStore::EvictLocked(const std::vector<Victim>& victims) {
  std::vector<int> stripes;
  for (const Victim& v : victims) {
    stripes.push_back(v.type == LruType::kBlob ? StripeOfBlob(v.id) : StripeOfAc(v.id));
  }
  StripeLocks locks(this, std::move(stripes));
  rocksdb::ReadOptions ro;
  rocksdb::WriteBatch batch;
  std::vector<int64_t> delta = format::ZeroCounters();
  absl::flat_hash_map<std::string, std::pair<int64_t, int64_t>> scope_delta;
  std::vector<std::string> large;
  int64_t freed_large = 0, evicted_lsm = 0;
  int64_t now = NowMs();
  for (const Victim& v : victims) {
    std::string value;
    if (v.type == LruType::kBlob) {
      rocksdb::Status s = db_->Get(ro, meta_, v.id, &value);
      BlobMeta meta;
      if (s.IsNotFound() || (s.ok() && !format::DecodeMeta(value, &meta))) {
        batch.Delete(lru_, v.lru_key);  // stale
        continue;
      }
      RETURN_IF_ERROR(FromRocks(s, "reading blob metadata"));
      if (format::LruKey(meta.atime_ms, LruType::kBlob, v.id) != v.lru_key) continue;  // touched
      if (pins_.IsPinned(v.id, now)) continue;
      batch.Delete(meta_, v.id);
      batch.Delete(lru_, v.lru_key);
      if (meta.kind == BlobKind::kSmall) {
        batch.Delete(small_, v.id);
        delta[format::kSmallCharge] -= meta.charge;
        evicted_lsm += meta.charge;
      } else {
        batch.Put(default_, format::PendingKey(v.id), "");
        large.push_back(v.id);
        delta[format::kLargeCharge] -= meta.charge;
        freed_large += meta.charge;
      }
      delta[format::kBlobCount] -= 1;
      delta[format::kBlobBytes] -= meta.size;
      delta[format::kEvictedBlobs] += 1;
      delta[format::kEvictedBytes] += meta.size;
    } else {
      rocksdb::Status s = db_->Get(ro, ac_, v.id, &value);
      int64_t atime = 0;
      absl::string_view result;
      if (s.IsNotFound() || (s.ok() && !format::DecodeAcValue(value, &atime, &result))) {
        batch.Delete(lru_, v.lru_key);
        continue;
      }
      RETURN_IF_ERROR(FromRocks(s, "reading action cache entry"));
      if (format::LruKey(atime, LruType::kAction, v.id) != v.lru_key) continue;
      std::string scope;
      common::Digest key;
      if (format::DecodeAcKey(v.id, &scope, &key)) {
        auto& d = scope_delta[scope];
        d.first -= 1;
        d.second -= static_cast<int64_t>(result.size());
      }
      batch.Delete(ac_, v.id);
      batch.Delete(lru_, v.lru_key);
      delta[format::kAcCount] -= 1;
      delta[format::kAcCharge] -= v.charge;
      delta[format::kEvictedAc] += 1;
      evicted_lsm += v.charge;
    }
  }
  if (batch.Count() == 0) return absl::OkStatus();
  batch.Merge(default_, ToSlice(format::kGlobalCountersKey), format::EncodeCounters(delta));
  for (const auto& [scope, d] : scope_delta) {
    batch.Merge(default_, format::ScopeCountersKey(scope),
                format::EncodeCounters({d.first, d.second}));
  }
  RETURN_IF_ERROR(FromRocks(db_->Write(SyncWrite(), &batch), "evicting"));
  MirrorCounters(delta);
  lsm_evicted_since_compact_ += evicted_lsm;
  if (!large.empty()) {
    // The pending markers make this safe to interrupt: the next open finishes it.
    RETURN_IF_ERROR(DeleteChunkRanges(large));
    large_bytes_ -= freed_large;
    rocksdb::WriteBatch done;
    for (const std::string& k : large) done.Delete(default_, format::PendingKey(k));
    RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &done), "evicting"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RocksDbStore::Remove(absl::Span<const common::Digest> digests) {
  std::vector<Victim> victims;
  for (const common::Digest& d : digests) {
    RETURN_IF_ERROR(ValidateDigest(d));
    if (d.empty_blob()) continue;
    std::string key = format::BlobKey(d);
    std::string value;
    BlobMeta meta;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, key, &value);
    if (s.IsNotFound() || !format::DecodeMeta(value, &meta)) continue;
    RETURN_IF_ERROR(FromRocks(s, "reading blob metadata"));
    victims.push_back(Victim{LruType::kBlob, key,
                             format::LruKey(meta.atime_ms, LruType::kBlob, key), meta.charge});
  }
  absl::MutexLock lock(&budget_mu_);
  int64_t before = evicted_blobs_.load();
  RETURN_IF_ERROR(EvictLocked(victims));
  return evicted_blobs_.load() - before;
}

absl::StatusOr<CacheStats> RocksDbStore::Stats() {
  DropExpiredLeases();
  CacheStats st;
  st.location = options_.dir;
  st.max_size = max_size_.load();
  st.disk_bytes = DirBytes(options_.dir, /*recursive=*/true);
  st.blob_count = blob_count_.load();
  st.blob_bytes = blob_bytes_.load();
  st.reserved_bytes = reserved_.load();
  st.evicted_blobs = evicted_blobs_.load();
  st.evicted_bytes = evicted_bytes_.load();
  st.ac_entries = ac_count_.load();
  PinTable::Summary pins = pins_.Summarize(NowMs());
  st.leases = pins.leases;
  st.pinned_blobs = static_cast<int64_t>(pins.pinned_keys.size());
  for (const std::string& k : pins.pinned_keys)
    st.pinned_bytes += format::DigestFromKey(k).size_bytes;
  {
    // The LRU index is ordered by last use: its first blob entry is the oldest blob held
    // (action-cache entries share the index; skip a bounded number of them).
    std::unique_ptr<rocksdb::Iterator> lru(db_->NewIterator(rocksdb::ReadOptions(), lru_));
    int skipped = 0;
    for (lru->SeekToFirst(); lru->Valid() && skipped < 10000; lru->Next(), ++skipped) {
      format::LruEntry e;
      if (format::DecodeLruKey(ToView(lru->key()), &e) && e.type == LruType::kBlob) {
        st.oldest_blob_access_unix_ms = e.atime_ms;
        break;
      }
    }
    RETURN_IF_ERROR(FromRocks(lru->status(), "reading the LRU index"));
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), default_));
  for (it->Seek(ToSlice(format::kScopeCountersPrefix));
       it->Valid() && it->key().starts_with(ToSlice(format::kScopeCountersPrefix)); it->Next()) {
    std::vector<int64_t> c = format::DecodeCounters(ToView(it->value()));
    c.resize(2, 0);
    if (c[0] <= 0) continue;
    st.scopes.push_back(ScopeStats{
        std::string(ToView(it->key()).substr(format::kScopeCountersPrefix.size())), c[0], c[1]});
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading scope counters"));
  return st;
}

absl::StatusOr<GcResult> RocksDbStore::Gc(const GcOptions& options) {
  if (options.max_size != 0 && options.max_size < kMinMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("max size ", options.max_size, " bytes is below the minimum of 32MiB"));
  }
  DropExpiredLeases();
  GcResult result;
  int64_t blobs_before = evicted_blobs_.load(), bytes_before = evicted_bytes_.load(),
          ac_before = evicted_ac_.load();
  {
    absl::MutexLock lock(&budget_mu_);
    if (options.max_size != 0 && options.max_size != max_size_.load()) {
      RETURN_IF_ERROR(common::WriteFileAtomic(common::JoinPath(options_.dir, "max_size"),
                                              absl::StrCat(options.max_size, "\n")));
      ApplyTuning(options.max_size);
    }
    MeasureLocked();
    RETURN_IF_ERROR(MakeRoomLocked(0));
    RETURN_IF_ERROR(CompactLsmLocked());
    MeasureLocked();
  }
  result.evicted_blobs = evicted_blobs_.load() - blobs_before;
  result.evicted_bytes = evicted_bytes_.load() - bytes_before;
  result.evicted_ac_entries = evicted_ac_.load() - ac_before;
  ASSIGN_OR_RETURN(result.after, Stats());
  return result;
}

}  // namespace farm::cache
