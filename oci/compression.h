// Streaming layer (de)compression and layer digests, so a layer of any size flows through in
// bounded memory (a few hundred KiB of buffers) while its digests are computed.
//
//   ASSIGN_OR_RETURN(auto d, image::Decompressor::Create(image::Compression::kGzip));
//   RETURN_IF_ERROR(d->Update(chunk, sink));   // sink gets uncompressed chunks
//   RETURN_IF_ERROR(d->Finish(sink));          // INVALID_ARGUMENT if the stream is truncated
//
//   image::LayerDigester ld(image::Compression::kGzip);   // digest + diff_id in one pass
//   RETURN_IF_ERROR(ld.Update(chunk)); ...
//   ASSIGN_OR_RETURN(image::LayerDigests got, ld.Finish());
#ifndef FARM_OCI_COMPRESSION_H_
#define FARM_OCI_COMPRESSION_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"
#include "oci/manifest.h"

namespace image {

using ChunkSink = std::function<absl::Status(absl::string_view chunk)>;

// Not thread-safe. Errors from the sink are returned as they are.
class Decompressor {
 public:
  virtual ~Decompressor() = default;
  static absl::StatusOr<std::unique_ptr<Decompressor>> Create(Compression compression);
  virtual absl::Status Update(absl::string_view in, const ChunkSink& out) = 0;
  // INVALID_ARGUMENT if the input ended in the middle of a stream.
  virtual absl::Status Finish(const ChunkSink& out) = 0;
};

class Compressor {
 public:
  virtual ~Compressor() = default;
  // level 0: the codec's default (gzip 6, zstd 3). Output is deterministic for a given input,
  // level and library version (gzip header mtime 0).
  static absl::StatusOr<std::unique_ptr<Compressor>> Create(Compression compression, int level = 0);
  virtual absl::Status Update(absl::string_view in, const ChunkSink& out) = 0;
  virtual absl::Status Finish(const ChunkSink& out) = 0;
};

// Sniffs the compression from a stream's first bytes (gzip 1f8b, zstd 28b52ffd).
Compression DetectCompression(absl::string_view head);

struct LayerDigests {
  common::Digest digest;   // of the bytes as given (compressed)
  common::Digest diff_id;  // of the uncompressed tar; size_bytes is the uncompressed size
};

// Computes a layer's digest and diff_id in one pass over its stored (compressed) bytes. With
// `hash_stored` false only the diff_id is computed (digest stays empty) for callers whose sink
// verifies the stored bytes anyway (a CAS writer). An uncompressed layer is hashed once: its
// digest is its diff_id.
class LayerDigester {
 public:
  explicit LayerDigester(Compression compression, bool hash_stored = true);
  absl::Status Update(absl::string_view chunk);
  absl::StatusOr<LayerDigests> Finish();

 private:
  common::Sha256 stored_;
  common::Sha256 uncompressed_;
  bool hash_stored_;
  bool uncompressed_input_;
  std::unique_ptr<Decompressor> decompressor_;
  absl::Status status_;
};

// A LayerDigester running on its own thread: Update copies the chunk into a bounded queue
// (at most `max_queued_bytes`, then it waits) and returns, so decompressing and hashing overlap
// with whatever the caller does with the bytes (network, CAS writes) on a second core. An error
// of the digester is returned by the next Update or by Finish. Not thread-safe (one producer).
class AsyncLayerDigester {
 public:
  explicit AsyncLayerDigester(Compression compression, bool hash_stored = true,
                              size_t max_queued_bytes = 16 << 20);
  ~AsyncLayerDigester();
  AsyncLayerDigester(const AsyncLayerDigester&) = delete;
  AsyncLayerDigester& operator=(const AsyncLayerDigester&) = delete;

  absl::Status Update(absl::string_view chunk);
  absl::StatusOr<LayerDigests> Finish();

 private:
  struct Shared;
  std::unique_ptr<Shared> shared_;
};

}  // namespace image

#endif  // FARM_OCI_COMPRESSION_H_
