#include "scheduler/server/tenant_images.h"

#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace farm::scheduler::server {

absl::StatusOr<std::unique_ptr<TenantImages>> TenantImages::Open(const std::string& dir) {
  std::unique_ptr<TenantImages> t(new TenantImages(dir));
  RETURN_IF_ERROR(t->For("").status());
  return t;
}

std::string TenantImages::DirOf(const std::string& tenant) const {
  if (tenant.empty()) return dir_;
  return common::JoinPath(dir_ + "-tenants", common::Sha256Hex(tenant).substr(0, 32));
}

absl::StatusOr<image::ImageStore::Ptr> TenantImages::For(const std::string& tenant) {
  absl::MutexLock l(&mu_);
  auto it = stores_.find(tenant);
  if (it != stores_.end()) return it->second;
  std::string dir = DirOf(tenant);
  RETURN_IF_ERROR(common::MakeDirs(dir, 0700));
  ASSIGN_OR_RETURN(std::unique_ptr<image::RocksDbImageStore> store,
                   image::RocksDbImageStore::Create(dir));
  image::ImageStore::Ptr ptr = std::move(store);
  stores_[tenant] = ptr;
  return ptr;
}

}  // namespace farm::scheduler::server
