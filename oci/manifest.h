// OCI image manifests and indexes (and their Docker v2 schema 2 twins): media types, the
// descriptor/manifest/index models with parsing and canonical JSON, platforms and platform
// selection from an index.
//
// Both families share one model: a Manifest is an OCI image manifest or a Docker v2 schema 2
// manifest (media_type tells which); an Index is an OCI image index or a Docker manifest list.
// Parsing validates what Farm relies on (schemaVersion 2, descriptors with valid sha256
// digests and non-negative sizes, known config/layer media types) and keeps everything else.
//
//   ASSIGN_OR_RETURN(image::Manifest m, image::Manifest::Parse(bytes, content_type));
//   for (const image::Descriptor& layer : m.layers) ...
//   ASSIGN_OR_RETURN(image::Index idx, image::Index::Parse(bytes, content_type));
//   ASSIGN_OR_RETURN(image::Descriptor d, image::SelectPlatform(idx, image::Platform::Host()));
#ifndef FARM_OCI_MANIFEST_H_
#define FARM_OCI_MANIFEST_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace image {

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

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64"
  std::string variant;       // "v8", "v7", "" ...
  std::string os_version;
  std::vector<std::string> os_features;

  // "os/arch[/variant]" with containerd's normalization (x86_64 → amd64, aarch64 → arm64,
  // arm64's default variant v8 dropped, armhf → arm/v7, ...). INVALID_ARGUMENT otherwise.
  static absl::StatusOr<Platform> Parse(absl::string_view text);
  // The platform this binary runs on (normalized), e.g. linux/amd64.
  static Platform Host();
  // Normalized "os/arch[/variant]".
  std::string String() const;
  Platform Normalized() const;

  friend bool operator==(const Platform& a, const Platform& b) {
    return a.os == b.os && a.architecture == b.architecture && a.variant == b.variant &&
           a.os_version == b.os_version && a.os_features == b.os_features;
  }
};

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:…"
  int64_t size = 0;
  std::vector<std::string> urls;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;
  std::string artifact_type;
};

struct Manifest {
  std::string media_type;  // kOciManifest or kDockerManifest
  Descriptor config;
  std::vector<Descriptor> layers;
  std::map<std::string, std::string> annotations;
  std::optional<Descriptor> subject;
  std::string artifact_type;

  // `content_type` is the HTTP Content-Type or the media type it was stored under ("" if
  // unknown: the document's own mediaType decides, and an absent one means OCI).
  static absl::StatusOr<Manifest> Parse(absl::string_view json, absl::string_view content_type);
  // Canonical JSON (sorted keys, no whitespace): the same manifest always gives the same bytes.
  std::string ToJson() const;
};

struct Index {
  std::string media_type;  // kOciIndex or kDockerManifestList
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
  std::optional<Descriptor> subject;
  std::string artifact_type;

  static absl::StatusOr<Index> Parse(absl::string_view json, absl::string_view content_type);
  std::string ToJson() const;
};

// The media type a manifest document declares: its "mediaType", else the content type given,
// else OCI manifest/index guessed from "manifests" vs "layers". INVALID_ARGUMENT for schema 1
// (unsupported: Docker removed it too) and for JSON that is not an object.
absl::StatusOr<std::string> SniffManifestMediaType(absl::string_view json,
                                                   absl::string_view content_type);

// Whether an index entry's platform satisfies `want` (os and architecture equal; variant
// equal after normalization, or unset in `want`). Attestation manifests never match.
bool PlatformMatches(const Descriptor& entry, const Platform& want);
// Picks the manifest for `want` from an index, preferring an exact variant match, then the
// best compatible one, then the first listed. NOT_FOUND "no matching manifest for linux/amd64
// in the manifest list entries" (Docker's wording) when none fits.
absl::StatusOr<Descriptor> SelectPlatform(const Index& index, const Platform& want);

}  // namespace image

#endif  // FARM_OCI_MANIFEST_H_
