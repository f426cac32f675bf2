// Writing a SourceTree subtree to a host directory: what RUN --mount=type=bind from the context
// and cache-mount seeds need (the sandbox can only mount host paths). Files keep the tree's
// modes, owners and mtimes; symlinks are copied as symlinks.
//
//   RETURN_IF_ERROR(worker::copy::Materialize(ctx, "src", run_dir + "/mnt0"));  // dest must not
//   exist
#ifndef FARM_WORKER_COPY_MATERIALIZE_H_
#define FARM_WORKER_COPY_MATERIALIZE_H_

#include <string>

#include "absl/status/status.h"
#include "worker/copy/source_tree.h"

namespace farm::worker::copy {

// `path`: clean relative path in `tree` (a file, symlink or directory; not followed).
absl::Status Materialize(const SourceTree& tree, const std::string& path, const std::string& dest);

// Writes the content of regular file `path` of `tree` to a new file `dest` (mode 0600; the
// caller sets metadata), using the tree's host path for an in-kernel copy when it has one.
absl::Status CopyFileContent(const SourceTree& tree, const std::string& path,
                             const std::string& dest);

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_MATERIALIZE_H_
