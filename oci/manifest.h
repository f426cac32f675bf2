// OCI image manifests and indexes (and their Docker v2 schema 2 twins): the
// descriptor/manifest/index models with parsing and canonical JSON, and platform selection from
// an index (media types: media_types.h; platforms: platform.h).
//
// Both families share one model: a Manifest is an OCI image manifest or a Docker v2 schema 2
// manifest (media_type tells which); an Index is an OCI image index or a Docker manifest list.
// Parsing validates what Farm relies on (schemaVersion 2, descriptors with valid sha256
// digests and non-negative sizes, known config/layer media types) and keeps everything else.
//
//   ASSIGN_OR_RETURN(oci::Manifest m, oci::Manifest::Parse(bytes, content_type));
//   for (const oci::Descriptor& layer : m.layers) ...
//   ASSIGN_OR_RETURN(oci::Index idx, oci::Index::Parse(bytes, content_type));
//   ASSIGN_OR_RETURN(oci::Descriptor d, oci::SelectPlatform(idx, oci::Platform::Host()));
#ifndef FARM_OCI_MANIFEST_H_
#define FARM_OCI_MANIFEST_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "oci/media_types.h"
#include "oci/platform.h"

namespace farm::oci {

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

}  // namespace farm::oci

#endif  // FARM_OCI_MANIFEST_H_
