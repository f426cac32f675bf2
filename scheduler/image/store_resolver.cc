#include "scheduler/image/store_resolver.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::scheduler::image {

StoreResolver::StoreResolver(cache::BlobStore::Ptr cas, ImageStore::Ptr images,
                             StoreResolverOptions options)
    : cas_(std::move(cas)),
      images_(std::move(images)),
      options_(std::move(options)),
      clients_(options_.registry) {}

absl::StatusOr<std::shared_ptr<StoreResolver>> StoreResolver::Create(cache::BlobStore::Ptr cas,
                                                                     ImageStore::Ptr images,
                                                                     StoreResolverOptions options) {
  if (cas == nullptr || images == nullptr) {
    return absl::InvalidArgumentError("StoreResolver needs a CAS and an image store");
  }
  return std::shared_ptr<StoreResolver>(
      new StoreResolver(std::move(cas), std::move(images), std::move(options)));
}

int StoreResolver::pulls() const {
  absl::MutexLock lock(&mu_);
  return pulls_;
}

absl::StatusOr<ResolvedImage> StoreResolver::Build(const oci::Reference& ref,
                                                   const ImageRecord& rec,
                                                   const oci::Platform& platform) {
  ASSIGN_OR_RETURN(const StoredManifest* m, rec.ForPlatform(platform));
  ASSIGN_OR_RETURN(common::Digest cd, common::Digest::ParseOci(m->config_digest, m->config_size));
  std::vector<common::Digest> blobs = {cd};
  for (const farm::v1::Layer& l : m->layers) {
    ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(l.digest(), l.size()));
    blobs.push_back(std::move(d));
  }
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas_->FindMissing(blobs));
  if (!missing.empty()) {
    return absl::NotFoundError(absl::StrCat("image ", ref.FamiliarString(), ": blob ",
                                            missing[0].OciString(), " is no longer in the CAS"));
  }
  ASSIGN_OR_RETURN(std::string config_bytes, cas_->ReadBlob(cd));
  absl::StatusOr<oci::ImageConfig> config = oci::ImageConfig::FromJson(config_bytes);
  if (!config.ok()) return common::Annotate(config.status(), m->config_digest);
  ResolvedImage out;
  out.reference = ref.String();
  out.manifest_digest = m->digest;
  out.config_digest = m->config_digest;
  out.config = std::move(*config);
  out.layers = m->layers;
  return out;
}

absl::StatusOr<ResolvedImage> StoreResolver::FromLocal(const oci::Reference& ref,
                                                       const oci::Platform& platform) {
  absl::StatusOr<ImageRecord> rec = LookupImage(*images_, ref.String());
  if (!rec.ok()) return rec.status();
  return Build(ref, *rec, platform);
}

absl::StatusOr<ResolvedImage> StoreResolver::Pull(const oci::Reference& ref,
                                                  const oci::Platform& platform) {
  ASSIGN_OR_RETURN(registry::Client * client, clients_.Get(ref.domain()));
  image::PullOptions po;
  po.platform = platform;
  po.progress = options_.progress;
  absl::StatusOr<std::vector<ImageRecord>> all = images_->List();
  if (all.ok()) {
    for (const ImageRecord& r : *all) {
      for (const StoredManifest& m : r.manifests) {
        po.known_layers.insert(po.known_layers.end(), m.layers.begin(), m.layers.end());
      }
    }
  }
  absl::StatusOr<image::PullResult> pulled = image::PullImage(*client, *cas_, ref, po);
  if (!pulled.ok()) {
    return common::Annotate(pulled.status(), absl::StrCat("pulling ", ref.FamiliarString()));
  }
  {
    absl::MutexLock lock(&mu_);
    ++pulls_;
  }
  RETURN_IF_ERROR(images_->Put(pulled->record));
  RETURN_IF_ERROR(images_->SetReference(ref, pulled->record.digest).status());
  if (!ref.has_digest()) {
    RETURN_IF_ERROR(images_
                        ->SetReference(ref.NameOnly().WithDigest(pulled->resolved_digest),
                                       pulled->record.digest)
                        .status());
  }
  return Build(ref, pulled->record, platform);
}

absl::StatusOr<ResolvedImage> StoreResolver::Resolve(const std::string& reference,
                                                     const std::string& platform_text) {
  ASSIGN_OR_RETURN(oci::Reference ref, oci::Reference::ParseWithDefaultTag(reference));
  ASSIGN_OR_RETURN(oci::Platform platform, oci::Platform::Parse(platform_text));
  std::string key = absl::StrCat(ref.String(), " ", platform.String());
  std::shared_ptr<absl::Mutex> flight;
  {
    absl::MutexLock lock(&mu_);
    auto done = resolved_.find(key);
    if (done != resolved_.end()) return done->second;
    std::shared_ptr<absl::Mutex>& slot = in_flight_[key];
    if (slot == nullptr) slot = std::make_shared<absl::Mutex>();
    flight = slot;
  }
  // One resolution per key at a time; the others wait and take its result.
  absl::MutexLock one(flight.get());
  {
    absl::MutexLock lock(&mu_);
    auto done = resolved_.find(key);
    if (done != resolved_.end()) return done->second;
  }
  absl::StatusOr<ResolvedImage> result;
  if (options_.pull_policy != PullPolicy::kAlways) {
    result = FromLocal(ref, platform);
    if (!result.ok() && result.status().code() != absl::StatusCode::kNotFound) {
      return result.status();
    }
    if (!result.ok() && options_.pull_policy == PullPolicy::kNever) {
      return absl::NotFoundError(
          absl::StrCat(result.status().message(), " (not pulling: pull policy is never)"));
    }
  }
  if (!result.ok() || options_.pull_policy == PullPolicy::kAlways) {
    result = Pull(ref, platform);
  }
  if (!result.ok()) return result.status();
  absl::MutexLock lock(&mu_);
  resolved_[key] = *result;
  return result;
}

}  // namespace farm::scheduler::image
