// StoreResolver: the BaseImageResolver `farm build` uses. A FROM image is taken from the local
// image store when it is there for the platform (and its blobs are in the CAS), else pulled
// from its registry, recorded in the store under its name (as `docker pull` does) and used.
// The pull policy decides: kMissing (default: `docker build`), kAlways (`--pull`), kNever.
//
// Within one resolver (one build), a reference is resolved once per platform: parallel stages
// naming the same base share one pull, and every stage sees the same image.
//
//   scheduler::image::StoreResolverOptions opt;
//   opt.pull_policy = pull_flag ? scheduler::image::PullPolicy::kAlways :
//   scheduler::image::PullPolicy::kMissing; ASSIGN_OR_RETURN(auto resolver,
//   scheduler::image::StoreResolver::Create(cas, images, opt));
//   ASSIGN_OR_RETURN(scheduler::image::ResolvedImage base, resolver->Resolve("alpine:3.19",
//   "linux/amd64"));
#ifndef FARM_SCHEDULER_IMAGE_STORE_RESOLVER_H_
#define FARM_SCHEDULER_IMAGE_STORE_RESOLVER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "cache/blob_store.h"
#include "scheduler/image/resolver.h"
#include "scheduler/image/store.h"
#include "scheduler/image/transfer.h"
#include "scheduler/registry/client.h"

namespace farm::scheduler::image {

enum class PullPolicy {
  kMissing,  // use the local image if present, else pull
  kAlways,   // always ask the registry (cheap when nothing changed: HEAD + present blobs)
  kNever,    // local images only
};

struct StoreResolverOptions {
  PullPolicy pull_policy = PullPolicy::kMissing;
  registry::RegistryOptions registry;
  // Pull progress (lines as `docker pull` prints them), e.g. into the build's progress.
  image::ProgressFn progress;
};

class StoreResolver : public BaseImageResolver {
 public:
  static absl::StatusOr<std::shared_ptr<StoreResolver>> Create(cache::BlobStore::Ptr cas,
                                                               ImageStore::Ptr images,
                                                               StoreResolverOptions options);

  // See BaseImageResolver. Errors: INVALID_ARGUMENT (reference or platform), NOT_FOUND
  // ("No such image" locally with kNever, or unknown to the registry), UNAVAILABLE
  // (registry unreachable), UNAUTHENTICATED, DATA_LOSS (registry sent wrong bytes).
  absl::StatusOr<ResolvedImage> Resolve(const std::string& reference,
                                        const std::string& platform) override;

  // How many registry pulls this resolver made (for tests and build summaries).
  int pulls() const;

 private:
  StoreResolver(cache::BlobStore::Ptr cas, ImageStore::Ptr images, StoreResolverOptions options);
  absl::StatusOr<ResolvedImage> FromLocal(const oci::Reference& ref, const oci::Platform& platform);
  absl::StatusOr<ResolvedImage> Pull(const oci::Reference& ref, const oci::Platform& platform);
  absl::StatusOr<ResolvedImage> Build(const oci::Reference& ref, const ImageRecord& rec,
                                      const oci::Platform& platform);

  cache::BlobStore::Ptr cas_;
  ImageStore::Ptr images_;
  StoreResolverOptions options_;
  registry::ClientPool clients_;

  mutable absl::Mutex mu_;
  std::map<std::string, ResolvedImage> resolved_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<absl::Mutex>> in_flight_ ABSL_GUARDED_BY(mu_);
  int pulls_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_STORE_RESOLVER_H_
