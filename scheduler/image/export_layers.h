// Compressing an image's layers for export, once.
//
// A build may keep its layers uncompressed (LayerOptions.export_compression: the default of
// `farm build` and `farm submit`): nothing is deflated while the edit-rebuild loop runs, and a
// layer's blob digest is its diff_id. What leaves Farm (a registry push, an OCI layout) gets
// the compressed form here: each uncompressed layer is compressed with the requested options,
// the manifests (and index) are rewritten and stored in the CAS, and the result is the record
// an eagerly compressed build would have made, byte for byte: the same tar through the same
// deterministic compressor gives the same blob, and the manifest is the canonical JSON of the
// same descriptors. Each conversion is remembered in the action cache (keyed by the layer's
// diff_id and the compression), so exporting the same layer again costs one lookup.
//
//   image::LayerExportOptions o;
//   o.compression.compression = oci::Compression::kGzip;
//   o.memo = ac.get();
//   ASSIGN_OR_RETURN(image::ImageRecord out, image::CompressLayersForExport(*cas, record, o));
//   // push `out`
#ifndef FARM_SCHEDULER_IMAGE_EXPORT_LAYERS_H_
#define FARM_SCHEDULER_IMAGE_EXPORT_LAYERS_H_

#include <string>

#include "absl/status/statusor.h"
#include "cache/action_cache.h"
#include "cache/blob_store.h"
#include "oci/compression.h"
#include "scheduler/image/store.h"

namespace farm::scheduler::image {

struct LayerExportOptions {
  oci::CompressionOptions compression;
  // Remembers conversions (may be null: every export compresses again).
  cache::ActionCache* memo = nullptr;
  std::string memo_scope = "farm/layer-exports";
  // Where compressed bytes are spooled before they enter the CAS ("" = $TMPDIR).
  std::string spool_dir;
};

// Whether any layer of `record` is stored uncompressed (then export compresses it).
bool HasUncompressedLayers(const ImageRecord& record);

// `record` with every uncompressed layer compressed (see above); layers already compressed
// are kept as they are. A record without uncompressed layers is returned unchanged. The new
// manifest, index and layer blobs are written into `cas`. NOT_FOUND naming a missing blob;
// INVALID_ARGUMENT for zstd with a Docker-format manifest.
absl::StatusOr<ImageRecord> CompressLayersForExport(cache::BlobStore& cas,
                                                    const ImageRecord& record,
                                                    const LayerExportOptions& options);

// The action-cache key of the conversion of `diff_id` with `compression`.
common::Digest LayerExportKey(const std::string& diff_id, const oci::CompressionOptions& c);

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_EXPORT_LAYERS_H_
