// Media types of the OCI image spec and of Docker's v2 schema 2, and the layer compression each
// layer type declares.
//
//   ASSIGN_OR_RETURN(oci::Compression c, oci::LayerCompression(desc.media_type));
//   std::string t = oci::LayerMediaType(oci::Compression::kGzip, /*docker=*/false);
#ifndef FARM_OCI_MEDIA_TYPES_H_
#define FARM_OCI_MEDIA_TYPES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::oci {

// Media types.
inline constexpr char kOciManifest[] = "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndex[] = "application/vnd.oci.image.index.v1+json";
inline constexpr char kOciConfig[] = "application/vnd.oci.image.config.v1+json";
inline constexpr char kOciLayer[] = "application/vnd.oci.image.layer.v1.tar";
inline constexpr char kOciLayerGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr char kOciLayerZstd[] = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr char kOciLayerNondistributableGzip[] =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
inline constexpr char kDockerManifest[] = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr char kDockerManifestList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr char kDockerConfig[] = "application/vnd.docker.container.image.v1+json";
inline constexpr char kDockerLayer[] = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr char kDockerLayerGzip[] = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr char kDockerForeignLayerGzip[] =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
inline constexpr char kDockerSchema1Signed[] =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr char kDockerSchema1[] = "application/vnd.docker.distribution.manifest.v1+json";

// What an Accept header for a manifest lists (every format Farm reads).
std::string ManifestAcceptHeader();

bool IsIndexMediaType(absl::string_view media_type);
bool IsManifestMediaType(absl::string_view media_type);

enum class Compression { kNone, kGzip, kZstd };
// The compression a layer media type declares. INVALID_ARGUMENT for a media type that is not
// a layer (or a foreign/non-distributable layer, which Farm does not fetch).
absl::StatusOr<Compression> LayerCompression(absl::string_view media_type);
// The layer media type for `compression` in the OCI (docker=false) or Docker family.
// Docker has no zstd type: Docker-format images with zstd layers use the OCI zstd type, as
// BuildKit and Docker 25+ do.
std::string LayerMediaType(Compression compression, bool docker);
// Converts a layer media type to the other family (same bytes); unknown types are kept.
std::string ConvertLayerMediaType(absl::string_view media_type, bool to_docker);

}  // namespace farm::oci

#endif  // FARM_OCI_MEDIA_TYPES_H_
