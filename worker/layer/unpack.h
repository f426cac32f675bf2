// Unpacking a layer tar into a directory in overlayfs lowerdir form, safely.
//
// The result can be stacked directly as an overlay lowerdir: OCI whiteouts become overlay
// whiteouts (`.wh.<name>` → a 0/0 character device `<name>`; `.wh..wh..opq` → the
// `trusted.overlay.opaque=y` xattr on the directory; a whiteout followed by a directory of the
// same name in the same layer → an opaque directory). Other `.wh..wh.*` AUFS bookkeeping is
// ignored.
//
// Nothing in the tar can write outside the directory: names that are absolute or climb out
// with `..` are rejected, every parent is walked with O_NOFOLLOW so no symlink (from this
// tar) is ever followed, hard-link targets must be earlier entries of the same layer, and
// whiteouts of "", "." or ".." are rejected. Symlink *targets* are not checked: they are only
// resolved inside the container's root at run time. xattrs are restricted to the ones a layer
// may carry (security.capability, user.*), so a layer cannot forge overlay's trusted.* markers.
// Owners, modes and mtimes are applied as stored (the process runs as root).
//
//   worker::layer::OverlayUnpacker unpacker(dir);        // `dir` exists and is empty
//   worker::layer::TarReader reader(&unpacker);
//   RETURN_IF_ERROR(reader.Write(tar_bytes)); RETURN_IF_ERROR(reader.Finish());
//   RETURN_IF_ERROR(unpacker.Finish());
#ifndef FARM_WORKER_LAYER_UNPACK_H_
#define FARM_WORKER_LAYER_UNPACK_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "worker/layer/tar_reader.h"

namespace farm::worker::layer {

class OverlayUnpacker : public TarEntryHandler {
 public:
  explicit OverlayUnpacker(std::string dir);
  ~OverlayUnpacker() override;

  absl::Status OnEntry(const TarHeader& header) override;
  absl::Status OnData(absl::string_view data) override;
  absl::Status OnEntryEnd() override;
  // Applies directory metadata (deepest first, after their content was written).
  absl::Status Finish();

  // Approximate bytes used on disk (content plus one block per entry).
  int64_t disk_bytes() const { return disk_bytes_; }

 private:
  struct DirMeta {
    uint32_t mode;
    int64_t uid, gid, mtime;
  };
  absl::Status Open();
  // Opens (creating missing components as 0755 root directories) the directory `rel`.
  absl::StatusOr<int> OpenDir(const std::string& rel, const std::string& entry);
  absl::Status ApplyMeta(int dirfd, const std::string& base, const TarHeader& h,
                         const std::string& entry, bool is_symlink);
  absl::Status Remove(int dirfd, const std::string& base, const std::string& entry);

  std::string dir_;
  int root_fd_ = -1;
  // One-entry cache of the parent directory of the last entry.
  std::string cached_rel_;
  int cached_fd_ = -1;
  // The regular file being written.
  int file_fd_ = -1;
  std::string file_entry_;
  TarHeader file_header_;
  std::map<std::string, DirMeta> dirs_;
  int64_t disk_bytes_ = 0;
};

// Lexical checks shared with other unpackers: cleans a tar entry name into a relative path
// ("./a//b/" → "a/b"); "" for the root itself. INVALID_ARGUMENT (naming the entry) for absolute
// names or names that leave the root.
absl::StatusOr<std::string> CleanEntryName(absl::string_view name);

}  // namespace farm::worker::layer

#endif  // FARM_WORKER_LAYER_UNPACK_H_
