// What `farm build` does with a built image besides naming it: the --output exporters
// (OCI layout, docker-archive, a local directory with the root filesystem), --metadata-file,
// and reading a build context given as a tar on stdin (`farm build -`).
#ifndef FARM_CLI_BUILD_OUTPUTS_H_
#define FARM_CLI_BUILD_OUTPUTS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "scheduler/image/store.h"
#include "worker/layerstore/layer_store.h"

namespace farm::cli {

// One --output/-o value: "type=oci,dest=out.tar", "type=docker,dest=-",
// "type=local,dest=rootfs", "type=image" (the default: the local image store), or a bare path
// (= type=local,dest=PATH, as docker does).
struct OutputSpec {
  std::string type;  // oci | docker | local | image
  std::string dest;  // "-" = stdout (oci, docker); a directory (local)
  bool tar = true;   // oci: false writes an OCI layout directory instead of a tar
  std::string name;  // docker/oci: the image name to record in the archive (default: the tags)
};

// INVALID_ARGUMENT naming the bad field.
absl::StatusOr<OutputSpec> ParseOutputSpec(const std::string& text);

// Writes `record` (its blobs in `cas`) as `spec` says. `tags` are recorded in archives.
// `layers` (bottom to top) is the image's layer chain, for type=local, unpacked through
// `layer_store`.
absl::Status ExportImage(const OutputSpec& spec, cache::BlobStore& cas,
                         const scheduler::image::ImageRecord& record,
                         const std::vector<oci::Reference>& tags,
                         const std::vector<farm::v1::Layer>& layers,
                         worker::layerstore::LayerStore* layer_store);

// Copies the root filesystem that `layers` stack up into `dest` (created; must be empty or
// absent): files with their modes, owners (as root) and mtimes, symlinks, directories;
// whiteouts applied; hard links within the image become hard links.
absl::Status ExportRootfs(worker::layerstore::LayerStore& store,
                          const std::vector<farm::v1::Layer>& layers, const std::string& dest);

// --metadata-file: buildx's keys (containerimage.config.digest, containerimage.digest,
// containerimage.descriptor, image.name, buildx.build.ref) as JSON.
std::string BuildMetadataJson(const std::string& config_digest, const std::string& manifest_digest,
                              const std::string& manifest_media_type, int64_t manifest_size,
                              const std::vector<std::string>& names, const std::string& build_id);

// Extracts a tar stream (plain, gzip, bzip2, xz or zstd) read from `fd` into `dest` (created),
// refusing entries that escape it (absolute paths, "..", links pointing out). Returns the
// number of entries.
absl::StatusOr<int64_t> ExtractContextTar(int fd, const std::string& dest);

}  // namespace farm::cli

#endif  // FARM_CLI_BUILD_OUTPUTS_H_
