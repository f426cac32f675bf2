// Moving whole images between a registry and the CAS: pull (tag → manifest digest with HEAD,
// index → platform, config and layers streamed into the CAS, verified) and push (layers and
// config with HEAD/mount/upload, then the manifest under each tag). Both report progress in
// Docker's vocabulary so the CLI can print what `docker pull`/`docker push` print.
//
//   scheduler::image::PullOptions po;
//   ASSIGN_OR_RETURN(scheduler::image::PullResult r, scheduler::image::PullImage(*client, *cas,
//   ref, po)); RETURN_IF_ERROR(images->Put(r.record));
//   ASSIGN_OR_RETURN(scheduler::image::PushResult p,
//                    scheduler::image::PushImage(*client, *cas, record, target_ref, {}));
#ifndef FARM_SCHEDULER_IMAGE_TRANSFER_H_
#define FARM_SCHEDULER_IMAGE_TRANSFER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "farm/v1/step.pb.h"
#include "oci/manifest.h"
#include "oci/reference.h"
#include "scheduler/image/store.h"
#include "scheduler/registry/client.h"

namespace farm::scheduler::image {

// One progress line: `id` is a short (12 hex) layer id, or "" for an image-wide message.
// Statuses: "Pulling fs layer", "Downloading", "Verifying Checksum", "Download complete",
// "Pull complete", "Already exists"; "Preparing", "Pushing", "Pushed", "Layer already exists",
// "Mounted from <repo>". Image-wide messages are complete lines ("Digest: sha256:…").
struct Progress {
  std::string id;
  std::string status;
  int64_t current = 0;
  int64_t total = 0;
};
// Called from several threads, one call at a time (serialized by the caller of the callback).
using ProgressFn = std::function<void(const Progress&)>;

struct PullOptions {
  oci::Platform platform = oci::Platform::Host();
  int max_concurrent_downloads = 3;  // as dockerd
  ProgressFn progress;
  // Layers whose uncompressed size is already known (e.g. from the local image store), so a
  // pull that finds them present can still report sizes.
  std::vector<farm::v1::Layer> known_layers;
};

struct PullResult {
  // The image as stored in the CAS (manifest, config, layers): the caller records it in the
  // image store. index_digests holds the index it was selected from, sources the repository.
  image::ImageRecord record;
  std::string resolved_digest;  // what the tag pointed at: the index's or the manifest's digest
  bool downloaded = false;      // false: everything was already in the CAS
};

// Pulls `ref` (tag, or digest; no tag and no digest means "latest"). On OK every blob of the
// record is in `cas`. A blob whose bytes do not hash to its digest (or a layer whose content
// does not match its diff_id) is refused: DATA_LOSS naming the digest, nothing stored for it.
absl::StatusOr<PullResult> PullImage(registry::Client& client, cache::BlobStore& cas,
                                     const oci::Reference& ref, const PullOptions& options);

struct PushOptions {
  int max_concurrent_uploads = 5;  // as dockerd
  ProgressFn progress;
};

struct PushResult {
  std::string digest;  // of the manifest (or index) pushed
  int64_t size = 0;
  int uploaded = 0, mounted = 0, existed = 0;  // blobs by outcome
};

// Pushes `record` (every blob must be in `cas`) to `target`'s repository; the manifest goes
// under target's tag, or only by digest when target has none. Blobs the repository has are
// skipped (so an interrupted push resumes where it stopped); blobs found in record.sources on
// the same registry are mounted. Index images push each platform's manifest by digest first.
absl::StatusOr<PushResult> PushImage(registry::Client& client, cache::BlobStore& cas,
                                     const image::ImageRecord& record, const oci::Reference& target,
                                     const PushOptions& options);

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_TRANSFER_H_
