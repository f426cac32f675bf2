// TarReader: a push-based tar parser (bytes in through common::ByteSink::Write, entries out through
// a handler), so a layer streams from the CAS through the decompressor into the unpacker without a
// thread per pipe or the whole layer in memory.
//
// Reads what registries serve: POSIX ustar with PAX extended headers (path, linkpath, size,
// uid, gid, mtime, SCHILY.xattr.*), GNU long names and links (`L`/`K`), GNU base-256 numbers,
// old v7 headers. Global PAX headers are skipped; sparse entries are rejected (no image writer
// produces them). Names are passed through byte for byte (no locale conversion).
//
//   class Printer : public worker::layer::TarEntryHandler { ... };
//   Printer p;
//   worker::layer::TarReader reader(&p);
//   RETURN_IF_ERROR(reader.Write(bytes));   // any chunking
//   RETURN_IF_ERROR(reader.Finish());
#ifndef FARM_WORKER_LAYER_TAR_READER_H_
#define FARM_WORKER_LAYER_TAR_READER_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/byte_sink.h"
#include "worker/layer/tar_writer.h"

namespace farm::worker::layer {

class TarEntryHandler {
 public:
  virtual ~TarEntryHandler() = default;
  // The next entry. `header.name` is as stored (a directory's trailing "/" removed).
  virtual absl::Status OnEntry(const TarHeader& header) = 0;
  // Content of the current regular file, in order (header.size bytes in all).
  virtual absl::Status OnData(absl::string_view data) = 0;
  // After the last OnData of the current entry (for every entry).
  virtual absl::Status OnEntryEnd() = 0;
};

class TarReader : public common::ByteSink {
 public:
  explicit TarReader(TarEntryHandler* handler) : handler_(handler) {}

  absl::Status Write(absl::string_view data) override;
  // INVALID_ARGUMENT if the stream stops inside an entry. A stream that ends at an entry
  // boundary without the end-of-archive blocks is accepted (as Go's reader does).
  absl::Status Finish();
  // True once the end-of-archive marker was seen (later bytes are ignored).
  bool at_end() const { return state_ == State::kEnd; }
  int64_t entries() const { return entries_; }

 private:
  enum class State { kHeader, kData, kPadding, kExtended, kSkip, kEnd };
  absl::Status OnHeaderBlock();
  absl::Status ParsePax(const std::string& body, bool global);
  absl::Status Fail(absl::string_view what) const;

  TarEntryHandler* handler_;
  State state_ = State::kHeader;
  std::string block_;  // partial header block
  int64_t remaining_ = 0;
  int64_t padding_ = 0;
  char extended_type_ = 0;
  std::string extended_;  // body of a PAX or GNU long-name entry being collected
  bool saw_zero_block_ = false;
  int64_t offset_ = 0;  // stream offset, for error messages
  int64_t entries_ = 0;

  // Overrides for the next entry from PAX records and GNU long names.
  bool has_path_ = false, has_linkpath_ = false, has_size_ = false, has_uid_ = false,
       has_gid_ = false, has_mtime_ = false;
  std::string path_, linkpath_;
  int64_t size_ = 0, uid_ = 0, gid_ = 0, mtime_ = 0;
  std::vector<std::pair<std::string, std::string>> xattrs_;
  int64_t pending_extended_ = 0;  // extended-header bytes read since the last entry
};

}  // namespace farm::worker::layer

#endif  // FARM_WORKER_LAYER_TAR_READER_H_
