// TenantImages: farm-scheduler's image stores, one per tenant, so that a tenant's tags (and the
// base images it pulled by tag) never change what another tenant's `FROM name:tag` resolves
// to. Tenants share image content only by digest: every blob is in the one content-addressed
// farm-cache, and a pull of a digest reference lands in the puller's store like any pull.
//
//   ASSIGN_OR_RETURN(auto images, TenantImages::Open("/var/lib/farm-scheduler/images"));
//   ASSIGN_OR_RETURN(image::ImageStore::Ptr store, images->For("web"));
//
// The tenant "" (builds submitted without a tenant to a scheduler without authentication) uses
// DIR itself, as before tenants had stores; tenant T uses DIR-tenants/<first 32 hex digits of
// SHA-256(T)>, opened on first use and kept open.
#ifndef FARM_SCHEDULER_SERVER_TENANT_IMAGES_H_
#define FARM_SCHEDULER_SERVER_TENANT_IMAGES_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "scheduler/image/store.h"

namespace farm::scheduler::server {

class TenantImages {
 public:
  // Opens (creating) DIR's store for the tenant "".
  static absl::StatusOr<std::unique_ptr<TenantImages>> Open(const std::string& dir);

  // The tenant's store (opened on first use). Thread-safe.
  absl::StatusOr<image::ImageStore::Ptr> For(const std::string& tenant);
  // Where the tenant's store lives.
  std::string DirOf(const std::string& tenant) const;

 private:
  explicit TenantImages(std::string dir) : dir_(std::move(dir)) {}
  const std::string dir_;
  absl::Mutex mu_;
  std::map<std::string, image::ImageStore::Ptr> stores_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_TENANT_IMAGES_H_
