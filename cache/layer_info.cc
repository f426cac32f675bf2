#include "cache/layer_info.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "oci/compression.h"

namespace farm::cache {
namespace {

constexpr size_t kMagicBytes = 4;
// Per upload: bounds the memory a slow decompression can make a fast sender queue.
constexpr size_t kMaxQueuedBytes = 4 << 20;

}  // namespace

LayerInfoComputer::LayerInfoComputer(Mode mode) : mode_(mode) {}
LayerInfoComputer::~LayerInfoComputer() = default;

void LayerInfoComputer::Start(oci::Compression c) {
  decided_ = true;
  compression_ = c;
  if (c == oci::Compression::kNone) return;
  // hash_stored false: the store hashes the stored bytes anyway.
  if (mode_ == kAsync) {
    async_ = std::make_unique<oci::AsyncLayerDigester>(c, /*hash_stored=*/false, kMaxQueuedBytes);
  } else {
    inline_ = std::make_unique<oci::LayerDigester>(c, /*hash_stored=*/false);
  }
}

void LayerInfoComputer::Update(absl::string_view data) {
  if (!status_.ok() || data.empty()) return;
  if (!decided_) {
    if (head_.size() + data.size() < kMagicBytes) {
      head_.append(data.data(), data.size());
      return;
    }
    Start(oci::DetectCompression(absl::StrCat(head_, data.substr(0, kMagicBytes))));
    if (compression_ == oci::Compression::kNone) {
      head_.clear();
      return;
    }
    std::string head = std::move(head_);
    head_.clear();
    Update(head);
  }
  if (compression_ == oci::Compression::kNone) return;
  status_ = async_ ? async_->Update(data) : inline_->Update(data);
}

absl::StatusOr<LayerInfo> LayerInfoComputer::Finish(const common::Digest& digest) {
  if (!decided_) Start(oci::DetectCompression(head_));  // a blob shorter than the magic
  LayerInfo info;
  info.compression = compression_;
  if (compression_ == oci::Compression::kNone) {
    info.diff_id = digest;
    return info;
  }
  if (!head_.empty()) Update(std::exchange(head_, std::string()));
  absl::StatusOr<oci::LayerDigests> got = !status_.ok()
                                              ? absl::StatusOr<oci::LayerDigests>(status_)
                                              : (async_ ? async_->Finish() : inline_->Finish());
  if (!got.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("blob ", digest.ToString(), " looks ", oci::CompressionName(compression_),
                     "-compressed but does not decompress: ", got.status().message()));
  }
  info.diff_id = got->diff_id;
  return info;
}

absl::StatusOr<LayerInfo> LayerInfoComputer::Of(const common::Digest& digest,
                                                absl::string_view data) {
  LayerInfoComputer c(kInline);
  c.Update(data);
  return c.Finish(digest);
}

}  // namespace farm::cache
