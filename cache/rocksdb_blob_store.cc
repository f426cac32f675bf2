#include "cache/rocksdb_blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cache/rocksdb_store_impl.h"
#include "common/fs.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "rocksdb/convenience.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/sst_file_writer.h"
#include "rocksdb/table.h"
#include "rocksdb/utilities/table_properties_collectors.h"

namespace farm::cache {
namespace {

using common::FromRocks;

using format::BlobKind;
using format::BlobMeta;
using format::LruType;

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kGiB = 1LL << 30;
// A read's chunk handed to the caller (small blobs are served in pieces of this size too).
constexpr size_t kReadPiece = 1 << 20;
// SST overhead per chunk (block trailer, index entry) and per file (footer, properties).
constexpr int64_t kChunkOverhead = 96;
constexpr int64_t kFileOverhead = 32 << 10;
constexpr int64_t kBlock = 4096;

// Debian's Abseil has its own string_view (not std::string_view): convert explicitly.
rocksdb::Slice S(absl::string_view v) { return rocksdb::Slice(v.data(), v.size()); }
absl::string_view V(const rocksdb::Slice& s) { return absl::string_view(s.data(), s.size()); }

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }
int64_t Clamp(int64_t v, int64_t lo, int64_t hi) { return std::max(lo, std::min(v, hi)); }

absl::Status ValidateDigest(const Digest& d) {
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

absl::Status Mismatch(const Digest& want, const Digest& got) {
  return absl::InvalidArgumentError(absl::StrCat("digest mismatch: the bytes written hash to ",
                                                 got.ToString(), ", not ", want.ToString()));
}

absl::Status SizeMismatch(const Digest& want, int64_t got) {
  return absl::InvalidArgumentError(absl::StrCat("blob ", want.ToString(), ": received ", got,
                                                 " bytes, expected ", want.size_bytes));
}

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

class CounterAddOperator : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    std::vector<int64_t> a;
    if (existing != nullptr) a = format::DecodeCounters(V(*existing));
    std::vector<int64_t> b = format::DecodeCounters(V(value));
    if (a.size() < b.size()) a.resize(b.size());
    for (size_t i = 0; i < b.size(); ++i) a[i] += b[i];
    *new_value = format::EncodeCounters(a);
    return true;
  }
  const char* Name() const override { return "farm.CounterAdd"; }
};

std::vector<int64_t> Delta() { return std::vector<int64_t>(format::kNumCounters, 0); }

std::string ScopeCounterKey(absl::string_view scope) {
  return absl::StrCat(format::kScopeCountersPrefix, scope);
}

std::string PendingKey(absl::string_view blob_key) {
  return absl::StrCat(format::kPendingPrefix, blob_key);
}

std::string RandomHex(int bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  absl::BitGen gen;
  std::string out;
  for (int i = 0; i < bytes; ++i) {
    uint8_t b = absl::Uniform<uint8_t>(gen);
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

}  // namespace

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

// ---------------------------------------------------------------------------------------------
// Readers and writers.

namespace {

// A small blob: its value is in memory (at most inline_max bytes), served in pieces.
class SmallReader : public BlobReader {
 public:
  SmallReader(std::unique_ptr<rocksdb::PinnableSlice> value, int64_t offset, int64_t end)
      : value_(std::move(value)), pos_(offset), end_(end) {}
  absl::StatusOr<absl::string_view> Next() override {
    size_t n = static_cast<size_t>(std::min<int64_t>(end_ - pos_, kReadPiece));
    absl::string_view out(value_->data() + pos_, n);
    pos_ += static_cast<int64_t>(n);
    return out;
  }

 private:
  std::unique_ptr<rocksdb::PinnableSlice> value_;
  int64_t pos_;
  int64_t end_;
};

class EmptyReader : public BlobReader {
 public:
  absl::StatusOr<absl::string_view> Next() override { return absl::string_view(); }
};

// A large blob: one point lookup per chunk (never an iterator, which would keep every chunk
// file of the column family alive while a slow client reads). The blob is pinned while open.
class LargeReader : public BlobReader {
 public:
  LargeReader(RocksDbBlobStore::Impl* impl, std::string key, Digest digest, uint32_t chunk_size,
              int64_t offset, int64_t end)
      : impl_(impl),
        key_(std::move(key)),
        digest_(std::move(digest)),
        chunk_size_(chunk_size),
        pos_(offset),
        end_(end) {}
  ~LargeReader() override { impl_->Unpin(key_); }

  absl::StatusOr<absl::string_view> Next() override {
    if (pos_ >= end_) return absl::string_view();
    uint32_t index = static_cast<uint32_t>(pos_ / chunk_size_);
    int64_t inner = pos_ % chunk_size_;
    chunk_.Reset();
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    rocksdb::Status s =
        impl_->db()->Get(ro, impl_->chunks_cf(), format::ChunkKey(key_, index), &chunk_);
    if (s.IsNotFound()) {
      return absl::DataLossError(
          absl::StrCat("blob ", digest_.ToString(), ": chunk ", index, " is missing"));
    }
    RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading blob ", digest_.ToString())));
    if (static_cast<int64_t>(chunk_.size()) <= inner) {
      return absl::DataLossError(absl::StrCat("blob ", digest_.ToString(), ": chunk ", index,
                                              " is shorter than expected"));
    }
    int64_t n = std::min<int64_t>(static_cast<int64_t>(chunk_.size()) - inner, end_ - pos_);
    pos_ += n;
    return absl::string_view(chunk_.data() + inner, static_cast<size_t>(n));
  }

 private:
  RocksDbBlobStore::Impl* impl_;
  std::string key_;
  Digest digest_;
  int64_t chunk_size_;
  int64_t pos_;
  int64_t end_;
  rocksdb::PinnableSlice chunk_;
};

// For a blob that is already present (or empty): verifies the bytes, stores nothing.
class DiscardWriter : public BlobWriter {
 public:
  explicit DiscardWriter(Digest digest) : digest_(std::move(digest)) {}
  absl::Status Append(absl::string_view data) override {
    if (hasher_.bytes() + static_cast<int64_t>(data.size()) > digest_.size_bytes) {
      return SizeMismatch(digest_, hasher_.bytes() + static_cast<int64_t>(data.size()));
    }
    hasher_.Update(data);
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return hasher_.bytes(); }
  absl::Status Commit() override {
    if (hasher_.bytes() != digest_.size_bytes) return SizeMismatch(digest_, hasher_.bytes());
    Digest got = hasher_.Finish();
    if (got != digest_) return Mismatch(digest_, got);
    return absl::OkStatus();
  }

 private:
  Digest digest_;
  common::Sha256 hasher_;
};

class SmallWriter : public BlobWriter {
 public:
  SmallWriter(RocksDbBlobStore::Impl* impl, Digest digest,
              std::unique_ptr<RocksDbBlobStore::Impl::Reservation> reservation)
      : impl_(impl), digest_(std::move(digest)), reservation_(std::move(reservation)) {
    data_.reserve(static_cast<size_t>(digest_.size_bytes));
  }
  absl::Status Append(absl::string_view data) override {
    if (done_) return absl::FailedPreconditionError("write already committed");
    if (static_cast<int64_t>(data_.size() + data.size()) > digest_.size_bytes) {
      return SizeMismatch(digest_, static_cast<int64_t>(data_.size() + data.size()));
    }
    data_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return static_cast<int64_t>(data_.size()); }
  absl::Status Commit() override {
    if (done_) return absl::FailedPreconditionError("write already committed");
    if (static_cast<int64_t>(data_.size()) != digest_.size_bytes) {
      return SizeMismatch(digest_, static_cast<int64_t>(data_.size()));
    }
    Digest got = common::DigestOf(data_);
    if (got != digest_) return Mismatch(digest_, got);
    BlobData blob{digest_, data_};
    RETURN_IF_ERROR(impl_->CommitSmall(absl::MakeConstSpan(&blob, 1)));
    done_ = true;
    reservation_.reset();
    return absl::OkStatus();
  }

 private:
  RocksDbBlobStore::Impl* impl_;
  Digest digest_;
  std::unique_ptr<RocksDbBlobStore::Impl::Reservation> reservation_;
  std::string data_;
  bool done_ = false;
};

// Streams a large blob into its own SST under DIR/tmp, then hands it to CommitLarge.
class LargeWriter : public BlobWriter {
 public:
  static absl::StatusOr<std::unique_ptr<BlobWriter>> Create(
      RocksDbBlobStore::Impl* impl, Digest digest,
      std::unique_ptr<RocksDbBlobStore::Impl::Reservation> reservation) {
    std::unique_ptr<LargeWriter> w(
        new LargeWriter(impl, std::move(digest), std::move(reservation)));
    w->path_ = impl->NewTempPath();
    w->sst_ = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), impl->chunk_options(),
                                                       impl->chunks_cf(),
                                                       /*invalidate_page_cache=*/false);
    RETURN_IF_ERROR(FromRocks(w->sst_->Open(w->path_), absl::StrCat("creating ", w->path_)));
    int fd = open(w->path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      w->writeback_fd_ = std::shared_ptr<int>(new int(fd), [](int* p) {
        close(*p);
        delete p;
      });
    }
    return std::unique_ptr<BlobWriter>(std::move(w));
  }

  ~LargeWriter() override {
    if (!done_) {
      sst_.reset();  // abandons an unfinished file
      unlink(path_.c_str());
    }
  }

  absl::Status Append(absl::string_view data) override {
    if (done_) return absl::FailedPreconditionError("write already committed");
    if (!status_.ok()) return status_;
    if (received_ + static_cast<int64_t>(data.size()) > digest_.size_bytes) {
      return SizeMismatch(digest_, received_ + static_cast<int64_t>(data.size()));
    }
    hasher_.Update(data);
    received_ += static_cast<int64_t>(data.size());
    const size_t chunk = static_cast<size_t>(impl_->chunk_size());
    while (!data.empty()) {
      if (buffer_.empty() && data.size() >= chunk) {
        status_ = PutChunk(data.substr(0, chunk));  // no copy for whole chunks
        data.remove_prefix(chunk);
      } else {
        size_t n = std::min(chunk - buffer_.size(), data.size());
        buffer_.append(data.data(), n);
        data.remove_prefix(n);
        if (buffer_.size() == chunk) {
          status_ = PutChunk(buffer_);
          buffer_.clear();
        }
      }
      if (!status_.ok()) return status_;
    }
    return absl::OkStatus();
  }

  int64_t committed_size() const override { return received_; }

  absl::Status Commit() override {
    if (done_) return absl::FailedPreconditionError("write already committed");
    if (!status_.ok()) return status_;
    if (received_ != digest_.size_bytes) return SizeMismatch(digest_, received_);
    if (!buffer_.empty()) {
      RETURN_IF_ERROR(PutChunk(buffer_));
      buffer_.clear();
    }
    Digest got = hasher_.Finish();
    if (got != digest_) return Mismatch(digest_, got);
    rocksdb::ExternalSstFileInfo info;
    RETURN_IF_ERROR(FromRocks(sst_->Finish(&info), absl::StrCat("finishing ", path_)));
    RETURN_IF_ERROR(impl_->CommitLarge(digest_, path_, static_cast<int64_t>(info.file_size)));
    done_ = true;
    reservation_.reset();
    return absl::OkStatus();
  }

 private:
  LargeWriter(RocksDbBlobStore::Impl* impl, Digest digest,
              std::unique_ptr<RocksDbBlobStore::Impl::Reservation> reservation)
      : impl_(impl),
        digest_(std::move(digest)),
        key_(format::BlobKey(digest_)),
        reservation_(std::move(reservation)) {}

  absl::Status PutChunk(absl::string_view chunk) {
    RETURN_IF_ERROR(FromRocks(sst_->Put(format::ChunkKey(key_, next_index_++), S(chunk)),
                              absl::StrCat("writing ", path_)));
    // Let the kernel write back what is behind us while we receive and hash the rest.
    int64_t size = static_cast<int64_t>(sst_->FileSize());
    if (writeback_fd_ && size - written_back_ >= kWritebackStep) {
      impl_->StartWriteback(writeback_fd_, written_back_, size);
      written_back_ = size;
    }
    return absl::OkStatus();
  }
  static constexpr int64_t kWritebackStep = 8 << 20;

  RocksDbBlobStore::Impl* impl_;
  Digest digest_;
  std::string key_;
  std::unique_ptr<RocksDbBlobStore::Impl::Reservation> reservation_;
  std::string path_;
  std::unique_ptr<rocksdb::SstFileWriter> sst_;
  common::Sha256 hasher_;
  std::string buffer_;
  int64_t received_ = 0;
  uint32_t next_index_ = 0;
  absl::Status status_;
  bool done_ = false;
  std::shared_ptr<int> writeback_fd_;  // shared with queued write-back jobs
  int64_t written_back_ = 0;
};

}  // namespace

// Locks a set of stripes in ascending order (deadlock-free), unlocks on destruction.
class RocksDbBlobStore::Impl::StripeLocks {
 public:
  StripeLocks(Impl* impl, std::vector<int> stripes) : impl_(impl), stripes_(std::move(stripes)) {
    std::sort(stripes_.begin(), stripes_.end());
    stripes_.erase(std::unique(stripes_.begin(), stripes_.end()), stripes_.end());
    for (int s : stripes_) impl_->stripes_[s].Lock();
  }
  ~StripeLocks() {
    for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) impl_->stripes_[*it].Unlock();
  }

 private:
  Impl* impl_;
  std::vector<int> stripes_;
};

// ---------------------------------------------------------------------------------------------
// Opening and recovery.

RocksDbBlobStore::Impl::Impl(const RocksDbStoreOptions& options, int64_t max_size)
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

void RocksDbBlobStore::Impl::StartWriteback(std::shared_ptr<int> fd, int64_t from, int64_t to) {
  absl::MutexLock lock(&writeback_mu_);
  writeback_jobs_.push_back(WritebackJob{std::move(fd), from, to});
}

void RocksDbBlobStore::Impl::WritebackLoop() {
  for (;;) {
    WritebackJob job;
    {
      absl::MutexLock lock(&writeback_mu_);
      writeback_mu_.Await(absl::Condition(
          +[](Impl* impl) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return impl->writeback_stop_ || !impl->writeback_jobs_.empty();
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

RocksDbBlobStore::Impl::~Impl() {
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

absl::StatusOr<std::unique_ptr<RocksDbBlobStore::Impl>> RocksDbBlobStore::Impl::Open(
    const RocksDbStoreOptions& in) {
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

  std::unique_ptr<Impl> impl(new Impl(options, max_size));
  // RocksDB's lock proves no other process uses the directory; only then touch its files.
  RETURN_IF_ERROR(impl->OpenDb());
  if (max_size != stored) {
    RETURN_IF_ERROR(common::WriteFileAtomic(size_file, absl::StrCat(max_size, "\n")));
  }
  // Writes in progress when the last process ended are abandoned: their files go.
  std::string tmp = common::JoinPath(dir, "tmp");
  RETURN_IF_ERROR(common::Annotate(common::RemoveAll(tmp), context));
  RETURN_IF_ERROR(common::Annotate(common::MakeDirs(tmp), context));
  RETURN_IF_ERROR(impl->Recover());
  return impl;
}

absl::Status RocksDbBlobStore::Impl::OpenDb() {
  StoreTuning t = TuneFor(max_size_);
  rocksdb::DBOptions dbo;
  dbo.create_if_missing = true;
  dbo.create_missing_column_families = true;
  dbo.max_total_wal_size = static_cast<uint64_t>(t.max_wal);
  dbo.keep_log_file_num = 2;
  dbo.max_log_file_size = 1 << 20;
  dbo.max_manifest_file_size = 4 << 20;
  dbo.max_open_files = 512;
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
  s = db_->Get(rocksdb::ReadOptions(), default_, S(format::kFormatKey), &fmt);
  if (s.IsNotFound()) {
    return FromRocks(db_->Put(SyncWrite(), default_, S(format::kFormatKey), S(format::kFormat)),
                     "writing the format marker");
  }
  RETURN_IF_ERROR(FromRocks(s, "reading the format marker"));
  if (fmt != format::kFormat) {
    return absl::FailedPreconditionError(
        absl::StrCat("cache directory ", options_.dir, " has format \"", fmt,
                     "\", this farm uses \"", format::kFormat, "\""));
  }
  return absl::OkStatus();
}

absl::Status RocksDbBlobStore::Impl::Recover() {
  rocksdb::ReadOptions ro;
  std::string value;
  rocksdb::Status s = db_->Get(ro, default_, S(format::kGlobalCountersKey), &value);
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
  for (it->Seek(S(format::kPendingPrefix));
       it->Valid() && it->key().starts_with(S(format::kPendingPrefix)); it->Next()) {
    absl::string_view key = V(it->key()).substr(format::kPendingPrefix.size());
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
    for (const std::string& key : pending) batch.Delete(default_, PendingKey(key));
    RETURN_IF_ERROR(FromRocks(db_->Write(SyncWrite(), &batch), "clearing pending markers"));
  }

  // Leases.
  int64_t now = NowMs();
  rocksdb::WriteBatch expired;
  {
    absl::MutexLock lock(&pin_mu_);
    it.reset(db_->NewIterator(ro, default_));
    for (it->Seek(S(format::kLeasePrefix));
         it->Valid() && it->key().starts_with(S(format::kLeasePrefix)); it->Next()) {
      std::string id(V(it->key()).substr(format::kLeasePrefix.size()));
      format::LeaseRecord rec;
      if (!format::DecodeLease(V(it->value()), &rec) || rec.expiry_ms <= now) {
        expired.Delete(default_, it->key());
        continue;
      }
      for (const std::string& k : rec.keys) lease_pins_[k][id] = rec.expiry_ms;
      leases_[id] = LeaseState{rec.expiry_ms, std::move(rec.keys)};
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

int64_t RocksDbBlobStore::Impl::NowMs() const {
  absl::Time now = options_.clock ? options_.clock() : absl::Now();
  return absl::ToUnixMillis(now);
}

int RocksDbBlobStore::Impl::StripeOfAc(absl::string_view ac_key) {
  return static_cast<int>(absl::HashOf(ac_key) % kStripes);
}

rocksdb::WriteOptions RocksDbBlobStore::Impl::SyncWrite() const {
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  return wo;
}

std::string RocksDbBlobStore::Impl::NewTempPath() {
  return common::JoinPath(tmp_dir_, absl::StrCat(getpid(), "-", temp_seq_.fetch_add(1), ".sst"));
}

absl::Status RocksDbBlobStore::Impl::DeleteChunkRanges(const std::vector<std::string>& keys) {
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
// The budget.

int64_t RocksDbBlobStore::Impl::Used() const {
  return lsm_measured_.load() + lsm_since_measure_.load() + large_bytes_.load() + reserved_.load();
}

void RocksDbBlobStore::Impl::MeasureLocked() {
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

absl::Status RocksDbBlobStore::Impl::CompactLsmLocked() {
  rocksdb::CompactRangeOptions opts;
  opts.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForceOptimized;
  for (rocksdb::ColumnFamilyHandle* h : {small_, ac_, meta_, lru_, default_}) {
    RETURN_IF_ERROR(FromRocks(db_->CompactRange(opts, h, nullptr, nullptr),
                              absl::StrCat("compacting ", h->GetName())));
  }
  lsm_evicted_since_compact_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<RocksDbBlobStore::Impl::Reservation>>
RocksDbBlobStore::Impl::Reserve(int64_t bytes) {
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

absl::Status RocksDbBlobStore::Impl::MakeRoomLocked(int64_t need) {
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

void RocksDbBlobStore::Impl::PickVictimsLocked(int64_t want, std::vector<Victim>* out) {
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
  absl::MutexLock lock(&pin_mu_);
  for (; it->Valid() && sum < want && out->size() < kMaxVictims; it->Next()) {
    format::LruEntry e;
    if (!format::DecodeLruKey(V(it->key()), &e)) continue;
    last = it->key().ToString();
    if (e.type == LruType::kBlob && IsPinnedLocked(e.id, now)) {
      if (first_pinned.empty()) first_pinned = last;
      continue;
    }
    int64_t charge = format::DecodeInt64(V(it->value()));
    out->push_back(Victim{e.type, std::move(e.id), last, charge});
    sum += charge;
  }
  lru_cursor_ = !first_pinned.empty() ? first_pinned : last;
}

absl::Status RocksDbBlobStore::Impl::EvictLocked(const std::vector<Victim>& victims) {
  std::vector<int> stripes;
  for (const Victim& v : victims) {
    stripes.push_back(v.type == LruType::kBlob ? StripeOfBlob(v.id) : StripeOfAc(v.id));
  }
  StripeLocks locks(this, std::move(stripes));
  rocksdb::ReadOptions ro;
  rocksdb::WriteBatch batch;
  std::vector<int64_t> delta = Delta();
  absl::flat_hash_map<std::string, std::pair<int64_t, int64_t>> scope_delta;
  std::vector<std::string> large;
  int64_t freed_large = 0, evicted_lsm = 0;
  int64_t now = NowMs();
  {
    absl::MutexLock pin_lock(&pin_mu_);
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
        if (IsPinnedLocked(v.id, now)) continue;
        batch.Delete(meta_, v.id);
        batch.Delete(lru_, v.lru_key);
        if (meta.kind == BlobKind::kSmall) {
          batch.Delete(small_, v.id);
          delta[format::kSmallCharge] -= meta.charge;
          evicted_lsm += meta.charge;
        } else {
          batch.Put(default_, PendingKey(v.id), "");
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
        Digest key;
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
  }
  if (batch.Count() == 0) return absl::OkStatus();
  batch.Merge(default_, S(format::kGlobalCountersKey), format::EncodeCounters(delta));
  for (const auto& [scope, d] : scope_delta) {
    batch.Merge(default_, ScopeCounterKey(scope), format::EncodeCounters({d.first, d.second}));
  }
  RETURN_IF_ERROR(FromRocks(db_->Write(SyncWrite(), &batch), "evicting"));
  blob_count_ += delta[format::kBlobCount];
  blob_bytes_ += delta[format::kBlobBytes];
  ac_count_ += delta[format::kAcCount];
  evicted_blobs_ += delta[format::kEvictedBlobs];
  evicted_bytes_ += delta[format::kEvictedBytes];
  evicted_ac_ += delta[format::kEvictedAc];
  lsm_evicted_since_compact_ += evicted_lsm;
  if (!large.empty()) {
    // The pending markers make this safe to interrupt: the next open finishes it.
    RETURN_IF_ERROR(DeleteChunkRanges(large));
    large_bytes_ -= freed_large;
    rocksdb::WriteBatch done;
    for (const std::string& k : large) done.Delete(default_, PendingKey(k));
    RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &done), "evicting"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> RocksDbBlobStore::Impl::Remove(absl::Span<const Digest> digests) {
  std::vector<Victim> victims;
  for (const Digest& d : digests) {
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

// ---------------------------------------------------------------------------------------------
// Pins and leases.

bool RocksDbBlobStore::Impl::IsPinnedLocked(const std::string& key, int64_t now_ms) const {
  auto r = readers_.find(key);
  if (r != readers_.end() && r->second > 0) return true;
  auto l = lease_pins_.find(key);
  if (l == lease_pins_.end()) return false;
  for (const auto& [id, expiry] : l->second) {
    if (expiry > now_ms) return true;
  }
  return false;
}

void RocksDbBlobStore::Impl::Unpin(const std::string& key) {
  absl::MutexLock lock(&pin_mu_);
  auto it = readers_.find(key);
  if (it != readers_.end() && --it->second <= 0) readers_.erase(it);
}

void RocksDbBlobStore::Impl::ExpireLeasesLocked(int64_t now_ms, std::vector<std::string>* ids) {
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expiry_ms > now_ms) {
      ++it;
      continue;
    }
    for (const std::string& k : it->second.keys) {
      auto p = lease_pins_.find(k);
      if (p == lease_pins_.end()) continue;
      p->second.erase(it->first);
      if (p->second.empty()) lease_pins_.erase(p);
    }
    ids->push_back(it->first);
    leases_.erase(it++);
  }
}

void RocksDbBlobStore::Impl::DropExpiredLeases() {
  std::vector<std::string> ids;
  {
    absl::MutexLock lock(&pin_mu_);
    ExpireLeasesLocked(NowMs(), &ids);
  }
  if (ids.empty()) return;
  rocksdb::WriteBatch batch;
  for (const std::string& id : ids) batch.Delete(default_, absl::StrCat(format::kLeasePrefix, id));
  db_->Write(rocksdb::WriteOptions(), &batch).PermitUncheckedError();
}

absl::StatusOr<BlobStore::Lease> RocksDbBlobStore::Impl::AcquireLease(
    absl::Span<const Digest> digests, absl::Duration ttl) {
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("lease TTL must be positive, got ", absl::FormatDuration(ttl)));
  }
  ttl = std::min(ttl, options_.max_lease_ttl);
  DropExpiredLeases();
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
  lease.id = RandomHex(16);
  const int64_t now = NowMs();
  const int64_t expiry = now + absl::ToInt64Milliseconds(ttl);
  format::LeaseRecord rec;
  rec.expiry_ms = expiry;
  std::vector<std::string> touch;
  {
    std::vector<int> stripes;
    for (const std::string& k : keys) stripes.push_back(StripeOfBlob(k));
    StripeLocks locks(this, std::move(stripes));
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db_->MultiGet(rocksdb::ReadOptions(), meta_, keys.size(), slices.data(), values.data(),
                  statuses.data());
    absl::MutexLock lock(&pin_mu_);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].IsNotFound()) {
        lease.missing.push_back(*key_digests[i]);
        continue;
      }
      RETURN_IF_ERROR(FromRocks(statuses[i], "reading blob metadata"));
      lease_pins_[keys[i]][lease.id] = expiry;
      rec.keys.push_back(keys[i]);
      BlobMeta meta;
      if (format::DecodeMeta(V(values[i]), &meta) &&
          now - meta.atime_ms >= absl::ToInt64Milliseconds(options_.touch_granularity)) {
        touch.push_back(keys[i]);
      }
    }
    leases_[lease.id] = LeaseState{expiry, rec.keys};
  }
  absl::Status s =
      FromRocks(db_->Put(SyncWrite(), default_, absl::StrCat(format::kLeasePrefix, lease.id),
                         format::EncodeLease(rec)),
                "recording lease");
  if (!s.ok()) {
    ReleaseLease(lease.id).IgnoreError();
    return s;
  }
  if (!touch.empty()) TouchBlobs(touch);
  return lease;
}

absl::Status RocksDbBlobStore::Impl::ReleaseLease(const std::string& lease_id) {
  {
    absl::MutexLock lock(&pin_mu_);
    auto it = leases_.find(lease_id);
    if (it == leases_.end() || it->second.expiry_ms <= NowMs()) {
      return absl::NotFoundError(absl::StrCat("lease ", lease_id, " is unknown or expired"));
    }
    for (const std::string& k : it->second.keys) {
      auto p = lease_pins_.find(k);
      if (p == lease_pins_.end()) continue;
      p->second.erase(lease_id);
      if (p->second.empty()) lease_pins_.erase(p);
    }
    leases_.erase(it);
  }
  return FromRocks(
      db_->Delete(rocksdb::WriteOptions(), default_, absl::StrCat(format::kLeasePrefix, lease_id)),
      "releasing lease");
}

// ---------------------------------------------------------------------------------------------
// Reads.

void RocksDbBlobStore::Impl::TouchBlobs(const std::vector<std::string>& keys) {
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
    if (!statuses[i].ok() || !format::DecodeMeta(V(values[i]), &meta)) continue;
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

absl::StatusOr<std::vector<Digest>> RocksDbBlobStore::Impl::FindMissing(
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
    db_->MultiGet(rocksdb::ReadOptions(), meta_, keys.size(), slices.data(), values.data(),
                  statuses.data());
  }
  std::vector<Digest> missing;
  std::vector<std::string> touch;
  const int64_t now = NowMs();
  const int64_t granularity = absl::ToInt64Milliseconds(options_.touch_granularity);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!seen.insert(keys[i]).second) continue;
    if (statuses[i].IsNotFound()) {
      missing.push_back(*key_digests[i]);
      continue;
    }
    RETURN_IF_ERROR(FromRocks(statuses[i], "reading blob metadata"));
    BlobMeta meta;
    if (format::DecodeMeta(V(values[i]), &meta) && now - meta.atime_ms >= granularity) {
      touch.push_back(keys[i]);
    }
  }
  if (!touch.empty()) TouchBlobs(touch);
  return missing;
}

absl::StatusOr<std::unique_ptr<BlobReader>> RocksDbBlobStore::Impl::OpenRead(const Digest& digest,
                                                                             int64_t offset,
                                                                             int64_t limit) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (offset < 0 || limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("negative read offset ", offset, " or limit ", limit));
  }
  if (offset > digest.size_bytes) {
    return absl::OutOfRangeError(
        absl::StrCat("read offset ", offset, " is beyond the size of ", digest.ToString()));
  }
  if (digest.empty_blob()) return std::unique_ptr<BlobReader>(new EmptyReader());
  std::string key = format::BlobKey(digest);
  BlobMeta meta;
  {
    absl::MutexLock stripe(&stripes_[StripeOfBlob(key)]);
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, key, &value);
    if (s.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat("blob ", digest.ToString(), " not found"));
    }
    RETURN_IF_ERROR(FromRocks(s, "reading blob metadata"));
    if (!format::DecodeMeta(value, &meta)) {
      return absl::DataLossError(absl::StrCat("blob ", digest.ToString(), ": corrupt metadata"));
    }
    if (meta.kind == BlobKind::kLarge) {
      absl::MutexLock lock(&pin_mu_);
      ++readers_[key];
    }
  }
  if (NowMs() - meta.atime_ms >= absl::ToInt64Milliseconds(options_.touch_granularity)) {
    TouchBlobs({key});
  }
  int64_t end = limit == 0 ? digest.size_bytes : std::min(digest.size_bytes, offset + limit);
  if (meta.kind == BlobKind::kLarge) {
    return std::unique_ptr<BlobReader>(
        new LargeReader(this, std::move(key), digest, meta.chunk_size, offset, end));
  }
  auto value = std::make_unique<rocksdb::PinnableSlice>();
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), small_, key, value.get());
  if (s.IsNotFound()) {
    // Evicted between the metadata read and now.
    return absl::NotFoundError(absl::StrCat("blob ", digest.ToString(), " not found"));
  }
  RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading blob ", digest.ToString())));
  if (static_cast<int64_t>(value->size()) != digest.size_bytes) {
    return absl::DataLossError(
        absl::StrCat("blob ", digest.ToString(), ": stored ", value->size(), " bytes"));
  }
  return std::unique_ptr<BlobReader>(new SmallReader(std::move(value), offset, end));
}

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> RocksDbBlobStore::Impl::BatchRead(
    absl::Span<const Digest> digests) {
  std::vector<absl::StatusOr<std::string>> out;
  out.reserve(digests.size());
  for (const Digest& d : digests) {
    absl::StatusOr<std::unique_ptr<BlobReader>> reader = OpenRead(d, 0, 0);
    if (!reader.ok()) {
      out.push_back(reader.status());
      continue;
    }
    std::string data;
    data.reserve(static_cast<size_t>(d.size_bytes));
    absl::Status s;
    for (;;) {
      absl::StatusOr<absl::string_view> chunk = (*reader)->Next();
      if (!chunk.ok()) {
        s = chunk.status();
        break;
      }
      if (chunk->empty()) break;
      data.append(chunk->data(), chunk->size());
    }
    if (s.ok()) {
      out.push_back(std::move(data));
    } else {
      out.push_back(s);
    }
  }
  return out;
}

absl::StatusOr<std::vector<Digest>> RocksDbBlobStore::Impl::Verify() {
  std::vector<Digest> bad;
  std::vector<Digest> all;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() == format::kKeySize) {
        all.push_back(format::DigestFromKey(V(it->key())));
      }
    }
    RETURN_IF_ERROR(FromRocks(it->status(), "scanning blob metadata"));
  }
  for (const Digest& d : all) {
    common::Sha256 hasher;
    absl::StatusOr<std::unique_ptr<BlobReader>> reader = OpenRead(d, 0, 0);
    if (absl::IsNotFound(reader.status())) continue;  // evicted meanwhile
    absl::Status s = reader.status();
    while (s.ok()) {
      absl::StatusOr<absl::string_view> chunk = (*reader)->Next();
      if (!chunk.ok()) {
        s = chunk.status();
        break;
      }
      if (chunk->empty()) break;
      hasher.Update(*chunk);
    }
    if (!s.ok() || hasher.Finish() != d) bad.push_back(d);
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// Writes.

absl::StatusOr<std::unique_ptr<BlobWriter>> RocksDbBlobStore::Impl::BeginWrite(
    const Digest& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (digest.empty_blob()) return std::unique_ptr<BlobWriter>(new DiscardWriter(digest));
  {
    std::string value;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, format::BlobKey(digest), &value);
    if (s.ok()) return std::unique_ptr<BlobWriter>(new DiscardWriter(digest));
    if (!s.IsNotFound()) RETURN_IF_ERROR(FromRocks(s, "reading blob metadata"));
  }
  if (digest.size_bytes <= options_.inline_max) {
    ASSIGN_OR_RETURN(std::unique_ptr<Reservation> r,
                     Reserve(2 * (digest.size_bytes + kEntryOverhead)));
    return std::unique_ptr<BlobWriter>(new SmallWriter(this, digest, std::move(r)));
  }
  int64_t chunks = (digest.size_bytes + options_.chunk_size - 1) / options_.chunk_size;
  int64_t estimate = RoundUp(digest.size_bytes + chunks * kChunkOverhead + kFileOverhead, kBlock) +
                     2 * kEntryOverhead;
  ASSIGN_OR_RETURN(std::unique_ptr<Reservation> r, Reserve(estimate));
  return LargeWriter::Create(this, digest, std::move(r));
}

absl::Status RocksDbBlobStore::Impl::CommitSmall(absl::Span<const BlobData> blobs) {
  std::vector<std::string> keys;
  std::vector<int> stripes;
  for (const BlobData& b : blobs) {
    keys.push_back(format::BlobKey(b.digest));
    stripes.push_back(StripeOfBlob(keys.back()));
  }
  StripeLocks locks(this, std::move(stripes));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  db_->MultiGet(rocksdb::ReadOptions(), meta_, keys.size(), slices.data(), values.data(),
                statuses.data());
  const int64_t now = NowMs();
  rocksdb::WriteBatch batch;
  std::vector<int64_t> delta = Delta();
  absl::flat_hash_set<absl::string_view> added;
  int64_t charged = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (statuses[i].ok()) continue;  // another writer won
    if (!statuses[i].IsNotFound()) return FromRocks(statuses[i], "reading blob metadata");
    if (!added.insert(keys[i]).second) continue;
    const BlobData& b = blobs[i];
    BlobMeta meta;
    meta.kind = BlobKind::kSmall;
    meta.size = b.digest.size_bytes;
    meta.charge = b.digest.size_bytes + kEntryOverhead;
    meta.atime_ms = now;
    batch.Put(small_, keys[i], rocksdb::Slice(b.data.data(), b.data.size()));
    batch.Put(meta_, keys[i], format::EncodeMeta(meta));
    batch.Put(lru_, format::LruKey(now, LruType::kBlob, keys[i]), format::EncodeInt64(meta.charge));
    delta[format::kBlobCount] += 1;
    delta[format::kBlobBytes] += meta.size;
    delta[format::kSmallCharge] += meta.charge;
    charged += meta.charge;
  }
  if (batch.Count() == 0) return absl::OkStatus();
  batch.Merge(default_, S(format::kGlobalCountersKey), format::EncodeCounters(delta));
  RETURN_IF_ERROR(FromRocks(db_->Write(SyncWrite(), &batch), "committing blobs"));
  lsm_since_measure_ += 2 * charged;
  blob_count_ += delta[format::kBlobCount];
  blob_bytes_ += delta[format::kBlobBytes];
  return absl::OkStatus();
}

absl::Status RocksDbBlobStore::Impl::CommitLarge(const Digest& digest, const std::string& sst_path,
                                                 int64_t file_size) {
  std::string key = format::BlobKey(digest);
  absl::MutexLock stripe(&stripes_[StripeOfBlob(key)]);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, key, &value);
  if (s.ok()) {  // another writer won
    unlink(sst_path.c_str());
    return absl::OkStatus();
  }
  if (!s.IsNotFound()) return FromRocks(s, "reading blob metadata");
  const std::string context = absl::StrCat("committing blob ", digest.ToString());
  RETURN_IF_ERROR(FromRocks(db_->Put(SyncWrite(), default_, PendingKey(key), ""), context));
  rocksdb::IngestExternalFileOptions ingest;
  ingest.move_files = true;
  ingest.snapshot_consistency = false;
  ingest.allow_blocking_flush = false;
  ingest.write_global_seqno = false;
  ingest.fail_if_not_bottommost_level = true;
  s = db_->IngestExternalFile(chunks_, {sst_path}, ingest);
  if (!s.ok()) {
    unlink(sst_path.c_str());
    db_->Delete(rocksdb::WriteOptions(), default_, PendingKey(key)).PermitUncheckedError();
    return FromRocks(s, context);
  }
  BlobMeta meta;
  meta.kind = BlobKind::kLarge;
  meta.size = digest.size_bytes;
  meta.charge = RoundUp(file_size, kBlock);
  meta.atime_ms = NowMs();
  meta.chunk_size = static_cast<uint32_t>(options_.chunk_size);
  rocksdb::WriteBatch batch;
  batch.Put(meta_, key, format::EncodeMeta(meta));
  batch.Put(lru_, format::LruKey(meta.atime_ms, LruType::kBlob, key),
            format::EncodeInt64(meta.charge));
  batch.Delete(default_, PendingKey(key));
  std::vector<int64_t> delta = Delta();
  delta[format::kBlobCount] = 1;
  delta[format::kBlobBytes] = meta.size;
  delta[format::kLargeCharge] = meta.charge;
  batch.Merge(default_, S(format::kGlobalCountersKey), format::EncodeCounters(delta));
  s = db_->Write(SyncWrite(), &batch);
  if (!s.ok()) {
    // Leave the pending marker: this open or the next removes the file.
    DeleteChunkRanges({key}).IgnoreError();
    return FromRocks(s, context);
  }
  large_bytes_ += meta.charge;
  lsm_since_measure_ += 2 * kEntryOverhead;
  blob_count_ += 1;
  blob_bytes_ += meta.size;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<absl::Status>> RocksDbBlobStore::Impl::BatchWrite(
    absl::Span<const BlobData> blobs) {
  std::vector<absl::Status> out(blobs.size());
  std::vector<BlobData> small;
  std::vector<size_t> small_index;
  int64_t reserve = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const BlobData& b = blobs[i];
    absl::Status s = ValidateDigest(b.digest);
    if (s.ok() && static_cast<int64_t>(b.data.size()) != b.digest.size_bytes) {
      s = SizeMismatch(b.digest, static_cast<int64_t>(b.data.size()));
    }
    if (s.ok()) {
      Digest got = common::DigestOf(b.data);
      if (got != b.digest) s = Mismatch(b.digest, got);
    }
    if (!s.ok()) {
      out[i] = s;
      continue;
    }
    if (b.digest.empty_blob()) continue;
    if (b.digest.size_bytes > options_.inline_max) {
      out[i] = WriteLarge(b);
      continue;
    }
    small.push_back(b);
    small_index.push_back(i);
    reserve += 2 * (b.digest.size_bytes + kEntryOverhead);
  }
  if (small.empty()) return out;
  absl::Status s;
  {
    absl::StatusOr<std::unique_ptr<Reservation>> r = Reserve(reserve);
    s = r.status();
    if (s.ok()) s = CommitSmall(small);
  }
  for (size_t i : small_index) out[i] = s;
  return out;
}

absl::Status RocksDbBlobStore::Impl::WriteLarge(const BlobData& blob) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> w, BeginWrite(blob.digest));
  RETURN_IF_ERROR(w->Append(blob.data));
  return w->Commit();
}

// ---------------------------------------------------------------------------------------------
// Action cache entries.

absl::StatusOr<std::string> RocksDbBlobStore::Impl::AcGet(absl::string_view scope,
                                                          const Digest& key) {
  std::string ac_key = format::AcKey(scope, key);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ac_, ac_key, &value);
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
  const int64_t now = NowMs();
  if (now - atime >= absl::ToInt64Milliseconds(options_.touch_granularity)) {
    absl::MutexLock stripe(&stripes_[StripeOfAc(ac_key)]);
    std::string current;
    if (db_->Get(rocksdb::ReadOptions(), ac_, ac_key, &current).ok() && current == value &&
        atime < now) {
      int64_t charge = static_cast<int64_t>(ac_key.size() + value.size()) + kEntryOverhead;
      rocksdb::WriteBatch batch;
      batch.Delete(lru_, format::LruKey(atime, LruType::kAction, ac_key));
      batch.Put(lru_, format::LruKey(now, LruType::kAction, ac_key), format::EncodeInt64(charge));
      batch.Put(ac_, ac_key, format::EncodeAcValue(now, result));
      if (db_->Write(rocksdb::WriteOptions(), &batch).ok()) {
        lsm_since_measure_ += 2 * static_cast<int64_t>(batch.GetDataSize());
      }
    }
  }
  return out;
}

absl::Status RocksDbBlobStore::Impl::AcPut(absl::string_view scope, const Digest& key,
                                           absl::string_view result) {
  RETURN_IF_ERROR(ValidateDigest(key));
  std::string ac_key = format::AcKey(scope, key);
  const int64_t charge = static_cast<int64_t>(ac_key.size() + result.size() + 9) + kEntryOverhead;
  ASSIGN_OR_RETURN(std::unique_ptr<Reservation> r, Reserve(2 * charge));
  absl::MutexLock stripe(&stripes_[StripeOfAc(ac_key)]);
  std::string old;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ac_, ac_key, &old);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading the action cache");
  const int64_t now = NowMs();
  rocksdb::WriteBatch batch;
  std::vector<int64_t> delta = Delta();
  int64_t scope_entries = 1, scope_bytes = static_cast<int64_t>(result.size());
  int64_t old_atime = 0;
  absl::string_view old_result;
  if (s.ok() && format::DecodeAcValue(old, &old_atime, &old_result)) {
    int64_t old_charge = static_cast<int64_t>(ac_key.size() + old.size()) + kEntryOverhead;
    batch.Delete(lru_, format::LruKey(old_atime, LruType::kAction, ac_key));
    delta[format::kAcCount] -= 1;
    delta[format::kAcCharge] -= old_charge;
    scope_entries -= 1;
    scope_bytes -= static_cast<int64_t>(old_result.size());
  }
  batch.Put(ac_, ac_key, format::EncodeAcValue(now, result));
  batch.Put(lru_, format::LruKey(now, LruType::kAction, ac_key), format::EncodeInt64(charge));
  delta[format::kAcCount] += 1;
  delta[format::kAcCharge] += charge;
  batch.Merge(default_, S(format::kGlobalCountersKey), format::EncodeCounters(delta));
  batch.Merge(default_, ScopeCounterKey(scope),
              format::EncodeCounters({scope_entries, scope_bytes}));
  RETURN_IF_ERROR(FromRocks(db_->Write(SyncWrite(), &batch), "writing the action cache"));
  lsm_since_measure_ += 2 * charge;
  ac_count_ += delta[format::kAcCount];
  return absl::OkStatus();
}

absl::Status RocksDbBlobStore::Impl::AcDeleteIf(absl::string_view scope, const Digest& key,
                                                absl::string_view result) {
  std::string ac_key = format::AcKey(scope, key);
  absl::MutexLock stripe(&stripes_[StripeOfAc(ac_key)]);
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), ac_, ac_key, &value);
  if (s.IsNotFound()) return absl::OkStatus();
  RETURN_IF_ERROR(FromRocks(s, "reading the action cache"));
  int64_t atime = 0;
  absl::string_view stored;
  if (!format::DecodeAcValue(value, &atime, &stored) || stored != result) return absl::OkStatus();
  int64_t charge = static_cast<int64_t>(ac_key.size() + value.size()) + kEntryOverhead;
  rocksdb::WriteBatch batch;
  batch.Delete(ac_, ac_key);
  batch.Delete(lru_, format::LruKey(atime, LruType::kAction, ac_key));
  std::vector<int64_t> delta = Delta();
  delta[format::kAcCount] = -1;
  delta[format::kAcCharge] = -charge;
  batch.Merge(default_, S(format::kGlobalCountersKey), format::EncodeCounters(delta));
  batch.Merge(default_, ScopeCounterKey(scope),
              format::EncodeCounters({-1, -static_cast<int64_t>(stored.size())}));
  RETURN_IF_ERROR(FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "dropping a dead entry"));
  ac_count_ -= 1;
  lsm_evicted_since_compact_ += charge;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------------
// Stats and GC.

absl::StatusOr<CacheStats> RocksDbBlobStore::Impl::Stats() {
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
  {
    absl::MutexLock lock(&pin_mu_);
    const int64_t now = NowMs();
    st.leases = static_cast<int64_t>(leases_.size());
    absl::flat_hash_set<std::string> pinned;
    for (const auto& [k, n] : readers_) {
      if (n > 0) pinned.insert(k);
    }
    for (const auto& [k, leases] : lease_pins_) {
      if (IsPinnedLocked(k, now)) pinned.insert(k);
    }
    st.pinned_blobs = static_cast<int64_t>(pinned.size());
    for (const std::string& k : pinned) st.pinned_bytes += format::DigestFromKey(k).size_bytes;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), default_));
  for (it->Seek(S(format::kScopeCountersPrefix));
       it->Valid() && it->key().starts_with(S(format::kScopeCountersPrefix)); it->Next()) {
    std::vector<int64_t> c = format::DecodeCounters(V(it->value()));
    c.resize(2, 0);
    if (c[0] <= 0) continue;
    st.scopes.push_back(ScopeStats{
        std::string(V(it->key()).substr(format::kScopeCountersPrefix.size())), c[0], c[1]});
  }
  RETURN_IF_ERROR(FromRocks(it->status(), "reading scope counters"));
  return st;
}

void RocksDbBlobStore::Impl::ApplyTuning(int64_t max_size) {
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

absl::StatusOr<GcResult> RocksDbBlobStore::Impl::Gc(const GcOptions& options) {
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

// ---------------------------------------------------------------------------------------------
// The public class.

RocksDbBlobStore::RocksDbBlobStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RocksDbBlobStore::~RocksDbBlobStore() = default;

absl::StatusOr<std::unique_ptr<RocksDbBlobStore>> RocksDbBlobStore::Create(
    const RocksDbStoreOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Impl> impl, Impl::Open(options));
  return std::unique_ptr<RocksDbBlobStore>(new RocksDbBlobStore(std::move(impl)));
}

absl::StatusOr<std::vector<Digest>> RocksDbBlobStore::FindMissing(
    absl::Span<const Digest> digests) {
  return impl_->FindMissing(digests);
}
absl::StatusOr<std::unique_ptr<BlobReader>> RocksDbBlobStore::OpenRead(const Digest& digest,
                                                                       int64_t offset,
                                                                       int64_t limit) {
  return impl_->OpenRead(digest, offset, limit);
}
absl::StatusOr<std::unique_ptr<BlobWriter>> RocksDbBlobStore::BeginWrite(const Digest& digest) {
  return impl_->BeginWrite(digest);
}
absl::StatusOr<std::vector<absl::Status>> RocksDbBlobStore::BatchWrite(
    absl::Span<const BlobData> blobs) {
  return impl_->BatchWrite(blobs);
}
absl::StatusOr<std::vector<absl::StatusOr<std::string>>> RocksDbBlobStore::BatchRead(
    absl::Span<const Digest> digests) {
  return impl_->BatchRead(digests);
}
absl::StatusOr<BlobStore::Lease> RocksDbBlobStore::AcquireLease(absl::Span<const Digest> digests,
                                                                absl::Duration ttl) {
  return impl_->AcquireLease(digests, ttl);
}
absl::Status RocksDbBlobStore::ReleaseLease(const std::string& lease_id) {
  return impl_->ReleaseLease(lease_id);
}
absl::StatusOr<CacheStats> RocksDbBlobStore::Stats() { return impl_->Stats(); }
absl::StatusOr<GcResult> RocksDbBlobStore::Gc(const GcOptions& options) {
  return impl_->Gc(options);
}
absl::StatusOr<std::vector<Digest>> RocksDbBlobStore::Verify() { return impl_->Verify(); }
absl::StatusOr<int64_t> RocksDbBlobStore::Remove(absl::Span<const Digest> digests) {
  return impl_->Remove(digests);
}
int64_t RocksDbBlobStore::max_size() const { return impl_->max_size(); }
int64_t RocksDbBlobStore::limit() const { return impl_->limit(); }
const std::string& RocksDbBlobStore::dir() const { return impl_->dir(); }

}  // namespace farm::cache
