// Merging a stack of overlay-form layer directories into one plain directory (what the
// stack shows when mounted), without mounting: whiteouts delete, opaque directories hide what
// is below them, the topmost entry wins. Regular files are hard-linked from the layers (no data
// is copied; the result is only ever used read-only as an overlay lowerdir), with a copy
// fallback across file systems.
//
//   RETURN_IF_ERROR(worker::layerstore::MergeLayers({bottom_root, ..., top_root}, dest));
#ifndef FARM_WORKER_LAYERSTORE_FLATTEN_H_
#define FARM_WORKER_LAYERSTORE_FLATTEN_H_

#include <sys/stat.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace farm::worker::layerstore {

// `roots` bottom first; `dest` exists and is empty. Returns the number of entries written.
absl::StatusOr<int64_t> MergeLayers(const std::vector<std::string>& roots, const std::string& dest);

// True if `path` is an overlay whiteout (0/0 char device or xattr whiteout).
bool IsOverlayWhiteout(const std::string& path, const struct stat& st);
// True if directory `path` carries trusted.overlay.opaque=y.
bool IsOverlayOpaque(const std::string& path);

}  // namespace farm::worker::layerstore

#endif  // FARM_WORKER_LAYERSTORE_FLATTEN_H_
