#include "scheduler/dispatch/fair_queue.h"

#include <algorithm>

namespace farm::scheduler::dispatch {

FairQueue::FairQueue(const std::map<std::string, double>* weights) : weights_(weights) {}

FairQueue::Tenant& FairQueue::GetTenant(const std::string& name) {
  auto it = tenants_.find(name);
  if (it != tenants_.end()) return it->second;
  Tenant& t = tenants_[name];
  if (weights_ != nullptr) {
    auto w = weights_->find(name);
    if (w != weights_->end() && w->second > 0) t.weight = w->second;
  }
  t.vtime = vclock_;  // a tenant (re)joining starts now: no credit for idle time
  return t;
}

void FairQueue::MaybeErase(const std::string& name) {
  auto it = tenants_.find(name);
  if (it != tenants_.end() && it->second.items.empty() && it->second.running <= 0) {
    tenants_.erase(it);
  }
}

void FairQueue::Push(QueueItem* item) {
  if (item->queued) return;
  GetTenant(item->tenant).items.insert(KeyOf(item));
  item->queued = true;
  ++size_;
}

void FairQueue::Remove(QueueItem* item) {
  if (!item->queued) return;
  auto it = tenants_.find(item->tenant);
  if (it != tenants_.end() && it->second.items.erase(KeyOf(item)) > 0) --size_;
  item->queued = false;
  MaybeErase(item->tenant);
}

void FairQueue::AddRunning(const std::string& tenant, int delta) {
  Tenant& t = GetTenant(tenant);
  t.running += delta;
  if (delta > 0) {
    vclock_ = std::max(vclock_, t.vtime);
    t.vtime += delta / t.weight;
  }
  MaybeErase(tenant);
}

int FairQueue::Running(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.running;
}

QueueItem* FairQueue::Next() const {
  const Key* best = nullptr;
  const Tenant* best_tenant = nullptr;
  double best_share = 0;
  for (const auto& [name, tenant] : tenants_) {
    const Key* head = tenant.items.empty() ? nullptr : &*tenant.items.begin();
    if (head == nullptr) continue;
    double share = tenant.running / tenant.weight;
    bool better = best == nullptr || share < best_share;
    if (!better && share == best_share) {
      if (tenant.vtime != best_tenant->vtime) {
        better = tenant.vtime < best_tenant->vtime;
      } else {
        better = head->seq != best->seq ? head->seq < best->seq : *head < *best;
      }
    }
    if (better) {
      best = head;
      best_tenant = &tenant;
      best_share = share;
    }
  }
  return best == nullptr ? nullptr : best->item;
}

}  // namespace farm::scheduler::dispatch
