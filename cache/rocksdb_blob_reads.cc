// RocksDbBlobStore's reads: OpenRead (a small blob from its one value, a large one chunk by
// chunk, pinned while open), BatchRead, GetLayerInfo and Verify.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/rocksdb_store.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"

namespace farm::cache {
namespace {

using common::FromRocks;
using format::BlobKind;
using format::BlobMeta;

// A read's chunk handed to the caller (small blobs are served in pieces of this size too).
constexpr size_t kReadPiece = 1 << 20;

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
  LargeReader(RocksDbStore* store, std::string key, Digest digest, uint32_t chunk_size,
              int64_t offset, int64_t end)
      : store_(store),
        key_(std::move(key)),
        digest_(std::move(digest)),
        chunk_size_(chunk_size),
        pos_(offset),
        end_(end) {}
  ~LargeReader() override { store_->pins().RemoveReader(key_); }

  absl::StatusOr<absl::string_view> Next() override {
    if (pos_ >= end_) return absl::string_view();
    uint32_t index = static_cast<uint32_t>(pos_ / chunk_size_);
    int64_t inner = pos_ % chunk_size_;
    chunk_.Reset();
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    rocksdb::Status s =
        store_->db()->Get(ro, store_->chunks_cf(), format::ChunkKey(key_, index), &chunk_);
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
  RocksDbStore* store_;
  std::string key_;
  Digest digest_;
  int64_t chunk_size_;
  int64_t pos_;
  int64_t end_;
  rocksdb::PinnableSlice chunk_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobReader>> RocksDbBlobStore::OpenRead(const Digest& digest,
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
    // Under the stripe, so that eviction cannot take a large blob between this lookup and its
    // pin.
    absl::MutexLock stripe(store_->stripe(RocksDbStore::StripeOfBlob(key)));
    std::string value;
    rocksdb::Status s = store_->db()->Get(rocksdb::ReadOptions(), store_->meta_cf(), key, &value);
    if (s.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat("blob ", digest.ToString(), " not found"));
    }
    RETURN_IF_ERROR(FromRocks(s, "reading blob metadata"));
    if (!format::DecodeMeta(value, &meta)) {
      return absl::DataLossError(absl::StrCat("blob ", digest.ToString(), ": corrupt metadata"));
    }
    if (meta.kind == BlobKind::kLarge) store_->pins().AddReader(key);
  }
  if (store_->TouchDue(meta.atime_ms, store_->NowMs())) store_->TouchBlobs({key});
  int64_t end = limit == 0 ? digest.size_bytes : std::min(digest.size_bytes, offset + limit);
  if (meta.kind == BlobKind::kLarge) {
    return std::unique_ptr<BlobReader>(
        new LargeReader(store_.get(), std::move(key), digest, meta.chunk_size, offset, end));
  }
  auto value = std::make_unique<rocksdb::PinnableSlice>();
  rocksdb::Status s =
      store_->db()->Get(rocksdb::ReadOptions(), store_->small_cf(), key, value.get());
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

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> RocksDbBlobStore::BatchRead(
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

absl::StatusOr<std::vector<Digest>> RocksDbBlobStore::Verify() {
  std::vector<Digest> bad;
  std::vector<Digest> all;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        store_->db()->NewIterator(rocksdb::ReadOptions(), store_->meta_cf()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (it->key().size() == format::kKeySize) {
        all.push_back(format::DigestFromKey(ToView(it->key())));
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

absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> RocksDbBlobStore::GetLayerInfo(
    absl::Span<const Digest> digests) {
  std::vector<std::string> keys;
  for (const Digest& d : digests) {
    RETURN_IF_ERROR(ValidateDigest(d));
    keys.push_back(format::BlobKey(d));
  }
  std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
  std::vector<rocksdb::PinnableSlice> values(keys.size());
  std::vector<rocksdb::Status> statuses(keys.size());
  if (!keys.empty()) {
    store_->db()->MultiGet(rocksdb::ReadOptions(), store_->meta_cf(), keys.size(), slices.data(),
                           values.data(), statuses.data());
  }
  std::vector<absl::StatusOr<LayerInfo>> out;
  out.reserve(digests.size());
  for (size_t i = 0; i < digests.size(); ++i) {
    const Digest& d = digests[i];
    if (d.empty_blob()) {
      out.push_back(LayerInfo{oci::Compression::kNone, d});
      continue;
    }
    if (statuses[i].IsNotFound()) {
      out.push_back(absl::NotFoundError(absl::StrCat("blob ", d.ToString(), " not found")));
      continue;
    }
    RETURN_IF_ERROR(FromRocks(statuses[i], "reading blob metadata"));
    BlobMeta meta;
    if (!format::DecodeMeta(ToView(values[i]), &meta)) {
      out.push_back(absl::DataLossError(absl::StrCat("blob ", d.ToString(), ": corrupt metadata")));
      continue;
    }
    if (meta.layer != format::LayerState::kUnknown) {
      out.push_back(format::LayerStateOf(meta, d));
      continue;
    }
    // Stored before the store kept layer state (format 1): work it out from the local copy
    // once, and remember it.
    ASSIGN_OR_RETURN(std::vector<absl::StatusOr<LayerInfo>> computed,
                     BlobStore::GetLayerInfo(absl::MakeConstSpan(&d, 1)));
    absl::StatusOr<LayerInfo> info = std::move(computed[0]);
    if (info.ok() || absl::IsInvalidArgument(info.status())) {
      absl::MutexLock stripe(store_->stripe(RocksDbStore::StripeOfBlob(keys[i])));
      std::string value;
      rocksdb::Status s =
          store_->db()->Get(rocksdb::ReadOptions(), store_->meta_cf(), keys[i], &value);
      if (s.ok() && format::DecodeMeta(value, &meta) &&
          meta.layer == format::LayerState::kUnknown) {
        format::SetLayerState(info, &meta);
        // Advisory like recency: unsynced, and a lost write is only computed again.
        store_->db()
            ->Put(rocksdb::WriteOptions(), store_->meta_cf(), keys[i], format::EncodeMeta(meta))
            .PermitUncheckedError();
      }
    }
    out.push_back(std::move(info));
  }
  return out;
}

}  // namespace farm::cache
