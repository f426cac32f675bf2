#include "worker/layer/layer_io.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <deque>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/byte_sink.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/layer/tar_reader.h"
#include "worker/layer/tar_writer.h"
#include "worker/layer/unpack.h"

namespace farm::worker::layer {
namespace {

// Hands chunks to a consumer thread through a bounded queue, so decompression and hashing
// (the producer) overlap with tar parsing and file creation (the consumer). The first error on
// either side stops both.
class ThreadedSink : public common::ByteSink {
 public:
  // `batch_bytes` > 0: small writes are gathered into chunks of about that size before they
  // cross to the consumer (a tar writer's 512-byte headers would otherwise cost a queue entry
  // each).
  explicit ThreadedSink(common::ByteSink* next, size_t batch_bytes = 0)
      : next_(next), batch_bytes_(batch_bytes), thread_([this] { Consume(); }) {}
  ~ThreadedSink() override { Close().IgnoreError(); }

  absl::Status Write(absl::string_view data) override {
    if (batch_bytes_ > 0) {
      pending_.append(data.data(), data.size());
      if (pending_.size() < batch_bytes_) return absl::OkStatus();
      return Enqueue(std::exchange(pending_, std::string()));
    }
    return Enqueue(std::string(data));
  }

  // Waits until the consumer has taken everything; returns the first error.
  absl::Status Close() {
    if (!pending_.empty()) Enqueue(std::exchange(pending_, std::string())).IgnoreError();
    {
      absl::MutexLock lock(&mu_);
      closed_ = true;
    }
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return error_;
  }

 private:
  static constexpr size_t kMaxQueued = 16;

  absl::Status Enqueue(std::string chunk) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &ThreadedSink::HasRoomOrError));
    if (!error_.ok()) return error_;
    queue_.push_back(std::move(chunk));
    return absl::OkStatus();
  }

  bool HasRoomOrError() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.size() < kMaxQueued || !error_.ok();
  }
  bool HasWorkOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || closed_ || !error_.ok();
  }

  void Consume() {
    while (true) {
      std::string chunk;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(this, &ThreadedSink::HasWorkOrDone));
        if (!error_.ok() || queue_.empty()) return;  // failed, or closed and drained
        chunk = std::move(queue_.front());
        queue_.pop_front();
      }
      absl::Status s = next_->Write(chunk);
      if (!s.ok()) {
        absl::MutexLock lock(&mu_);
        error_ = s;
        return;
      }
    }
  }

  common::ByteSink* next_;
  const size_t batch_bytes_;
  std::string pending_;  // the producer's, not shared
  absl::Mutex mu_;
  std::deque<std::string> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Appends to a BlobWriter in chunks of about 1 MiB (a tar writer's 512-byte headers would
// otherwise be an Append each).
class BlobWriterSink : public common::ByteSink {
 public:
  explicit BlobWriterSink(cache::BlobWriter* writer) : writer_(writer) {}
  absl::Status Write(absl::string_view data) override {
    buffer_.append(data.data(), data.size());
    return buffer_.size() >= (1 << 20) ? Flush() : absl::OkStatus();
  }
  absl::Status Flush() {
    if (buffer_.empty()) return absl::OkStatus();
    absl::Status s = writer_->Append(buffer_);
    buffer_.clear();
    return s;
  }

 private:
  cache::BlobWriter* writer_;
  std::string buffer_;
};

DiffOptions DiffFor(const WriteOptions& options, bool normalize_tree) {
  DiffOptions diff;
  diff.clamp_mtime = options.source_date_epoch;
  diff.normalize_tree = normalize_tree;
  return diff;
}

absl::StatusOr<WrittenLayer> HashLayerFromDir(const std::string& dir, const WriteOptions& options) {
  common::HashingSink uncompressed(nullptr);
  TarWriter tar(&uncompressed);
  DiffOptions diff = DiffFor(options, options.normalize_tree);
  WrittenLayer out;
  ASSIGN_OR_RETURN(out.stats, WriteOverlayDirAsTar(dir, diff, &tar));
  RETURN_IF_ERROR(tar.Finish());
  out.diff_id = uncompressed.Finish();
  out.blob = out.diff_id;
  out.media_type = oci::LayerMediaType(oci::Compression::kNone, /*docker=*/false);
  out.empty = out.stats.entries == 0;
  return out;
}

}  // namespace

absl::Status StoreLayerFromDir(const std::string& dir, const common::Digest& blob,
                               const WriteOptions& options, cache::BlobStore* cas) {
  if (options.compression.compression != oci::Compression::kNone) {
    return absl::InvalidArgumentError("StoreLayerFromDir stores uncompressed layers only");
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas->FindMissing({blob}));
  if (missing.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> writer, cas->BeginWrite(blob));
  BlobWriterSink sink(writer.get());
  TarWriter tar(&sink);
  // Normalized when it was hashed, and shared now: read only.
  DiffOptions diff = DiffFor(options, /*normalize_tree=*/false);
  RETURN_IF_ERROR(WriteOverlayDirAsTar(dir, diff, &tar).status());
  RETURN_IF_ERROR(tar.Finish());
  RETURN_IF_ERROR(sink.Flush());
  return writer->Commit();
}

absl::StatusOr<WrittenLayer> WriteLayerFromDir(const std::string& dir, const WriteOptions& options,
                                               cache::BlobStore* cas) {
  if (!options.store && !options.spool) {
    if (options.compression.compression != oci::Compression::kNone) {
      return absl::InvalidArgumentError("a compressed layer must be spooled or stored");
    }
    return HashLayerFromDir(dir, options);
  }
  ASSIGN_OR_RETURN(int fd, common::CreateUnlinkedTempFile(options.spool_dir, "layer-spool"));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};

  common::FdSink file(fd, "layer spool file");
  // Uncompressed, the blob is the tar: hash it once.
  bool plain = options.compression.compression == oci::Compression::kNone;
  common::HashingSink compressed(&file);
  common::ByteSink* blob_sink = plain ? static_cast<common::ByteSink*>(&file) : &compressed;
  ASSIGN_OR_RETURN(std::unique_ptr<oci::Compressor> compressor,
                   oci::Compressor::Create(options.compression, blob_sink));
  // Two threads when compressing: this one walks the tree, reads the files, writes and hashes
  // the tar; `compress` deflates, hashes and spools the blob. The bytes are the same as in one
  // thread (the compressor sees one stream, however it is cut), in about max() of the two
  // halves' time instead of their sum.
  std::optional<ThreadedSink> compress;
  if (!plain) compress.emplace(compressor.get(), /*batch_bytes=*/256 << 10);
  common::HashingSink uncompressed(plain ? static_cast<common::ByteSink*>(compressor.get())
                                         : &*compress);
  TarWriter tar(&uncompressed);
  DiffOptions diff = DiffFor(options, options.normalize_tree);
  WrittenLayer out;
  absl::StatusOr<DiffStats> stats = WriteOverlayDirAsTar(dir, diff, &tar);
  absl::Status written = stats.ok() ? tar.Finish() : stats.status();
  // The consumer's error (a full spool disk) is the real cause when both failed.
  if (compress.has_value()) RETURN_IF_ERROR(compress->Close());
  RETURN_IF_ERROR(written);
  out.stats = *stats;
  RETURN_IF_ERROR(compressor->Finish());
  out.diff_id = uncompressed.Finish();
  out.blob = plain ? out.diff_id : compressed.Finish();
  out.media_type = oci::LayerMediaType(options.compression.compression, /*docker=*/false);
  out.empty = out.stats.entries == 0;
  if (out.empty) return out;
  if (!options.store) {
    out.spool_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (out.spool_fd < 0) return common::ErrnoToStatus(errno, "keeping the layer spool file");
    return out;
  }
  const absl::Time upload_start = absl::Now();
  RETURN_IF_ERROR(common::Annotate(cas->WriteBlobFromFd(out.blob, fd),
                                   absl::StrCat("storing layer ", out.blob.OciString())));
  out.upload_time = absl::Now() - upload_start;
  return out;
}

absl::StatusOr<UnpackedLayer> UnpackLayerBlob(cache::BlobStore* cas, const common::Digest& blob,
                                              const common::Digest& diff_id,
                                              const std::string& dest, const UnpackLimits& limits) {
  std::string context = absl::StrCat("unpacking layer ", blob.OciString());
  auto too_big = [&](int64_t max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("it expands to more than ", common::HumanBinarySize(max),
                     " uncompressed, the limit per layer (", limits.setting, "; farm-worker --",
                     limits.setting, ", $FARM_HOME/sandbox.conf for farm build)"));
  };
  if (limits.max_uncompressed_bytes > 0 && diff_id.size_bytes > limits.max_uncompressed_bytes) {
    // The descriptor says so: read nothing.
    return common::Annotate(too_big(limits.max_uncompressed_bytes), context);
  }
  OverlayUnpacker unpacker(dest);
  TarReader reader(&unpacker);
  // Two threads: this one reads, verifies and decompresses; `writer` parses and creates files.
  ThreadedSink writer(&reader);
  common::HashingSink uncompressed(&writer);
  // Counted before the hash and the tar reader: the bound holds whatever the descriptor says.
  common::LimitingSink limited(&uncompressed, limits.max_uncompressed_bytes, too_big);
  std::unique_ptr<oci::Decompressor> decompressor = oci::Decompressor::Create(&limited);
  common::HashingSink compressed(decompressor.get());
  absl::Status read =
      cas->Read(blob, 0, 0, [&](absl::string_view chunk) { return compressed.Write(chunk); });
  if (read.ok()) read = decompressor->Finish();
  absl::Status written = writer.Close();
  // The consumer's error (an unsafe entry, a full disk) is the real cause when both failed.
  RETURN_IF_ERROR(common::Annotate(written, context));
  RETURN_IF_ERROR(common::Annotate(read, context));
  common::Digest got_blob = compressed.Finish();
  if (got_blob != blob) {
    return absl::DataLossError(absl::StrCat(context, ": the CAS returned bytes hashing to ",
                                            got_blob.OciString(), " (", got_blob.size_bytes,
                                            " bytes)"));
  }
  RETURN_IF_ERROR(common::Annotate(reader.Finish(), context));
  common::Digest got_diff = uncompressed.Finish();
  if (got_diff.hash != diff_id.hash ||
      (diff_id.size_bytes != 0 && got_diff.size_bytes != diff_id.size_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(context, ": its uncompressed content hashes to ", got_diff.OciString(),
                     " but the descriptor says diff_id ", diff_id.OciString()));
  }
  RETURN_IF_ERROR(common::Annotate(unpacker.Finish(), context));
  UnpackedLayer out;
  out.disk_bytes = unpacker.disk_bytes();
  out.format = decompressor->format();
  return out;
}

}  // namespace farm::worker::layer
