// Layer compression: gzip (compatible with every registry and runtime) and zstd (faster, smaller),
// as streaming ByteSinks, plus an auto-detecting decompressor for unpacking.
//
// Gzip uses every core: the uncompressed stream is cut into fixed 1 MiB chunks, each compressed
// independently (libdeflate) into a complete gzip member, and the members are written in order.
// A concatenation of gzip members is one valid gzip file (RFC 1952 §2.2; Go's, zlib's, pigz's
// and busybox's readers all accept it). The chunk boundaries depend only on the input, so the
// output is the same bytes whatever the number of cores.
//
// Zstd uses libzstd's own worker threads; with nbWorkers >= 1 its output does not depend on the
// number of workers either, so it is always run with at least one.
//
//   layer::FileSink out(fd);
//   ASSIGN_OR_RETURN(auto gz, layer::Compressor::Create({layer::Compression::kGzip}, &out));
//   RETURN_IF_ERROR(gz->Write(tar_bytes));  // many times
//   RETURN_IF_ERROR(gz->Finish());
#ifndef FARM_WORKER_LAYER_COMPRESS_H_
#define FARM_WORKER_LAYER_COMPRESS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "worker/layer/byte_sink.h"

namespace layer {

enum class Compression { kNone, kGzip, kZstd };

struct CompressionOptions {
  Compression compression = Compression::kGzip;
  // 0 = the default (gzip 6, zstd 3). gzip: 1..12 (libdeflate's scale; 1..9 mean what zlib's
  // do), zstd: 1..19.
  int level = 0;
  // Worker threads; 0 = every core (std::thread::hardware_concurrency()).
  int threads = 0;
};

// OCI media type of a layer compressed with `c`.
const char* LayerMediaType(Compression c);
// "gzip", "zstd", "none".
const char* CompressionName(Compression c);

// Compresses what is written to it into `out`. Not thread-safe (one producer); internally
// parallel. Finish() must be called once after the last Write.
class Compressor : public ByteSink {
 public:
  // INVALID_ARGUMENT for an out-of-range level. `out` must outlive the compressor.
  static absl::StatusOr<std::unique_ptr<Compressor>> Create(const CompressionOptions& options,
                                                            ByteSink* out);
  virtual absl::Status Finish() = 0;
};

// Decompresses gzip (one or more members), zstd (one or more frames) or passes plain data
// through, recognizing the format by its magic bytes. Finish() reports a truncated stream as
// INVALID_ARGUMENT.
class Decompressor : public ByteSink {
 public:
  static std::unique_ptr<Decompressor> Create(ByteSink* out);
  virtual absl::Status Finish() = 0;
  // The format seen (valid after the first 4 bytes or Finish).
  virtual Compression format() const = 0;
};

}  // namespace layer

#endif  // FARM_WORKER_LAYER_COMPRESS_H_
