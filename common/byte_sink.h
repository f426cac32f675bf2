// ByteSink: where a stream of bytes goes (a tar stream into a compressor, compressed bytes into
// a spool file, decompressed bytes into a tar reader). Every stage of the layer pipelines is a
// ByteSink feeding the next one, so a layer is never held in memory.
//
//   class CountingSink : public common::ByteSink {
//     absl::Status Write(absl::string_view data) override { n += data.size(); return OK; }
//   };
#ifndef FARM_COMMON_BYTE_SINK_H_
#define FARM_COMMON_BYTE_SINK_H_

#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace farm::common {

class ByteSink {
 public:
  virtual ~ByteSink() = default;
  // Consumes `data` (which is only valid during the call). An error stops the stream.
  virtual absl::Status Write(absl::string_view data) = 0;
};

// Adapts a callable.
class FunctionSink : public ByteSink {
 public:
  explicit FunctionSink(std::function<absl::Status(absl::string_view)> fn) : fn_(std::move(fn)) {}
  absl::Status Write(absl::string_view data) override { return fn_(data); }

 private:
  std::function<absl::Status(absl::string_view)> fn_;
};

// Hashes (SHA-256) and counts what passes through, then forwards it to `next` (nullable).
class HashingSink : public ByteSink {
 public:
  explicit HashingSink(ByteSink* next) : next_(next) {}
  absl::Status Write(absl::string_view data) override {
    hash_.Update(data);
    return next_ == nullptr ? absl::OkStatus() : next_->Write(data);
  }
  int64_t bytes() const { return hash_.bytes(); }
  // The digest of everything written so far; resets the hash.
  Digest Finish() { return hash_.Finish(); }

 private:
  ByteSink* next_;
  Sha256 hash_;
};

// Forwards to `next` at most `max_bytes` bytes in all; the write that would pass that fails
// with `exceeded(max_bytes)` instead (nothing of it is forwarded). Exists so that a stream
// whose size nobody vouches for (a decompressed layer: a small gzip can expand to terabytes)
// stops at a bound the caller names in its error. `max_bytes` <= 0: no bound.
class LimitingSink : public ByteSink {
 public:
  LimitingSink(ByteSink* next, int64_t max_bytes,
               std::function<absl::Status(int64_t max_bytes)> exceeded)
      : next_(next), max_bytes_(max_bytes), exceeded_(std::move(exceeded)) {}
  absl::Status Write(absl::string_view data) override {
    if (max_bytes_ > 0 && static_cast<int64_t>(data.size()) > max_bytes_ - bytes_) {
      return exceeded_(max_bytes_);
    }
    bytes_ += static_cast<int64_t>(data.size());
    return next_->Write(data);
  }
  int64_t bytes() const { return bytes_; }

 private:
  ByteSink* next_;
  int64_t max_bytes_;
  std::function<absl::Status(int64_t)> exceeded_;
  int64_t bytes_ = 0;
};

}  // namespace farm::common

#endif  // FARM_COMMON_BYTE_SINK_H_
