// Moving layers between directories and the CAS, streaming and verified.
//
// WriteLayerFromDir: overlay-form directory → deterministic tar → compressor → CAS, computing
// the diff_id (SHA-256 of the tar) and the blob digest in the same single pass. The compressed
// bytes are spooled to an unlinked temporary file (the CAS API takes the digest before the
// bytes), then streamed into the CAS: memory use is bounded by the compressor's buffers
// whatever the layer's size.
//
// UnpackLayerBlob: CAS blob → (digest check) → decompressor (gzip/zstd/plain, detected) →
// (diff_id check) → safe unpacker into an overlay lowerdir. A mismatch of either digest is an
// error and the caller discards the directory.
//
//   worker::layer::WriteOptions opts;
//   opts.compression.compression = oci::Compression::kZstd;
//   opts.source_date_epoch = 1700000000;
//   ASSIGN_OR_RETURN(worker::layer::WrittenLayer l, worker::layer::WriteLayerFromDir(upper, opts,
//   cas.get())); if (!l.empty) use(l.blob.OciString(), l.diff_id.OciString());
//   ASSIGN_OR_RETURN(int64_t bytes, worker::layer::UnpackLayerBlob(cas.get(), l.blob, l.diff_id,
//   dir));
#ifndef FARM_WORKER_LAYER_LAYER_IO_H_
#define FARM_WORKER_LAYER_LAYER_IO_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "cache/blob_store.h"
#include "common/digest.h"
#include "oci/compression.h"
#include "worker/layer/diff.h"

namespace farm::worker::layer {

struct WriteOptions {
  oci::CompressionOptions compression;
  // SOURCE_DATE_EPOCH: mtimes newer than it are clamped to it.
  std::optional<int64_t> source_date_epoch;
  // Rewrite the directory on disk to match the tar (see DiffOptions::normalize_tree).
  bool normalize_tree = false;
  // Directory for the spool file (same disk as the layer store, ideally). Default: $TMPDIR.
  std::string spool_dir;
  // False: the blob is not stored in the CAS; WrittenLayer.spool_fd holds it instead (the
  // caller stores it, e.g. with BlobStore::WriteBlobFromFd, and closes the descriptor).
  bool store = true;
  // With store == false and no compression, false: nothing is spooled either, the tar is only
  // hashed; the caller stores it later from the same, unchanged tree (StoreLayerFromDir).
  bool spool = true;
};

struct WrittenLayer {
  bool empty = true;       // no entries: nothing was uploaded, the step changed nothing
  common::Digest blob;     // the compressed blob as stored in the CAS
  common::Digest diff_id;  // SHA-256 of the uncompressed tar; size_bytes = its length
  std::string media_type;
  DiffStats stats;
  absl::Duration upload_time;  // of the whole call, the part spent storing the blob in the CAS
  // WriteOptions.store == false and not empty: a descriptor of the unlinked spool file whose
  // first blob.size_bytes bytes are the blob; the caller owns it. Else -1.
  int spool_fd = -1;
};

absl::StatusOr<WrittenLayer> WriteLayerFromDir(const std::string& dir, const WriteOptions& options,
                                               cache::BlobStore* cas);

// Stores the uncompressed layer `blob` by archiving `dir` again (the tree WriteLayerFromDir
// hashed, since normalized, and not changed: nothing here modifies it), unless the CAS has it.
// The CAS verifies the bytes: a tree that changed fails with INVALID_ARGUMENT and stores
// nothing.
absl::Status StoreLayerFromDir(const std::string& dir, const common::Digest& blob,
                               const WriteOptions& options, cache::BlobStore* cas);

struct UnpackedLayer {
  int64_t disk_bytes = 0;  // approximate bytes on disk
  oci::Compression format = oci::Compression::kNone;
};

// The bound on a layer's uncompressed size: a small gzip or zstd blob can expand to terabytes
// (a decompression bomb), and the unpacker would write all of it to the worker's disk.
struct UnpackLimits {
  int64_t max_uncompressed_bytes = 0;  // the tar stream; <= 0: no bound
  // How the operator changes the bound, named in the error.
  std::string setting = "extract-max-size";
};

// Unpacks blob `blob` into `dest` (an existing empty directory). `diff_id`: the expected digest
// of the uncompressed tar (its size_bytes is not checked when 0). NOT_FOUND if the blob is not in
// the CAS; DATA_LOSS if the bytes do not hash to `blob`; INVALID_ARGUMENT if the tar does not
// hash to `diff_id` or an entry is unsafe (the message names the entry); RESOURCE_EXHAUSTED
// (naming the layer, the bound and `limits.setting`) if the tar is, or the descriptor says it
// is, larger than `limits.max_uncompressed_bytes`: unpacking stops there and the caller
// discards `dest`.
absl::StatusOr<UnpackedLayer> UnpackLayerBlob(cache::BlobStore* cas, const common::Digest& blob,
                                              const common::Digest& diff_id,
                                              const std::string& dest,
                                              const UnpackLimits& limits = {});

}  // namespace farm::worker::layer

#endif  // FARM_WORKER_LAYER_LAYER_IO_H_
