// RocksDbStore: opening (options, layout, the budget file, column families, the format
// marker), recovery after a crash, tuning from max_size, the counters, large blobs' files,
// leases' records and recency. The budget and eviction are in rocksdb_budget.cc.
#include "cache/rocksdb_store.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>

#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "rocksdb/convenience.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/table_properties_collectors.h"

namespace farm::cache {
namespace {

using common::FromRocks;
using format::BlobMeta;
using format::LruType;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kGiB = 1LL << 30;

int64_t Clamp(int64_t v, int64_t lo, int64_t hi) { return std::max(lo, std::min(v, hi)); }

// "c/global" and the scope counters are merged, never read-modified-written.
class CounterAddOperator : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    std::vector<int64_t> a;
    if (existing != nullptr) a = format::DecodeCounters(ToView(*existing));
    std::vector<int64_t> b = format::DecodeCounters(ToView(value));
    if (a.size() < b.size()) a.resize(b.size());
    for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
    *new_value = format::EncodeCounters(a);
    return true;
  }
  const char* Name() const override { return "farm.CounterAdd"; }
};

}  // namespace

absl::Status ValidateDigest(const common::Digest& d) {
  if (!common::IsValidSha256Hex(d.hash)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest hash \"", d.hash, "\": want 64 lowercase hex characters"));
  }
  if (d.size_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest size ", d.size_bytes, " for ", d.hash));
  }
  return absl::OkStatus();
}

StoreTuning TuneFor(int64_t max_size) {
  StoreTuning t;
  t.small_write_buffer = Clamp(max_size / 128, kMiB / 2, 64 * kMiB);
  t.other_write_buffer = Clamp(max_size / 1024, 256 << 10, 8 * kMiB);
  t.max_wal = Clamp(max_size / 64, 2 * kMiB, 128 * kMiB);
  t.target_file_size = Clamp(max_size / 64, kMiB, 64 * kMiB);
  t.level_base = Clamp(max_size / 16, 4 * kMiB, 512 * kMiB);
  t.max_compaction_bytes = Clamp(max_size / 64, 2 * kMiB, 256 * kMiB);
  // Transient on-disk space beyond what is measured: a compaction's outputs before its inputs
  // go, flushes of every column family's memtables (2 each), a WAL file's preallocation, the
  // info LOG and the MANIFEST.
  t.headroom = t.max_compaction_bytes + 2 * (2 * t.small_write_buffer + 8 * t.other_write_buffer) +
               t.max_wal + 4 * kMiB;
  t.low_water = Clamp(max_size / 32, kMiB, 4 * kGiB);
  return t;
}

RocksDbStore::StripeLocks::StripeLocks(RocksDbStore* store, std::vector<int> stripes)
    : store_(store), stripes_(std::move(stripes)) {
  std::sort(stripes_.begin(), stripes_.end());
  stripes_.erase(std::unique(stripes_.begin(), stripes_.end()), stripes_.end());
  for (int s : stripes_) store_->stripes_[s].Lock();
}

RocksDbStore::StripeLocks::~StripeLocks() {
  for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) store_->stripes_[*it].Unlock();
}

// ---------------------------------------------------------------------------------------------
// Opening and recovery.

RocksDbStore::RocksDbStore(const RocksDbStoreOptions& options, int64_t max_size)
    : options_(options) {
  db_dir_ = common::JoinPath(options_.dir, "db");
  chunks_dir_ = common::JoinPath(options_.dir, "chunks");
  tmp_dir_ = common::JoinPath(options_.dir, "tmp");
  max_size_ = max_size;
  StoreTuning t = TuneFor(max_size);
  limit_ = max_size - t.headroom;
  low_water_ = t.low_water;
  writeback_thread_ = std::thread([this] { WritebackLoop(); });
}

void RocksDbStore::StartWriteback(std::shared_ptr<int> fd, int64_t from, int64_t to) {
  absl::MutexLock lock(&writeback_mu_);
  writeback_jobs_.push_back(WritebackJob{std::move(fd), from, to});
}

void RocksDbStore::WritebackLoop() {
  for (;;) {
    WritebackJob job;
    {
      absl::MutexLock lock(&writeback_mu_);
      writeback_mu_.Await(absl::Condition(
          +[](RocksDbStore* store) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return store->writeback_stop_ || !store->writeback_jobs_.empty();
          },
          this));
      if (writeback_jobs_.empty()) return;  // stopping
      job = std::move(writeback_jobs_.front());
      writeback_jobs_.pop_front();
    }
    // May block while the device queue is full: that is why it runs here, not in the writer.
    sync_file_range(*job.fd, job.from, job.to - job.from, SYNC_FILE_RANGE_WRITE);
  }
}

RocksDbStore::~RocksDbStore() {
  {
    absl::MutexLock lock(&writeback_mu_);
    writeback_stop_ = true;
  }
  if (writeback_thread_.joinable()) writeback_thread_.join();
  if (db_ == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* h : {default_, meta_, small_, chunks_, lru_, ac_}) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h);
  }
  db_->Close();
  delete db_;
}

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(const RocksDbStoreOptions& in) {
  RocksDbStoreOptions options = in;
  if (options.dir.empty()) return absl::InvalidArgumentError("no cache directory given");
  if (options.chunk_size < (64 << 10) || options.chunk_size > (64 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk size ", options.chunk_size, " out of range [64KiB, 64MiB]"));
  }
  if (options.inline_max < 0 || options.inline_max > (64 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("inline_max ", options.inline_max, " out of range [0, 64MiB]"));
  }
  const std::string& dir = options.dir;
  const std::string context = absl::StrCat("cache directory ", dir);
  RETURN_IF_ERROR(common::Annotate(common::MakeDirs(dir), context));
  for (const char* sub : {"db", "chunks", "tmp"}) {
    RETURN_IF_ERROR(common::Annotate(common::MakeDirs(common::JoinPath(dir, sub)), context));
  }
  std::string probe = common::JoinPath(dir, absl::StrCat(".probe-", getpid()));
  absl::Status writable = common::WriteFileAtomic(probe, "probe");
  if (!writable.ok()) return common::Annotate(writable, absl::StrCat(context, " is not writable"));
  unlink(probe.c_str());

  std::string size_file = common::JoinPath(dir, "max_size");
  int64_t stored = 0;
  if (common::PathExists(size_file)) {
    ASSIGN_OR_RETURN(std::string text, common::ReadFile(size_file));
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &stored) || stored <= 0) {
      return absl::DataLossError(absl::StrCat(size_file, ": not a size in bytes: \"", text, "\""));
    }
  }
  int64_t max_size = options.max_size > 0 ? options.max_size : stored;
  if (max_size == 0) {
    struct statvfs vfs;
    if (statvfs(dir.c_str(), &vfs) != 0) return common::ErrnoToStatus(errno, context);
    max_size = std::max<int64_t>(static_cast<int64_t>(vfs.f_blocks) * vfs.f_frsize / 10, kGiB);
  }
  if (max_size < kMinMaxSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("max size ", max_size, " bytes is below the minimum of 32MiB"));
  }

  std::unique_ptr<RocksDbStore> store(new RocksDbStore(options, max_size));
  // RocksDB's lock proves no other process uses the directory; only then touch its files.
  RETURN_IF_ERROR(store->OpenDb());
  if (max_size != stored) {
    RETURN_IF_ERROR(common::WriteFileAtomic(size_file, absl::StrCat(max_size, "\n")));
  }
  // Writes in progress when the last process ended are abandoned: their files go.
  std::string tmp = common::JoinPath(dir, "tmp");
  RETURN_IF_ERROR(common::Annotate(common::RemoveAll(tmp), context));
  RETURN_IF_ERROR(common::Annotate(common::MakeDirs(tmp), context));
  RETURN_IF_ERROR(store->Recover());
  return store;
}

absl::Status RocksDbStore::OpenDb() {
  StoreTuning t = TuneFor(max_size_);
  rocksdb::DBOptions dbo;
  dbo.create_if_missing = true;
  dbo.create_missing_column_families = true;
  dbo.max_total_wal_size = static_cast<uint64_t>(t.max_wal);
  dbo.keep_log_file_num = 2;
  dbo.max_log_file_size = 1 << 20;
  dbo.max_manifest_file_size = 4 << 20;
  dbo.max_open_files = 512;
  // Opening table files at start: RocksDB's default starts 16 threads per column family (about
  // 100 thread creations for this store, ~5 ms of a fully cached `farm build`); one is enough
  // for the few files a start opens (max_open_files / 4 at most, the rest lazily).
  dbo.max_file_opening_threads = 1;
  dbo.skip_stats_update_on_db_open = true;
  dbo.stats_dump_period_sec = 0;
  dbo.stats_persist_period_sec = 0;
  dbo.max_background_jobs = 2;
  dbo.bytes_per_sync = 1 << 20;

  std::shared_ptr<rocksdb::Cache> block_cache = rocksdb::NewLRUCache(32 << 20);
  auto lsm_table = [&](bool bloom, size_t block_size) {
    rocksdb::BlockBasedTableOptions bt;
    bt.block_cache = block_cache;
    bt.block_size = block_size;
    bt.cache_index_and_filter_blocks = true;
    bt.pin_l0_filter_and_index_blocks_in_cache = true;
    if (bloom) bt.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    return rocksdb::NewBlockBasedTableFactory(bt);
  };
  auto lsm_cf = [&](int64_t write_buffer, bool bloom, size_t block_size) {
    rocksdb::ColumnFamilyOptions cf;
    cf.write_buffer_size = static_cast<size_t>(write_buffer);
    cf.max_write_buffer_number = 2;
    cf.target_file_size_base = static_cast<uint64_t>(t.target_file_size);
    cf.max_bytes_for_level_base = static_cast<uint64_t>(t.level_base);
    cf.max_compaction_bytes = static_cast<uint64_t>(t.max_compaction_bytes);
    cf.level_compaction_dynamic_level_bytes = true;
    cf.compression = rocksdb::kNoCompression;
    cf.table_factory.reset(lsm_table(bloom, block_size));
    // Evicting leaves tombstones: compact files that gather many of them.
    cf.table_properties_collector_factories.push_back(
        rocksdb::NewCompactOnDeletionCollectorFactory(128, 64, 0.5));
    return cf;
  };
  rocksdb::ColumnFamilyOptions default_cf = lsm_cf(t.other_write_buffer, false, 4096);
  default_cf.merge_operator = std::make_shared<CounterAddOperator>();
  rocksdb::ColumnFamilyOptions meta_cf = lsm_cf(t.other_write_buffer, true, 4096);
  rocksdb::ColumnFamilyOptions small_cf = lsm_cf(t.small_write_buffer, true, 16 << 10);
  rocksdb::ColumnFamilyOptions lru_cf = lsm_cf(t.other_write_buffer, false, 4096);
  rocksdb::ColumnFamilyOptions ac_cf = lsm_cf(t.other_write_buffer, true, 4096);

  // Chunks: only ingested files, one per blob, never compacted, read without a block cache.
  rocksdb::ColumnFamilyOptions chunks_cf;
  chunks_cf.disable_auto_compactions = true;
  chunks_cf.cf_paths.emplace_back(chunks_dir_, std::numeric_limits<uint64_t>::max());
  chunks_cf.compression = rocksdb::kNoCompression;
  chunks_cf.level_compaction_dynamic_level_bytes = false;
  chunks_cf.ttl = 0;
  chunks_cf.periodic_compaction_seconds = 0;
  chunks_cf.write_buffer_size = 1 << 20;
  {
    rocksdb::BlockBasedTableOptions bt;
    bt.no_block_cache = true;
    bt.block_size = 4096;
    chunks_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(bt));
  }
  chunk_options_ = rocksdb::Options(dbo, chunks_cf);
  chunk_options_.bytes_per_sync = 0;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, default_cf}, {std::string(format::kCfMeta), meta_cf},
      {std::string(format::kCfSmall), small_cf},       {std::string(format::kCfChunks), chunks_cf},
      {std::string(format::kCfLru), lru_cf},           {std::string(format::kCfAc), ac_cf},
  };
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::Status s = rocksdb::DB::Open(dbo, db_dir_, cfs, &handles, &db_);
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cache directory ", options_.dir, " is in use by another process (", s.ToString(), ")"));
    }
    if (s.IsInvalidArgument()) {
      return absl::FailedPreconditionError(
          absl::StrCat(db_dir_, " is not a farm cache database: ", s.ToString()));
    }
    return FromRocks(s, absl::StrCat("opening cache database ", db_dir_));
  }
  default_ = handles[0];
  meta_ = handles[1];
  small_ = handles[2];
  chunks_ = handles[3];
  lru_ = handles[4];
  ac_ = handles[5];

  std::string fmt;
  s = db_->Get(rocksdb::ReadOptions(), default_, ToSlice(format::kFormatKey), &fmt);
  if (s.IsNotFound()) {
    return FromRocks(
        db_->Put(SyncWrite(), default_, ToSlice(format::kFormatKey), ToSlice(format::kFormat)),
        "writing the format marker");
  }
  RETURN_IF_ERROR(FromRocks(s, "reading the format marker"));
  if (fmt == format::kFormatV1) {
    fmt = std::string(format::kFormat);
    RETURN_IF_ERROR(FromRocks(
        db_->Put(SyncWrite(), default_, ToSlice(format::kFormatKey), ToSlice(format::kFormat)),
        "upgrading the format marker"));
  }
  if (fmt != format::kFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("cache directory ", options_.dir, " has format \"", fmt,
                     "\", this farm uses \"", format::kFormat, "\""));
  }
  return absl::OkStatus();
}

absl::Status RocksDbStore::Recover() {
  rocksdb::ReadOptions ro;
  std::string value;
  rocksdb::Status s = db_->Get(ro, default_, ToSlice(format::kGlobalCountersKey), &value);
  if (!s.IsNotFound()) RETURN_IF_ERROR(FromRocks(s, "reading counters"));
  std::vector<int64_t> c = format::DecodeCounters(s.ok() ? value : "");
  c.resize(format::kNumCounters, 0);
  blob_count_ = c[format::kBlobCount];
  blob_bytes_ = c[format::kBlobBytes];
  large_bytes_ = c[format::kLargeCharge];
  ac_count_ = c[format::kAcCount];
  evicted_blobs_ = c[format::kEvictedBlobs];
  evicted_bytes_ = c[format::kEvictedBytes];
  evicted_ac_ = c[format::kEvictedAc];

  // Chunk files that may exist without metadata (a crash between ingesting and committing, or
  // between committing an eviction and deleting the file).
  std::vector<std::string> pending;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, default_));
  for (it->Seek(ToSlice(format::kPendingPrefix));
       it->Valid() && it->key().starts_with(ToSlice(format::kPendingPrefix)); it->Next()) {
    absl::string_view key = ToView(it->key()).substr(format::kPendingPrefix.size());
    if (key.size() == format::kKeySize) pending.emplace_back(key);
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "scanning pending markers"));
  it.reset();
  if (!pending.empty()) {
    std::vector<std::string> orphans;
    for (const std::string& key : pending) {
      std::string meta;
      rocksdb::Status ms = db_->Get(ro, meta_, key, &meta);
      if (ms.IsNotFound()) orphans.push_back(key);
    }
    RETURN_IF_ERROR(DeleteChunkRanges(orphans));
    rocksdb::WriteBatch batch;
    for (const std::string& key : pending) batch.Delete(default_, format::PendingKey(key));
    RETURN_IF_ERROR(FromRocks(db_->Write(SyncWrite(), &batch), "clearing pending markers"));
  }

  // Leases.
  int64_t now = NowMs();
  rocksdb::WriteBatch expired;
  {
    it.reset(db_->NewIterator(ro, default_));
    for (it->Seek(ToSlice(format::kLeasePrefix));
         it->Valid() && it->key().starts_with(ToSlice(format::kLeasePrefix)); it->Next()) {
      std::string id(ToView(it->key()).substr(format::kLeasePrefix.size()));
      format::LeaseRecord rec;
      if (!format::DecodeLease(ToView(it->value()), &rec) || rec.expiry_ms <= now) {
        expired.Delete(default_, it->key());
        continue;
      }
      pins_.AddLease(id, rec.expiry_ms, std::move(rec.keys));
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scanning leases"));
    it.reset();
  }
  if (expired.Count() > 0) {
    RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &expired), "dropping leases"));
  }

  // Enforce the budget now (it may have shrunk).
  absl::MutexLock lock(&budget_mu_);
  MeasureLocked();
  return MakeRoomLocked(0);
}

int64_t RocksDbStore::NowMs() const {
  absl::Time now = options_.clock ? options_.clock() : absl::Now();
  return absl::ToUnixMillis(now);
}

int RocksDbStore::StripeOfAc(absl::string_view ac_key) {
  return static_cast<int>(absl::HashOf(ac_key) % kStripes);
}

bool RocksDbStore::TouchDue(int64_t atime_ms, int64_t now_ms) const {
  return now_ms - atime_ms >= absl::ToInt64Milliseconds(options_.touch_granularity);
}

rocksdb::WriteOptions RocksDbStore::SyncWrite() const {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return wo;
}

// ---------------------------------------------------------------------------------------------
// Tuning and counters.

void RocksDbStore::ApplyTuning(int64_t max_size) {
  StoreTuning t = TuneFor(max_size);
  db_->SetDBOptions({{"max_total_wal_size", absl::StrCat(t.max_wal)}}).PermitUncheckedError();
  for (rocksdb::ColumnFamilyHandle* h : {default_, meta_, small_, lru_, ac_}) {
    int64_t wb = h == small_ ? t.small_write_buffer : t.other_write_buffer;
    db_->SetOptions(h, {{"write_buffer_size", absl::StrCat(wb)},
                        {"target_file_size_base", absl::StrCat(t.target_file_size)},
                        {"max_bytes_for_level_base", absl::StrCat(t.level_base)},
                        {"max_compaction_bytes", absl::StrCat(t.max_compaction_bytes)}})
        .PermitUncheckedError();
  }
  max_size_ = max_size;
  limit_ = max_size - t.headroom;
  low_water_ = t.low_water;
}

void RocksDbStore::MirrorCounters(const std::vector<int64_t>& delta) {
  blob_count_ += delta[format::kBlobCount];
  blob_bytes_ += delta[format::kBlobBytes];
  ac_count_ += delta[format::kAcCount];
  evicted_blobs_ += delta[format::kEvictedBlobs];
  evicted_bytes_ += delta[format::kEvictedBytes];
  evicted_ac_ += delta[format::kEvictedAc];
}

// ---------------------------------------------------------------------------------------------
// Large blobs' files.

std::string RocksDbStore::NewTempPath() {
  return common::JoinPath(tmp_dir_, absl::StrCat(getpid(), "-", temp_seq_.fetch_add(1), ".sst"));
}

absl::Status RocksDbStore::DeleteChunkRanges(const std::vector<std::string>& keys) {
  if (keys.empty()) return absl::OkStatus();
  std::vector<std::string> bounds;
  bounds.reserve(2 * keys.size());
  for (const std::string& k : keys) {
    bounds.push_back(format::ChunkKey(k, 0));
    bounds.push_back(format::ChunkKey(k, 0xffffffffu));
  }
  std::vector<rocksdb::Slice> slices(bounds.begin(), bounds.end());
  std::vector<rocksdb::RangePtr> ranges;
  for (size_t i = 0; i < keys.size(); ++i) ranges.emplace_back(&slices[2 * i], &slices[2 * i + 1]);
  return FromRocks(rocksdb::DeleteFilesInRanges(db_, chunks_, ranges.data(), ranges.size(),
                                                /*include_end=*/true),
                   "deleting chunk files");
}

// ---------------------------------------------------------------------------------------------
// Leases' records and recency.

void RocksDbStore::DropExpiredLeases() {
  std::vector<std::string> ids = pins_.ExpireLeases(NowMs());
  if (ids.empty()) return;
  rocksdb::WriteBatch batch;
  for (const std::string& id : ids) batch.Delete(default_, format::LeaseKey(id));
  db_->Write(rocksdb::WriteOptions(), &batch).PermitUncheckedError();
}

void RocksDbStore::TouchBlobs(const std::vector<std::string>& keys) {
  std::vector<int> stripes;
  for (const std::string& k : keys) stripes.push_back(StripeOfBlob(k));
  StripeLocks locks(this, std::move(stripes));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), meta_, keys.size(), slices.data(), values.data(),
                statuses.data());
  const int64_t now = NowMs();
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < keys.size(); ++i) {
    BlobMeta meta;
    if (!statuses[i].ok() || !format::DecodeMeta(ToView(values[i]), &meta)) continue;
    if (meta.atime_ms >= now) continue;
    batch.Delete(lru_, format::LruKey(meta.atime_ms, LruType::kBlob, keys[i]));
    meta.atime_ms = now;
    batch.Put(meta_, keys[i], format::EncodeMeta(meta));
    batch.Put(lru_, format::LruKey(now, LruType::kBlob, keys[i]), format::EncodeInt64(meta.charge));
  }
  if (batch.Count() == 0) return;
  // Recency is advisory: an unsynced write, and a failure only costs LRU precision.
  if (db_->Write(rocksdb::WriteOptions(), &batch).ok()) {
    lsm_since_measure_ += 2 * static_cast<int64_t>(batch.GetDataSize());
  }
}

}  // namespace farm::cache
