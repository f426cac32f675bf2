// Layer compression: the one streaming (de)compression stack of Farm, used by the worker (making
// and unpacking layers), image import/export and the registry client (verifying pulls), so that
// a layer of any size flows through in bounded memory while its digests are computed.
//
// Strategies, chosen by CompressionOptions:
//   gzip  parallel: the input is cut into fixed 1 MiB chunks, each compressed independently by
//         libdeflate into a complete gzip member on a worker thread, written in order. A
//         concatenation of gzip members is one valid gzip file (RFC 1952 §2.2; Go's, zlib's,
//         pigz's and busybox's readers accept it). The chunk boundaries depend only on the
//         input, so the output is the same bytes whatever the number of cores.
//   zstd  libzstd's own worker threads; with nbWorkers >= 1 its output does not depend on the
//         number of workers either, so it always runs with at least one.
//   none  passes the bytes through.
// Decompression: gzip (one or more members) with Intel ISA-L (igzip, ~1.75x zlib), zstd (one or
// more frames); the format is either the one expected (from a media type) or recognized by its
// magic bytes.
//
//   common::FileSink out(fd);
//   ASSIGN_OR_RETURN(auto gz, oci::Compressor::Create({oci::Compression::kGzip}, &out));
//   RETURN_IF_ERROR(gz->Write(tar_bytes));  // many times
//   RETURN_IF_ERROR(gz->Finish());
//
//   oci::LayerDigester ld(oci::Compression::kGzip);   // digest + diff_id in one pass
//   RETURN_IF_ERROR(ld.Update(chunk)); ...
//   ASSIGN_OR_RETURN(oci::LayerDigests got, ld.Finish());
#ifndef FARM_OCI_COMPRESSION_H_
#define FARM_OCI_COMPRESSION_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/byte_sink.h"
#include "common/digest.h"
#include "oci/manifest.h"

namespace farm::oci {

struct CompressionOptions {
  Compression compression = Compression::kGzip;
  // 0 = the default (gzip 6, zstd 3). gzip: 1..12 (libdeflate's scale; 1..9 mean what zlib's
  // do), zstd: 1..19.
  int level = 0;
  // Worker threads; 0 = every core (std::thread::hardware_concurrency()).
  int threads = 0;
};

// "gzip", "zstd", "none".
const char* CompressionName(Compression c);

// Compresses what is written to it into `out`. Not thread-safe (one producer); internally
// parallel. Finish() must be called once after the last Write. Errors of `out` are returned
// as they are.
class Compressor : public common::ByteSink {
 public:
  // INVALID_ARGUMENT for an out-of-range level. `out` must outlive the compressor.
  static absl::StatusOr<std::unique_ptr<Compressor>> Create(const CompressionOptions& options,
                                                            common::ByteSink* out);
  virtual absl::Status Finish() = 0;
};

// Decompresses what is written to it into `out`. Not thread-safe. Finish() reports a truncated
// stream as INVALID_ARGUMENT; corrupt data is INVALID_ARGUMENT from Write. Errors of `out` are
// returned as they are.
class Decompressor : public common::ByteSink {
 public:
  // Recognizes gzip and zstd by their magic bytes; anything else (and an empty stream) passes
  // through as plain data.
  static std::unique_ptr<Decompressor> Create(common::ByteSink* out);
  // Accepts only `expected` (e.g. from a layer's media type): data in another format, or an
  // empty gzip/zstd stream, is INVALID_ARGUMENT.
  static std::unique_ptr<Decompressor> Create(Compression expected, common::ByteSink* out);
  virtual absl::Status Finish() = 0;
  // The format seen (valid after the first 4 bytes or Finish).
  virtual Compression format() const = 0;
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
  common::HashingSink uncompressed_{nullptr};
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

}  // namespace farm::oci

#endif  // FARM_OCI_COMPRESSION_H_
