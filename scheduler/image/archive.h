// Saving images to, and loading them from, the two file formats people exchange images in:
//
//   docker-archive  what `docker save` writes and `docker load` reads. Farm writes the format
//                   of Docker 25+: manifest.json ([{Config, RepoTags, Layers}]), repositories
//                   ({"name":{"tag":"<top layer>"}}), the config and the *uncompressed* layer
//                   tars under blobs/sha256/, plus index.json, oci-layout and an OCI manifest,
//                   so the same tar is also a valid OCI layout. Every Docker since 1.10 loads
//                   it (manifest.json paths are arbitrary).
//   OCI layout      oci-layout + index.json + blobs/sha256/… with the image's blobs exactly as
//                   stored (compressed layers, original manifest: digests are preserved), as a
//                   tar or a directory. Names go in the index annotations
//                   io.containerd.image.name (full) and org.opencontainers.image.ref.name (tag).
//
// Loading accepts both (and the classic docker-archive with <id>/layer.tar and symlinks, as
// Docker < 25 and skopeo write it), plain or compressed (gzip, zstd, xz, bzip2). The tar is
// streamed into a scratch directory first (Docker does the same), so a pipe works. Every blob
// is verified on its way into the CAS: digests, and each layer's diff_id against the config;
// a mismatch names the file and stores nothing for that image. Uncompressed layers from a
// docker-archive are gzip-compressed on load (zlib level 1: fast and reproducible) so the
// image can be pushed as is.
//
//   ASSIGN_OR_RETURN(auto out, scheduler::image::LayoutWriter::Tar(fd));
//   RETURN_IF_ERROR(scheduler::image::SaveDockerArchive(*cas, {{record, {ref}}}, platform, *out));
//   RETURN_IF_ERROR(out->Close());
//   ASSIGN_OR_RETURN(auto loaded, scheduler::image::LoadArchive(*cas, fd, scratch_dir, platform));
#ifndef FARM_SCHEDULER_IMAGE_ARCHIVE_H_
#define FARM_SCHEDULER_IMAGE_ARCHIVE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "oci/compression.h"
#include "oci/manifest.h"
#include "oci/reference.h"
#include "scheduler/image/store.h"

namespace farm::scheduler::image {

// Receives a stream in chunks (the CAS's reader callback type).
using ChunkSink = cache::ReadSink;

// Destination of an image layout: a tar stream or a directory. Not thread-safe.
class LayoutWriter {
 public:
  virtual ~LayoutWriter() = default;
  // Writes a tar (ustar/pax, owner 0:0, mtime 0) to `fd`, which the caller keeps open.
  static absl::StatusOr<std::unique_ptr<LayoutWriter>> Tar(int fd);
  // Writes files under `root` (created if missing).
  static absl::StatusOr<std::unique_ptr<LayoutWriter>> Directory(const std::string& root);

  using Producer = std::function<absl::Status(const ChunkSink& sink)>;
  // Adds a regular file of exactly `size` bytes, streamed by `produce`. INTERNAL if the
  // producer writes a different number of bytes.
  virtual absl::Status AddFile(const std::string& path, int64_t size, const Producer& produce) = 0;
  virtual absl::Status AddDirectory(const std::string& path) = 0;
  // Finishes the tar (end-of-archive blocks). Nothing may be added afterwards.
  virtual absl::Status Close() = 0;
};

struct ImageToSave {
  ImageRecord record;
  std::vector<oci::Reference> tags;  // tagged references to record; may be empty
};

// docker-archive (see above). Index images contribute their `platform` manifest.
absl::Status SaveDockerArchive(cache::BlobStore& cas, const std::vector<ImageToSave>& images,
                               const oci::Platform& platform, LayoutWriter& out);
// OCI image layout (see above), blobs as stored.
absl::Status SaveOciLayout(cache::BlobStore& cas, const std::vector<ImageToSave>& images,
                           LayoutWriter& out);

struct LoadedImage {
  ImageRecord record;
  std::vector<oci::Reference> tags;  // tagged references found in the archive
};

// Loads every image of a docker-archive or OCI-layout tar read from `fd` (compressed or
// not). `scratch_dir` must not exist or be empty; it is removed afterwards. From an index,
// the `platform` image is taken. INVALID_ARGUMENT naming the entry for unsafe paths (absolute,
// "..") and for content that does not verify.
absl::StatusOr<std::vector<LoadedImage>> LoadArchive(cache::BlobStore& cas, int fd,
                                                     const std::string& scratch_dir,
                                                     const oci::Platform& platform);
// The same for an unpacked layout (docker-archive or OCI) in `dir`; `scratch_dir` receives
// temporary files (compressed layers).
absl::StatusOr<std::vector<LoadedImage>> LoadLayoutDirectory(cache::BlobStore& cas,
                                                             const std::string& dir,
                                                             const std::string& scratch_dir,
                                                             const oci::Platform& platform);

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_ARCHIVE_H_
