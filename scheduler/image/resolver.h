// BaseImageResolver: turns the image named after FROM (or COPY --from=IMAGE, RUN
// --mount=from=IMAGE) into its config and layers, for the planner.
//
// The planner needs a base image's config to expand variables (ENV PATH=$PATH:/x sees the
// base's PATH), to inherit WORKDIR/USER/SHELL/ONBUILD, and its layer chain (diff_ids) to key
// the first step of a stage. Implementations: the local image store with registry pull
// (scheduler/image), and fakes in tests.
//
//   ASSIGN_OR_RETURN(scheduler::image::ResolvedImage base, resolver->Resolve("alpine:3.19",
//   "linux/amd64"));
#ifndef FARM_SCHEDULER_IMAGE_RESOLVER_H_
#define FARM_SCHEDULER_IMAGE_RESOLVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "farm/v1/step.pb.h"
#include "oci/config.h"

namespace farm::scheduler::image {

struct ResolvedImage {
  std::string reference;        // normalized, e.g. "docker.io/library/alpine:3.19"
  std::string manifest_digest;  // "sha256:…" of the platform's image manifest
  std::string config_digest;    // "sha256:…" (the image ID)
  oci::ImageConfig config;
  // Bottom to top; layers[i].diff_id == config.diff_ids[i].
  std::vector<farm::v1::Layer> layers;
};

class BaseImageResolver {
 public:
  using Ptr = std::shared_ptr<BaseImageResolver>;
  virtual ~BaseImageResolver() = default;

  // Resolves `reference` as written in the Dockerfile after ARG expansion (not "scratch",
  // which the planner handles) for `platform` ("linux/amd64"). On OK the config and every
  // layer blob are in the CAS. NOT_FOUND if the image exists neither locally nor (when pulling
  // is allowed) in its registry; INVALID_ARGUMENT for a malformed reference; UNAVAILABLE for
  // a registry that cannot be reached. Thread-safe.
  virtual absl::StatusOr<ResolvedImage> Resolve(const std::string& reference,
                                                const std::string& platform) = 0;
};

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_RESOLVER_H_
