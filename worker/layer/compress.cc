#include "worker/layer/compress.h"

#include <libdeflate.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"

namespace layer {

const char* LayerMediaType(Compression c) {
  switch (c) {
    case Compression::kGzip:
      return "application/vnd.oci.image.layer.v1.tar+gzip";
    case Compression::kZstd:
      return "application/vnd.oci.image.layer.v1.tar+zstd";
    case Compression::kNone:
      break;
  }
  return "application/vnd.oci.image.layer.v1.tar";
}

const char* CompressionName(Compression c) {
  switch (c) {
    case Compression::kGzip:
      return "gzip";
    case Compression::kZstd:
      return "zstd";
    case Compression::kNone:
      break;
  }
  return "none";
}

namespace {

int ThreadCount(int requested) {
  if (requested > 0) return requested;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

class PassThrough : public Compressor {
 public:
  explicit PassThrough(ByteSink* out) : out_(out) {}
  absl::Status Write(absl::string_view data) override { return out_->Write(data); }
  absl::Status Finish() override { return absl::OkStatus(); }

 private:
  ByteSink* out_;
};

// Parallel gzip: fixed-size input chunks, each a complete gzip member compressed by libdeflate on
// a worker thread; members are written to `out` in input order by the producer thread.
class ParallelGzip : public Compressor {
 public:
  static constexpr size_t kChunk = 1 << 20;

  ParallelGzip(int level, int threads, ByteSink* out)
      : level_(level), threads_(threads), out_(out) {
    if (threads_ > 1) {
      for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
    }
  }

  ~ParallelGzip() override {
    {
      absl::MutexLock lock(&mu_);
      shutdown_ = true;
    }
    for (std::thread& t : workers_) t.join();
    if (inline_compressor_ != nullptr) libdeflate_free_compressor(inline_compressor_);
  }

  absl::Status Write(absl::string_view data) override {
    RETURN_IF_ERROR(error_);
    while (!data.empty()) {
      if (current_.capacity() < kChunk) current_.reserve(kChunk);
      size_t n = std::min(data.size(), kChunk - current_.size());
      current_.append(data.data(), n);
      data.remove_prefix(n);
      if (current_.size() == kChunk) {
        error_ = Submit(std::move(current_));
        current_ = std::string();
        RETURN_IF_ERROR(error_);
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    RETURN_IF_ERROR(error_);
    if (!current_.empty() || !wrote_any_) {
      error_ = Submit(std::move(current_));
      current_ = std::string();
      RETURN_IF_ERROR(error_);
    }
    error_ = DrainAll();
    return error_;
  }

 private:
  struct Job {
    std::string input;
    std::string output;
    bool done = false;
  };

  static std::string Compress(libdeflate_compressor* c, const std::string& in) {
    std::string out;
    out.resize(libdeflate_gzip_compress_bound(c, in.size()));
    size_t n = libdeflate_gzip_compress(c, in.data(), in.size(), &out[0], out.size());
    out.resize(n);  // n > 0: the bound is always enough
    return out;
  }

  absl::Status Submit(std::string chunk) {
    wrote_any_ = true;
    if (threads_ <= 1) {
      if (inline_compressor_ == nullptr) inline_compressor_ = libdeflate_alloc_compressor(level_);
      if (inline_compressor_ == nullptr)
        return absl::ResourceExhaustedError("libdeflate: no memory");
      return out_->Write(Compress(inline_compressor_, chunk));
    }
    auto job = std::make_shared<Job>();
    job->input = std::move(chunk);
    {
      absl::MutexLock lock(&mu_);
      jobs_.push_back(job);
      pending_.push_back(job);
    }
    // Write finished members in order; block only to bound memory (two chunks per thread).
    while (true) {
      std::shared_ptr<Job> front;
      {
        absl::MutexLock lock(&mu_);
        if (jobs_.empty()) break;
        if (jobs_.size() < static_cast<size_t>(2 * threads_) && !jobs_.front()->done) break;
        mu_.Await(absl::Condition(
            +[](Job* j) { return j->done; }, jobs_.front().get()));
        front = jobs_.front();
        jobs_.pop_front();
      }
      RETURN_IF_ERROR(out_->Write(front->output));
    }
    return absl::OkStatus();
  }

  absl::Status DrainAll() {
    while (true) {
      std::shared_ptr<Job> front;
      {
        absl::MutexLock lock(&mu_);
        if (jobs_.empty()) return absl::OkStatus();
        mu_.Await(absl::Condition(
            +[](Job* j) { return j->done; }, jobs_.front().get()));
        front = jobs_.front();
        jobs_.pop_front();
      }
      RETURN_IF_ERROR(out_->Write(front->output));
    }
  }

  void WorkerLoop() {
    libdeflate_compressor* c = libdeflate_alloc_compressor(level_);
    while (true) {
      std::shared_ptr<Job> job;
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](ParallelGzip* self) { return self->shutdown_ || !self->pending_.empty(); }, this));
        if (pending_.empty()) break;  // shutdown
        job = pending_.front();
        pending_.pop_front();
      }
      std::string out = c != nullptr ? Compress(c, job->input) : std::string();
      absl::MutexLock lock(&mu_);
      job->output = std::move(out);
      job->input = std::string();
      job->done = true;
    }
    if (c != nullptr) libdeflate_free_compressor(c);
  }

  const int level_;
  const int threads_;
  ByteSink* const out_;
  std::string current_;
  bool wrote_any_ = false;
  absl::Status error_;
  libdeflate_compressor* inline_compressor_ = nullptr;

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);     // in output order
  std::deque<std::shared_ptr<Job>> pending_ ABSL_GUARDED_BY(mu_);  // not yet picked up
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

class ZstdCompressor : public Compressor {
 public:
  static absl::StatusOr<std::unique_ptr<Compressor>> Create(int level, int threads, ByteSink* out) {
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    if (cctx == nullptr) return absl::ResourceExhaustedError("zstd: cannot create context");
    std::unique_ptr<ZstdCompressor> c(new ZstdCompressor(cctx, out));
    RETURN_IF_ERROR(c->Set(ZSTD_c_compressionLevel, level));
    // nbWorkers >= 1 makes the output independent of the number of workers (zstd >= 1.5).
    RETURN_IF_ERROR(c->Set(ZSTD_c_nbWorkers, threads));
    return std::unique_ptr<Compressor>(std::move(c));
  }

  ~ZstdCompressor() override { ZSTD_freeCCtx(cctx_); }

  absl::Status Write(absl::string_view data) override {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      RETURN_IF_ERROR(Step(&in, ZSTD_e_continue, nullptr));
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    ZSTD_inBuffer in{nullptr, 0, 0};
    size_t remaining = 1;
    while (remaining != 0) RETURN_IF_ERROR(Step(&in, ZSTD_e_end, &remaining));
    return absl::OkStatus();
  }

 private:
  ZstdCompressor(ZSTD_CCtx* cctx, ByteSink* out)
      : cctx_(cctx), out_(out), buffer_(ZSTD_CStreamOutSize()) {}

  absl::Status Set(ZSTD_cParameter p, int value) {
    size_t r = ZSTD_CCtx_setParameter(cctx_, p, value);
    if (ZSTD_isError(r)) {
      return absl::InvalidArgumentError(absl::StrCat("zstd: parameter ", static_cast<int>(p), "=",
                                                     value, ": ", ZSTD_getErrorName(r)));
    }
    return absl::OkStatus();
  }

  absl::Status Step(ZSTD_inBuffer* in, ZSTD_EndDirective mode, size_t* remaining) {
    ZSTD_outBuffer out{buffer_.data(), buffer_.size(), 0};
    size_t r = ZSTD_compressStream2(cctx_, &out, in, mode);
    if (ZSTD_isError(r)) return absl::InternalError(absl::StrCat("zstd: ", ZSTD_getErrorName(r)));
    if (remaining != nullptr) *remaining = r;
    if (out.pos > 0) return out_->Write(absl::string_view(buffer_.data(), out.pos));
    return absl::OkStatus();
  }

  ZSTD_CCtx* cctx_;
  ByteSink* out_;
  std::vector<char> buffer_;
};

// ---- decompression ----

class GzipInflater {
 public:
  GzipInflater() : buffer_(1 << 18) {
    std::memset(&z_, 0, sizeof(z_));
    inflateInit2(&z_, 15 + 16);
  }
  ~GzipInflater() { inflateEnd(&z_); }

  absl::Status Write(absl::string_view data, ByteSink* out) {
    z_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    z_.avail_in = static_cast<uInt>(data.size());
    while (z_.avail_in > 0) {
      if (member_done_) {
        // Another member follows: it must start with the gzip magic.
        inflateReset(&z_);
        member_done_ = false;
      }
      z_.next_out = reinterpret_cast<Bytef*>(buffer_.data());
      z_.avail_out = static_cast<uInt>(buffer_.size());
      int r = inflate(&z_, Z_NO_FLUSH);
      size_t produced = buffer_.size() - z_.avail_out;
      if (produced > 0) RETURN_IF_ERROR(out->Write(absl::string_view(buffer_.data(), produced)));
      if (r == Z_STREAM_END) {
        member_done_ = true;
      } else if (r != Z_OK && r != Z_BUF_ERROR) {
        return absl::InvalidArgumentError(
            absl::StrCat("gzip: ", z_.msg != nullptr ? z_.msg : "corrupt data", " (code ", r, ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Finish(ByteSink* out) {
    // Flush whatever is still buffered inside zlib.
    while (!member_done_) {
      z_.next_in = nullptr;
      z_.avail_in = 0;
      z_.next_out = reinterpret_cast<Bytef*>(buffer_.data());
      z_.avail_out = static_cast<uInt>(buffer_.size());
      int r = inflate(&z_, Z_FINISH);
      size_t produced = buffer_.size() - z_.avail_out;
      if (produced > 0) RETURN_IF_ERROR(out->Write(absl::string_view(buffer_.data(), produced)));
      if (r == Z_STREAM_END) {
        member_done_ = true;
        break;
      }
      if (produced == 0) return absl::InvalidArgumentError("gzip: unexpected end of stream");
    }
    return absl::OkStatus();
  }

 private:
  z_stream z_;
  std::vector<char> buffer_;
  bool member_done_ = false;
};

class ZstdInflater {
 public:
  ZstdInflater() : dctx_(ZSTD_createDCtx()), buffer_(ZSTD_DStreamOutSize()) {}
  ~ZstdInflater() { ZSTD_freeDCtx(dctx_); }

  absl::Status Write(absl::string_view data, ByteSink* out) {
    ZSTD_inBuffer in{data.data(), data.size(), 0};
    while (in.pos < in.size) {
      ZSTD_outBuffer o{buffer_.data(), buffer_.size(), 0};
      size_t r = ZSTD_decompressStream(dctx_, &o, &in);
      if (ZSTD_isError(r))
        return absl::InvalidArgumentError(absl::StrCat("zstd: ", ZSTD_getErrorName(r)));
      last_ = r;
      if (o.pos > 0) RETURN_IF_ERROR(out->Write(absl::string_view(buffer_.data(), o.pos)));
    }
    return absl::OkStatus();
  }

  absl::Status Finish(ByteSink* out) {
    // Drain output still held by the decoder.
    while (true) {
      ZSTD_inBuffer in{nullptr, 0, 0};
      ZSTD_outBuffer o{buffer_.data(), buffer_.size(), 0};
      size_t r = ZSTD_decompressStream(dctx_, &o, &in);
      if (ZSTD_isError(r))
        return absl::InvalidArgumentError(absl::StrCat("zstd: ", ZSTD_getErrorName(r)));
      if (o.pos == 0) break;  // nothing buffered: `r` only hints at a next frame
      last_ = r;
      RETURN_IF_ERROR(out->Write(absl::string_view(buffer_.data(), o.pos)));
    }
    if (last_ != 0) return absl::InvalidArgumentError("zstd: unexpected end of stream");
    return absl::OkStatus();
  }

 private:
  ZSTD_DCtx* dctx_;
  std::vector<char> buffer_;
  size_t last_ = 1;
};

class AutoDecompressor : public Decompressor {
 public:
  explicit AutoDecompressor(ByteSink* out) : out_(out) {}

  absl::Status Write(absl::string_view data) override {
    if (!detected_) {
      head_.append(data.data(), data.size());
      if (head_.size() < 4) return absl::OkStatus();
      Detect();
      std::string head = std::move(head_);
      return Feed(head);
    }
    return Feed(data);
  }

  absl::Status Finish() override {
    if (!detected_) {
      Detect();
      std::string head = std::move(head_);
      RETURN_IF_ERROR(Feed(head));
    }
    switch (format_) {
      case Compression::kGzip:
        return gzip_->Finish(out_);
      case Compression::kZstd:
        return zstd_->Finish(out_);
      case Compression::kNone:
        break;
    }
    return absl::OkStatus();
  }

  Compression format() const override { return format_; }

 private:
  void Detect() {
    detected_ = true;
    const unsigned char* h = reinterpret_cast<const unsigned char*>(head_.data());
    if (head_.size() >= 2 && h[0] == 0x1f && h[1] == 0x8b) {
      format_ = Compression::kGzip;
      gzip_ = std::make_unique<GzipInflater>();
    } else if (head_.size() >= 4 && h[0] == 0x28 && h[1] == 0xb5 && h[2] == 0x2f && h[3] == 0xfd) {
      format_ = Compression::kZstd;
      zstd_ = std::make_unique<ZstdInflater>();
    }
  }

  absl::Status Feed(absl::string_view data) {
    if (data.empty()) return absl::OkStatus();
    switch (format_) {
      case Compression::kGzip:
        return gzip_->Write(data, out_);
      case Compression::kZstd:
        return zstd_->Write(data, out_);
      case Compression::kNone:
        break;
    }
    return out_->Write(data);
  }

  ByteSink* out_;
  bool detected_ = false;
  std::string head_;
  Compression format_ = Compression::kNone;
  std::unique_ptr<GzipInflater> gzip_;
  std::unique_ptr<ZstdInflater> zstd_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Compressor>> Compressor::Create(const CompressionOptions& options,
                                                               ByteSink* out) {
  int threads = ThreadCount(options.threads);
  switch (options.compression) {
    case Compression::kNone:
      return std::unique_ptr<Compressor>(new PassThrough(out));
    case Compression::kGzip: {
      int level = options.level == 0 ? 6 : options.level;
      if (level < 1 || level > 12) {
        return absl::InvalidArgumentError(
            absl::StrCat("gzip compression level ", options.level, " is out of range 1..12"));
      }
      return std::unique_ptr<Compressor>(new ParallelGzip(level, threads, out));
    }
    case Compression::kZstd: {
      int level = options.level == 0 ? 3 : options.level;
      if (level < 1 || level > 19) {
        return absl::InvalidArgumentError(
            absl::StrCat("zstd compression level ", options.level, " is out of range 1..19"));
      }
      return ZstdCompressor::Create(level, threads, out);
    }
  }
  return absl::InvalidArgumentError("unknown compression");
}

std::unique_ptr<Decompressor> Decompressor::Create(ByteSink* out) {
  return std::make_unique<AutoDecompressor>(out);
}

}  // namespace layer
