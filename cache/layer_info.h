// LayerInfo: what a stored blob is as an OCI layer (its compression and its diff_id, the
// SHA-256 of its uncompressed bytes), and LayerInfoComputer, which works it out while the
// blob's bytes stream past, so a cache can answer "what is the diff_id of this blob" without
// anyone reading the blob again. BlobStore::GetLayerInfo is the question (blob_store.h).
//
//   cache::LayerInfoComputer info(cache::LayerInfoComputer::kAsync);
//   info.Update(chunk);                       // as the bytes arrive, in order
//   ASSIGN_OR_RETURN(cache::LayerInfo got, info.Finish(digest));
//   if (got.compression == oci::Compression::kGzip) use(got.diff_id);
#ifndef FARM_CACHE_LAYER_INFO_H_
#define FARM_CACHE_LAYER_INFO_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "oci/media_types.h"

namespace farm::oci {
class AsyncLayerDigester;
class LayerDigester;
}  // namespace farm::oci

namespace farm::cache {

struct LayerInfo {
  // Recognized by the blob's first bytes (gzip 1f8b, zstd 28b52ffd), never by a media type:
  // the cache does not know one. Anything else is kNone.
  oci::Compression compression = oci::Compression::kNone;
  // The digest of the uncompressed bytes (size_bytes = their length); for kNone, the blob's
  // own digest.
  common::Digest diff_id;
};

// Computes a blob's LayerInfo from its bytes in one streaming pass. Only gzip and zstd blobs
// cost anything: their bytes are decompressed and hashed (in kAsync mode on a thread of the
// computer's own, through a bounded queue, so a writer's thread only copies); other blobs are
// recognized from their first 4 bytes and then ignored. Update never fails: bytes that look
// compressed but do not decompress make Finish return INVALID_ARGUMENT, never fail the write
// that feeds them (a CAS stores any bytes). Not thread-safe (one producer).
class LayerInfoComputer {
 public:
  enum Mode { kInline, kAsync };
  explicit LayerInfoComputer(Mode mode);
  ~LayerInfoComputer();
  LayerInfoComputer(const LayerInfoComputer&) = delete;
  LayerInfoComputer& operator=(const LayerInfoComputer&) = delete;

  void Update(absl::string_view data);
  // `digest` is the blob's (already verified) digest. INVALID_ARGUMENT if it starts like gzip
  // or zstd but does not decompress. Call once.
  absl::StatusOr<LayerInfo> Finish(const common::Digest& digest);

  // One pass over bytes held in memory.
  static absl::StatusOr<LayerInfo> Of(const common::Digest& digest, absl::string_view data);

 private:
  void Start(oci::Compression c);

  Mode mode_;
  std::string head_;  // the first bytes, until there are enough to recognize the format
  bool decided_ = false;
  oci::Compression compression_ = oci::Compression::kNone;
  std::unique_ptr<oci::LayerDigester> inline_;
  std::unique_ptr<oci::AsyncLayerDigester> async_;
  absl::Status status_;
};

}  // namespace farm::cache

#endif  // FARM_CACHE_LAYER_INFO_H_
