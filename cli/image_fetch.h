// Bringing an image built on a farm into the local stores: `farm submit --load` and `-o`.
//
// FetchImage copies an image (its manifest or index, every child manifest, config and layer)
// from one BlobStore (farm-cache) into another ($FARM_HOME/cache), fetching only the blobs the
// destination lacks, several at once. Every blob is verified as it lands (the destination's
// writer checks size and SHA-256 before the blob becomes visible), so a corrupt or truncated
// transfer stores nothing. Blobs committed before an interruption stay: running it again
// fetches only the rest. An image whose blobs are all local costs one FindMissing call.
//
//   ASSIGN_OR_RETURN(cli::FetchStats st,
//                    cli::FetchImage(*remote, *local, top, {.parallel = 8, .progress = show}));
#ifndef FARM_CLI_IMAGE_FETCH_H_
#define FARM_CLI_IMAGE_FETCH_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "oci/manifest.h"

namespace farm::cli {

struct FetchStats {
  int blobs = 0;           // blobs the image holds (manifests, configs, layers)
  int layers = 0;          // of which layers
  int layers_fetched = 0;  // layers that were not local
  int blobs_fetched = 0;   // blobs that were not local (layers included)
  int64_t bytes_fetched = 0;
  int64_t bytes_total = 0;  // of every blob the image holds

  // "fetched 2 of 9 layers, 14MB", or "all 9 layers were local" (with "; fetched the
  // manifest and config (1.7kB)" when those were new: a rebuild with a new creation time).
  std::string Summary() const;
};

struct FetchOptions {
  int parallel = 8;
  // Called after each blob lands (from the fetching threads, one call at a time).
  std::function<void(const FetchStats&)> progress;
};

// NOT_FOUND naming the blob when the source lacks one; INVALID_ARGUMENT for a malformed
// manifest; the destination's verification error (naming the digest) for bad bytes.
absl::StatusOr<FetchStats> FetchImage(cache::BlobStore& source, cache::BlobStore& dest,
                                      const oci::Descriptor& top, const FetchOptions& options);

}  // namespace farm::cli

#endif  // FARM_CLI_IMAGE_FETCH_H_
