// COPY and ADD: the destination side. Which files a COPY takes is select.h's (shared with the
// planner); this writes them into a new layer's tree with Docker's (BuildKit's) rules:
//
//   - The destination is resolved against ExecEnv.workdir when relative, and inside the image
//     (its symlinks followed, confined to its root). It is a directory when it ends with "/"
//     (or "/."), when it is an existing directory in the image, when several files match a
//     wildcard, or when the source is a directory. Several sources need a "/" at the end.
//   - A file lands at <dest>/<name it was matched as> in a directory destination, else at
//     <dest>; a directory's contents land in <dest>; with --parents the path below the source's
//     pivot ("/./") or root is kept. Missing parents are created (0755, the --chown owner);
//     existing ones are written as the image has them, so the layer only changes what COPY
//     wrote. With --link nothing is read from the image (parents are created).
//   - Modes: context files have what their cache key saw (the permission bits the client
//     recorded, or 0644/0755 with normalize_permissions); stage/image files keep theirs; --chmod
//     (octal) sets files and directories. Owners: 0:0 for context files, kept for stage files;
//     --chown (names resolved in the image's /etc/passwd and /etc/group, BuildKit's rules) sets
//     all. mtimes: context files get SOURCE_DATE_EPOCH (0 when unset: context digests ignore
//     mtime); stage files keep theirs (clamped to SOURCE_DATE_EPOCH later). Hard-linked
//     files (of a stage, an image or the context) stay hard-linked: written once, then linked.
//   - Heredoc sources (`COPY <<EOF /dst`, "<<EOF" in CopyOp.srcs) are files named by their
//     delimiter (0644, or --chmod).
//   - ADD: a local tar archive (plain, gzip, bzip2, xz, zstd) is extracted into <dest>
//     (owners and modes from the archive, --chown applied) unless --unpack=false; a URL
//     (http/https) is downloaded (mode 0600, mtime from Last-Modified) and checked against
//     --checksum, and is not extracted unless --unpack=true. Git URLs are not supported.
//   - A source that escapes the context is INVALID_ARGUMENT; a missing one NOT_FOUND; a bad
//     --chown name FAILED_PRECONDITION; each names the source.
//
//   worker::copy::CopyInputs in{&op, &env, &output, &ctx_tree, true, &image, out_dir, scratch,
//   fetch}; RETURN_IF_ERROR(worker::copy::BuildCopyLayer(in));   // then archive out_dir
#ifndef FARM_WORKER_COPY_COPY_OP_H_
#define FARM_WORKER_COPY_COPY_OP_H_

#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "farm/v1/step.pb.h"
#include "worker/copy/fetch.h"
#include "worker/copy/source_tree.h"
#include "worker/layerstore/file_pool.h"
#include "worker/layerstore/stack_view.h"

namespace farm::worker::copy {

struct CopyInputs {
  const farm::v1::CopyOp* op = nullptr;
  const farm::v1::ExecEnv* env = nullptr;
  const farm::v1::LayerOptions* output = nullptr;
  const SourceTree* source = nullptr;  // null when the op reads no local source
  bool source_is_context = true;       // context files: owner 0:0, mtime SOURCE_DATE_EPOCH|0
  const layerstore::StackView* image = nullptr;  // the parent file system
  std::string out_dir;      // an empty directory: receives the new layer's tree
  std::string scratch_dir;  // for downloads and archive staging
  UrlFetcher fetch;
  const absl::Notification* cancel = nullptr;
  // ADD's archive extraction: the most one archive may expand to (the sizes its entries
  // declare, sparse files at their full size, plus a tar block per entry); past it the ADD
  // fails with RESOURCE_EXHAUSTED naming the source and the extract-max-size setting.
  // <= 0: no bound.
  int64_t max_extract_bytes = 0;
  // Where unchanged context files are linked from instead of written (file_pool.h); null: every
  // file is written.
  const layerstore::FilePool* file_pool = nullptr;
};

absl::Status BuildCopyLayer(const CopyInputs& in);

// True if `path` (a host file) is a tar archive, possibly compressed (gzip, bzip2, xz, zstd).
bool IsTarArchive(const std::string& path);

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_COPY_OP_H_
