// Turning a directory in overlayfs "upperdir" form into the tar stream of an OCI layer.
//
// The directory holds what a step changed: new and modified entries as themselves, deletions as
// overlay whiteouts (0/0 character devices, or zero-size files carrying the
// `trusted.overlay.whiteout` xattr), and directories that replace a lower one wholesale marked
// with `trusted.overlay.opaque=y`. The tar gets:
//   - entries in a deterministic order: depth first, siblings sorted bytewise by their tar name;
//   - whiteouts as empty `.wh.<name>` files, an opaque directory as the directory followed at
//     once by its `.wh..wh..opq` marker (so appliers see it before the directory's new content);
//   - hard links (a regular file with several names in the tree) as one file and links to it;
//   - numeric owners, permission bits, mtime (clamped to `clamp_mtime` when set), no atime/ctime;
//   - the xattrs that matter in an image: `security.capability` and `user.*` (overlay's own
//     `trusted.overlay.*` bookkeeping never leaves the worker);
//   - no sockets (they cannot be archived; Docker skips them too).
// The tree's root directory itself is not an entry, as in every Docker/BuildKit layer.
//
//   worker::layer::TarWriter tar(&sink);
//   ASSIGN_OR_RETURN(worker::layer::DiffStats st, worker::layer::WriteOverlayDirAsTar(upper,
//   {epoch}, &tar)); RETURN_IF_ERROR(tar.Finish());
#ifndef FARM_WORKER_LAYER_DIFF_H_
#define FARM_WORKER_LAYER_DIFF_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "worker/layer/tar_writer.h"

namespace farm::worker::layer {

struct DiffOptions {
  // SOURCE_DATE_EPOCH: every mtime newer than it is written as it.
  std::optional<int64_t> clamp_mtime;
  // Also make the tree on disk equal to what the tar says (clamped mtimes, overlay bookkeeping
  // xattrs removed), so the directory can be kept as this layer's unpacked form in the layer
  // store instead of unpacking the tar again.
  bool normalize_tree = false;
};

struct DiffStats {
  int64_t entries = 0;     // tar entries written (0: the step changed nothing)
  int64_t file_bytes = 0;  // regular-file content bytes
};

// Writes the entries of `dir` to `tar` (without finishing it). Errors name the path.
absl::StatusOr<DiffStats> WriteOverlayDirAsTar(const std::string& dir, const DiffOptions& options,
                                               TarWriter* tar);

// True for xattrs a layer keeps (security.capability, user.* except user.overlay.*).
bool IsLayerXattr(absl::string_view name);

}  // namespace farm::worker::layer

#endif  // FARM_WORKER_LAYER_DIFF_H_
