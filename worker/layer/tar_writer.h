// TarWriter: writes a tar stream the way OCI layers should be written for reproducibility:
// USTAR headers, and PAX extended headers only for what USTAR cannot hold (long or non-ASCII
// names and link targets, large ids/sizes/times, xattrs). Owners are numeric (no user or group
// names), there is no atime/ctime, and the stream ends with two zero blocks (no record padding),
// as Go's archive/tar (Docker, BuildKit, containerd) writes it.
//
//   worker::layer::TarWriter tar(&sink);
//   worker::layer::TarHeader h;
//   h.name = "etc/motd"; h.type = worker::layer::TarHeader::kRegular; h.mode = 0644; h.size = 5;
//   RETURN_IF_ERROR(tar.WriteHeader(h));
//   RETURN_IF_ERROR(tar.WriteData("hello"));
//   RETURN_IF_ERROR(tar.Finish());
//
// Not thread-safe.
#ifndef FARM_WORKER_LAYER_TAR_WRITER_H_
#define FARM_WORKER_LAYER_TAR_WRITER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/byte_sink.h"

namespace farm::worker::layer {

struct TarHeader {
  enum Type : char {
    kRegular = '0',
    kHardLink = '1',
    kSymlink = '2',
    kChar = '3',
    kBlock = '4',
    kDirectory = '5',
    kFifo = '6',
  };
  // Relative path without a leading "/" or "./"; directories are written with a trailing "/"
  // added by the writer.
  std::string name;
  Type type = kRegular;
  uint32_t mode = 0;  // permission bits with setuid/setgid/sticky (07777)
  int64_t uid = 0;
  int64_t gid = 0;
  int64_t size = 0;      // regular files only
  int64_t mtime = 0;     // Unix seconds
  std::string linkname;  // hard link target (a path in the archive) or symlink target
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  // Extended attributes (name, value), written as PAX "SCHILY.xattr.<name>" records.
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class TarWriter {
 public:
  explicit TarWriter(common::ByteSink* sink) : sink_(sink) {}

  // Writes the header of the next entry. For a regular file, exactly `size` bytes must follow
  // through WriteData before the next header.
  absl::Status WriteHeader(const TarHeader& header);
  // Writes file content of the current entry.
  absl::Status WriteData(absl::string_view data);
  // Pads the last entry and writes the end-of-archive marker (two zero blocks).
  absl::Status Finish();

  // Bytes written to the sink so far.
  int64_t bytes_written() const { return written_; }

 private:
  absl::Status Emit(absl::string_view data);
  absl::Status PadEntry();

  common::ByteSink* sink_;
  int64_t remaining_ = 0;  // content bytes still expected for the current entry
  int64_t entry_size_ = 0;
  int64_t written_ = 0;
  bool finished_ = false;
};

}  // namespace farm::worker::layer

#endif  // FARM_WORKER_LAYER_TAR_WRITER_H_
