#include "oci/media_types.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace farm::oci {

std::string ManifestAcceptHeader() {
  return absl::StrJoin({kOciManifest, kOciIndex, kDockerManifest, kDockerManifestList}, ", ");
}

bool IsIndexMediaType(absl::string_view t) { return t == kOciIndex || t == kDockerManifestList; }
bool IsManifestMediaType(absl::string_view t) { return t == kOciManifest || t == kDockerManifest; }

absl::StatusOr<Compression> LayerCompression(absl::string_view t) {
  if (t == kOciLayer || t == kDockerLayer) return Compression::kNone;
  if (t == kOciLayerGzip || t == kDockerLayerGzip) return Compression::kGzip;
  if (t == kOciLayerZstd) return Compression::kZstd;
  if (t == kDockerForeignLayerGzip || absl::StrContains(t, "nondistributable")) {
    return absl::InvalidArgumentError(
        absl::StrCat("layer media type ", t,
                     " is a foreign (non-distributable) layer, which Farm does not "
                     "support"));
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown layer media type \"", t, "\""));
}

std::string LayerMediaType(Compression c, bool docker) {
  switch (c) {
    case Compression::kNone:
      return docker ? kDockerLayer : kOciLayer;
    case Compression::kGzip:
      return docker ? kDockerLayerGzip : kOciLayerGzip;
    case Compression::kZstd:
      return kOciLayerZstd;
  }
  return kOciLayer;
}

std::string ConvertLayerMediaType(absl::string_view t, bool to_docker) {
  absl::StatusOr<Compression> c = LayerCompression(t);
  if (!c.ok()) return std::string(t);
  return LayerMediaType(*c, to_docker);
}

}  // namespace farm::oci
