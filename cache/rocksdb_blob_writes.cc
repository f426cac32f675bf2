// RocksDbBlobStore's writes: BeginWrite (a small blob buffered and committed as one value, a
// large one streamed into its own SST and ingested), BatchWrite, and the commits that make a
// verified blob visible (metadata last, after its bytes are durable).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "cache/layer_info.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/rocksdb_store.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"
#include "rocksdb/sst_file_writer.h"

namespace farm::cache {
namespace {

using common::FromRocks;
using format::BlobKind;
using format::BlobMeta;
using format::LruType;
using Reservation = RocksDbStore::Reservation;

// SST overhead per chunk (block trailer, index entry) and per file (footer, properties).
constexpr int64_t kChunkOverhead = 96;
constexpr int64_t kFileOverhead = 32 << 10;
constexpr int64_t kBlock = 4096;

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

absl::Status Mismatch(const Digest& want, const Digest& got) {
  return absl::InvalidArgumentError(absl::StrCat("digest mismatch: the bytes written hash to ",
                                                 got.ToString(), ", not ", want.ToString()));
}

absl::Status SizeMismatch(const Digest& want, int64_t got) {
  return absl::InvalidArgumentError(absl::StrCat("blob ", want.ToString(), ": received ", got,
                                                 " bytes, expected ", want.size_bytes));
}

// Makes verified small blobs visible: value, metadata (with what each is as a layer) and
// recency in one synced batch. A blob already present (another writer won) is skipped.
absl::Status CommitSmall(RocksDbStore& store, absl::Span<const BlobData> blobs) {
  std::vector<std::string> keys;
  std::vector<int> stripes;
  std::vector<absl::StatusOr<LayerInfo>> layers;  // at most inline_max bytes each: inline
  for (const BlobData& b : blobs) {
    keys.push_back(format::BlobKey(b.digest));
    stripes.push_back(RocksDbStore::StripeOfBlob(keys.back()));
    layers.push_back(LayerInfoComputer::Of(b.digest, b.data));
  }
  RocksDbStore::StripeLocks locks(&store, std::move(stripes));
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  store.db()->MultiGet(rocksdb::ReadOptions(), store.meta_cf(), keys.size(), slices.data(),
                       values.data(), statuses.data());
  const int64_t now = store.NowMs();
  rocksdb::WriteBatch batch;
  std::vector<int64_t> delta = format::ZeroCounters();
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
    meta.charge = b.digest.size_bytes + RocksDbStore::kEntryOverhead;
    meta.atime_ms = now;
    format::SetLayerState(layers[i], &meta);
    batch.Put(store.small_cf(), keys[i], rocksdb::Slice(b.data.data(), b.data.size()));
    batch.Put(store.meta_cf(), keys[i], format::EncodeMeta(meta));
    batch.Put(store.lru_cf(), format::LruKey(now, LruType::kBlob, keys[i]),
              format::EncodeInt64(meta.charge));
    delta[format::kBlobCount] += 1;
    delta[format::kBlobBytes] += meta.size;
    delta[format::kSmallCharge] += meta.charge;
    charged += meta.charge;
  }
  if (batch.Count() == 0) return absl::OkStatus();
  batch.Merge(store.default_cf(), ToSlice(format::kGlobalCountersKey),
              format::EncodeCounters(delta));
  RETURN_IF_ERROR(FromRocks(store.db()->Write(store.SyncWrite(), &batch), "committing blobs"));
  store.NoteLsmWrite(charged);
  store.MirrorCounters(delta);
  return absl::OkStatus();
}

// Makes a verified large blob visible: ingests its SST (under a pending marker, so that a crash
// before the metadata is written leaves nothing behind after the next open), then writes its
// metadata. A blob already present (another writer won) is skipped and the file deleted.
absl::Status CommitLarge(RocksDbStore& store, const Digest& digest, const std::string& sst_path,
                         int64_t file_size, const absl::StatusOr<LayerInfo>& layer) {
  rocksdb::DB* db = store.db();
  std::string key = format::BlobKey(digest);
  absl::MutexLock stripe(store.stripe(RocksDbStore::StripeOfBlob(key)));
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), store.meta_cf(), key, &value);
  if (s.ok()) {  // another writer won
    unlink(sst_path.c_str());
    return absl::OkStatus();
  }
  if (!s.IsNotFound()) return FromRocks(s, "reading blob metadata");
  const std::string context = absl::StrCat("committing blob ", digest.ToString());
  RETURN_IF_ERROR(FromRocks(
      db->Put(store.SyncWrite(), store.default_cf(), format::PendingKey(key), ""), context));
  rocksdb::IngestExternalFileOptions ingest;
  ingest.move_files = true;
  ingest.snapshot_consistency = false;
  ingest.allow_blocking_flush = false;
  ingest.write_global_seqno = false;
  ingest.fail_if_not_bottommost_level = true;
  s = db->IngestExternalFile(store.chunks_cf(), {sst_path}, ingest);
  if (!s.ok()) {
    unlink(sst_path.c_str());
    db->Delete(rocksdb::WriteOptions(), store.default_cf(), format::PendingKey(key))
        .PermitUncheckedError();
    return FromRocks(s, context);
  }
  BlobMeta meta;
  meta.kind = BlobKind::kLarge;
  meta.size = digest.size_bytes;
  meta.charge = RoundUp(file_size, kBlock);
  meta.atime_ms = store.NowMs();
  meta.chunk_size = static_cast<uint32_t>(store.options().chunk_size);
  format::SetLayerState(layer, &meta);
  rocksdb::WriteBatch batch;
  batch.Put(store.meta_cf(), key, format::EncodeMeta(meta));
  batch.Put(store.lru_cf(), format::LruKey(meta.atime_ms, LruType::kBlob, key),
            format::EncodeInt64(meta.charge));
  batch.Delete(store.default_cf(), format::PendingKey(key));
  std::vector<int64_t> delta = format::ZeroCounters();
  delta[format::kBlobCount] = 1;
  delta[format::kBlobBytes] = meta.size;
  delta[format::kLargeCharge] = meta.charge;
  batch.Merge(store.default_cf(), ToSlice(format::kGlobalCountersKey),
              format::EncodeCounters(delta));
  s = db->Write(store.SyncWrite(), &batch);
  if (!s.ok()) {
    // Leave the pending marker: this open or the next removes the file.
    store.DeleteChunkRanges({key}).IgnoreError();
    return FromRocks(s, context);
  }
  store.NoteLargeAdded(meta.charge);
  store.NoteLsmWrite(RocksDbStore::kEntryOverhead);
  store.MirrorCounters(delta);
  return absl::OkStatus();
}

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
  SmallWriter(RocksDbStore* store, Digest digest, std::unique_ptr<Reservation> reservation)
      : store_(store), digest_(std::move(digest)), reservation_(std::move(reservation)) {
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
    RETURN_IF_ERROR(CommitSmall(*store_, absl::MakeConstSpan(&blob, 1)));
    done_ = true;
    reservation_.reset();
    return absl::OkStatus();
  }

 private:
  RocksDbStore* store_;
  Digest digest_;
  std::unique_ptr<Reservation> reservation_;
  std::string data_;
  bool done_ = false;
};

// Streams a large blob into its own SST under DIR/tmp, then hands it to CommitLarge. What the
// blob is as a layer is worked out while it streams (a gzip/zstd blob is decompressed and
// hashed on the computer's own thread, so this thread only queues the bytes).
class LargeWriter : public BlobWriter {
 public:
  static absl::StatusOr<std::unique_ptr<BlobWriter>> Create(
      RocksDbStore* store, Digest digest, std::unique_ptr<Reservation> reservation) {
    std::unique_ptr<LargeWriter> w(
        new LargeWriter(store, std::move(digest), std::move(reservation)));
    w->path_ = store->NewTempPath();
    w->sst_ = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(),
                                                       store->chunk_options(), store->chunks_cf(),
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
    layer_.Update(data);
    received_ += static_cast<int64_t>(data.size());
    const size_t chunk = static_cast<size_t>(store_->options().chunk_size);
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
    RETURN_IF_ERROR(CommitLarge(*store_, digest_, path_, static_cast<int64_t>(info.file_size),
                                layer_.Finish(digest_)));
    done_ = true;
    reservation_.reset();
    return absl::OkStatus();
  }

 private:
  LargeWriter(RocksDbStore* store, Digest digest, std::unique_ptr<Reservation> reservation)
      : store_(store),
        digest_(std::move(digest)),
        key_(format::BlobKey(digest_)),
        reservation_(std::move(reservation)) {}

  absl::Status PutChunk(absl::string_view chunk) {
    RETURN_IF_ERROR(FromRocks(sst_->Put(format::ChunkKey(key_, next_index_++), ToSlice(chunk)),
                              absl::StrCat("writing ", path_)));
    // Let the kernel write back what is behind us while we receive and hash the rest.
    int64_t size = static_cast<int64_t>(sst_->FileSize());
    if (writeback_fd_ && size - written_back_ >= kWritebackStep) {
      store_->StartWriteback(writeback_fd_, written_back_, size);
      written_back_ = size;
    }
    return absl::OkStatus();
  }
  static constexpr int64_t kWritebackStep = 8 << 20;

  RocksDbStore* store_;
  Digest digest_;
  std::string key_;
  std::unique_ptr<Reservation> reservation_;
  std::string path_;
  std::unique_ptr<rocksdb::SstFileWriter> sst_;
  common::Sha256 hasher_;
  LayerInfoComputer layer_{LayerInfoComputer::kAsync};
  std::string buffer_;
  int64_t received_ = 0;
  uint32_t next_index_ = 0;
  absl::Status status_;
  bool done_ = false;
  std::shared_ptr<int> writeback_fd_;  // shared with queued write-back jobs
  int64_t written_back_ = 0;
};

// A large blob of a batch goes through its own writer (its own SST).
absl::Status WriteThroughWriter(BlobStore& store, const BlobData& blob) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> w, store.BeginWrite(blob.digest));
  RETURN_IF_ERROR(w->Append(blob.data));
  return w->Commit();
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlobWriter>> RocksDbBlobStore::BeginWrite(const Digest& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (digest.empty_blob()) return std::unique_ptr<BlobWriter>(new DiscardWriter(digest));
  {
    std::string value;
    rocksdb::Status s = store_->db()->Get(rocksdb::ReadOptions(), store_->meta_cf(),
                                          format::BlobKey(digest), &value);
    if (s.ok()) return std::unique_ptr<BlobWriter>(new DiscardWriter(digest));
    if (!s.IsNotFound()) RETURN_IF_ERROR(FromRocks(s, "reading blob metadata"));
  }
  if (digest.size_bytes <= store_->options().inline_max) {
    ASSIGN_OR_RETURN(std::unique_ptr<Reservation> r,
                     store_->Reserve(2 * (digest.size_bytes + RocksDbStore::kEntryOverhead)));
    return std::unique_ptr<BlobWriter>(new SmallWriter(store_.get(), digest, std::move(r)));
  }
  const int64_t chunk_size = store_->options().chunk_size;
  int64_t chunks = (digest.size_bytes + chunk_size - 1) / chunk_size;
  int64_t estimate = RoundUp(digest.size_bytes + chunks * kChunkOverhead + kFileOverhead, kBlock) +
                     2 * RocksDbStore::kEntryOverhead;
  ASSIGN_OR_RETURN(std::unique_ptr<Reservation> r, store_->Reserve(estimate));
  return LargeWriter::Create(store_.get(), digest, std::move(r));
}

absl::StatusOr<std::vector<absl::Status>> RocksDbBlobStore::BatchWrite(
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
    if (b.digest.size_bytes > store_->options().inline_max) {
      out[i] = WriteThroughWriter(*this, b);
      continue;
    }
    small.push_back(b);
    small_index.push_back(i);
    reserve += 2 * (b.digest.size_bytes + RocksDbStore::kEntryOverhead);
  }
  if (small.empty()) return out;
  absl::Status s;
  {
    absl::StatusOr<std::unique_ptr<Reservation>> r = store_->Reserve(reserve);
    s = r.status();
    if (s.ok()) s = CommitSmall(*store_, small);
  }
  for (size_t i : small_index) out[i] = s;
  return out;
}

}  // namespace farm::cache
