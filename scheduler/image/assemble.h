// Image assembly: turns a finished stage (base image + the planner's final config + the new
// layers with their history) into an image config and manifest in the CAS, and several
// platforms' images into an index. Deterministic: the same request gives the same bytes, so
// with SOURCE_DATE_EPOCH the image ID and manifest digest are reproducible.
//
//   scheduler::image::AssembleRequest req;
//   req.base = &resolved_base;                  // nullptr for FROM scratch
//   req.config = final_config;                  // Env, Cmd, ... as the planner left them
//   req.steps.push_back({scheduler::image::RunCreatedBy({"/bin/sh", "-c", "make"}, {}), layer});
//   req.steps.push_back({"ENV A=b", std::nullopt});                  // metadata only
//   req.source_date_epoch = 0;
//   ASSIGN_OR_RETURN(scheduler::image::AssembledImage img, scheduler::image::Assemble(*cas, req));
//   img.config.digest;    // the image ID
//   img.manifest.digest;  // what NAME@sha256:… names
//
// History (`docker history` CREATED BY) uses BuildKit's forms, which the caller builds:
//   RUN (shell form)   "RUN /bin/sh -c apt-get update # buildkit"   (RunCreatedBy)
//   RUN with ARGs      "RUN |1 V=1 /bin/sh -c make # buildkit"      (RunCreatedBy)
//   RUN (exec form)    "RUN echo hi # buildkit"                      (RunCreatedBy)
//   COPY / ADD         "COPY app /app # buildkit", "ADD x.tar / # buildkit"
//   WORKDIR            "WORKDIR /app"
//   CMD/ENTRYPOINT/SHELL  "CMD [\"/bin/sh\" \"-c\" \"x\"]" (GoQuotedList, Go's %q of the list)
//   ENV / LABEL        "ENV A=b C=d", "LABEL k=v"
//   EXPOSE / USER / VOLUME / STOPSIGNAL / HEALTHCHECK  as written after expansion (ONBUILD
//   has no history entry)
// with comment "buildkit.dockerfile.v0" and empty_layer for steps without a layer. BuildKit's
// form is used rather than Docker classic's "/bin/sh -c #(nop) ..." because it is what current
// Docker shows for every image it builds.
#ifndef FARM_SCHEDULER_IMAGE_ASSEMBLE_H_
#define FARM_SCHEDULER_IMAGE_ASSEMBLE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cache/blob_store.h"
#include "farm/v1/step.pb.h"
#include "oci/config.h"
#include "oci/manifest.h"
#include "scheduler/image/resolver.h"

namespace farm::scheduler::image {

inline constexpr char kBuildKitHistoryComment[] = "buildkit.dockerfile.v0";

enum class ManifestFormat {
  kOci,     // application/vnd.oci.image.manifest.v1+json (default)
  kDocker,  // application/vnd.docker.distribution.manifest.v2+json (Docker v2 schema 2)
};

// One instruction of the new stage, in Dockerfile order.
struct HistoryStep {
  std::string created_by;
  // The layer it made; nullopt for a metadata-only instruction (history gets empty_layer).
  std::optional<farm::v1::Layer> layer;
  // Set for the instructions Docker always gives a layer (RUN, COPY, ADD, WORKDIR): without
  // `layer` (the step changed nothing) the image then gets an empty one (a tar of no entries,
  // compressed so) and its history entry is not empty_layer.
  std::optional<oci::Compression> empty_layer;
  std::string comment = kBuildKitHistoryComment;
  // When the step's result was made (Unix seconds; 0: unknown). Without source_date_epoch the
  // entry's `created` is this time and the image's is the latest of them, so an image rebuilt
  // entirely from the cache is the same image (BuildKit keeps its cached layers' times too).
  int64_t created_unix = 0;
};

// The layer of no entries (1024 zero bytes, compressed deterministically with `compression`),
// written into `cas`.
absl::StatusOr<farm::v1::Layer> PutEmptyLayer(cache::BlobStore& cas, oci::Compression compression);

struct AssembleRequest {
  // The base image (its layers and history come first); nullptr means FROM scratch.
  const ResolvedImage* base = nullptr;
  // The final config the planner computed (config.config, os, architecture, variant, author).
  // `created`, `diff_ids` and `history` are ignored and rebuilt from base + steps.
  oci::ImageConfig config;
  std::vector<HistoryStep> steps;
  // Unix seconds for `created` of the image and of the new history entries. Unset: each new
  // history entry has its step's time (the image's when unknown) and the image the latest
  // step time, else `now`.
  std::optional<int64_t> source_date_epoch;
  ManifestFormat format = ManifestFormat::kOci;
  // Manifest annotations (OCI format only; Docker v2 manifests have none).
  std::map<std::string, std::string> annotations;
};

struct AssembledImage {
  oci::Descriptor manifest;  // media type, digest, size and platform of the manifest
  oci::Descriptor config;    // config.digest is the image ID
  oci::ImageConfig image_config;
  // Bottom to top, base layers first, media types as written in the manifest.
  std::vector<farm::v1::Layer> layers;
};

// Writes the config and manifest blobs into `cas`. Every layer blob (the base's and the new
// ones) must already be in the CAS: FAILED_PRECONDITION naming the first missing digest.
// INVALID_ARGUMENT for a malformed layer descriptor, a base whose layers disagree with its
// diff_ids, or zstd layers with the Docker format. `now` is used only without
// source_date_epoch. Thread-safe (no shared state).
absl::StatusOr<AssembledImage> Assemble(cache::BlobStore& cas, const AssembleRequest& request,
                                        absl::Time now = absl::Now());

// Writes an index (OCI image index, or Docker manifest list for kDocker) naming each image
// with its platform, and returns its descriptor. Every image must have the same format and a
// distinct platform (INVALID_ARGUMENT otherwise).
absl::StatusOr<oci::Descriptor> AssembleIndex(
    cache::BlobStore& cas, absl::Span<const AssembledImage> images, ManifestFormat format,
    const std::map<std::string, std::string>& annotations = {});

// BuildKit's created_by for RUN: "RUN [|N K=V ...] ARGS... # buildkit", where `args` is the
// final argv (shell prepended for the shell form) and `build_args` the ARGs visible to the step
// in declaration order.
std::string RunCreatedBy(const std::vector<std::string>& args,
                         const std::vector<std::pair<std::string, std::string>>& build_args);
// Go's fmt "%q" of a []string: ["a" "b c"] (BuildKit's CMD/ENTRYPOINT/SHELL history form).
std::string GoQuotedList(const std::vector<std::string>& list);

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_ASSEMBLE_H_
