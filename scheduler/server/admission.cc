#include "scheduler/server/admission.h"

#include "absl/strings/str_cat.h"

namespace farm::scheduler::server {

void TenantQueue::Push(QueuedBuild build) {
  tenant_of_[build.id] = build.tenant;
  std::string tenant = build.tenant;
  by_tenant_[tenant].push_back(std::move(build));
  ++size_;
}

std::optional<std::string> TenantQueue::Next() {
  if (by_tenant_.empty()) return std::nullopt;
  auto it = by_tenant_.upper_bound(last_tenant_);
  if (it == by_tenant_.end()) it = by_tenant_.begin();
  std::deque<QueuedBuild>& builds = it->second;
  size_t best = 0;
  for (size_t i = 1; i < builds.size(); ++i) {
    const QueuedBuild& a = builds[i];
    const QueuedBuild& b = builds[best];
    if (a.priority > b.priority || (a.priority == b.priority && a.order < b.order)) best = i;
  }
  std::string id = std::move(builds[best].id);
  builds.erase(builds.begin() + static_cast<long>(best));
  last_tenant_ = it->first;
  if (builds.empty()) by_tenant_.erase(it);
  tenant_of_.erase(id);
  --size_;
  return id;
}

bool TenantQueue::Remove(const std::string& id) {
  auto t = tenant_of_.find(id);
  if (t == tenant_of_.end()) return false;
  auto q = by_tenant_.find(t->second);
  tenant_of_.erase(t);
  if (q == by_tenant_.end()) return false;
  std::deque<QueuedBuild>& builds = q->second;
  for (auto it = builds.begin(); it != builds.end(); ++it) {
    if (it->id != id) continue;
    builds.erase(it);
    if (builds.empty()) by_tenant_.erase(q);
    --size_;
    return true;
  }
  return false;
}

int TenantQueue::size(const std::string& tenant) const {
  auto it = by_tenant_.find(tenant);
  return it == by_tenant_.end() ? 0 : static_cast<int>(it->second.size());
}

absl::Status Admission::CheckRoom() const {
  if (queue_.size() < max_queued_) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat("the build queue is full (", queue_.size(),
                                                   " builds waiting); try again later"));
}

std::optional<std::string> Admission::Start() {
  if (active_ >= max_active_) return std::nullopt;
  std::optional<std::string> id = queue_.Next();
  if (id.has_value()) ++active_;
  return id;
}

}  // namespace farm::scheduler::server
