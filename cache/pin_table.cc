#include "cache/pin_table.h"

#include <utility>

#include "absl/container/flat_hash_set.h"

namespace farm::cache {

void PinTable::AddReader(const std::string& key) {
  absl::MutexLock lock(&mu_);
  ++readers_[key];
}

void PinTable::RemoveReader(const std::string& key) {
  absl::MutexLock lock(&mu_);
  auto it = readers_.find(key);
  if (it != readers_.end() && --it->second <= 0) readers_.erase(it);
}

void PinTable::AddLease(const std::string& id, int64_t expiry_ms, std::vector<std::string> keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& k : keys) lease_pins_[k][id] = expiry_ms;
  leases_[id] = Lease{expiry_ms, std::move(keys)};
}

void PinTable::UnpinLeaseLocked(const std::string& id, const Lease& lease) {
  for (const std::string& k : lease.keys) {
    auto p = lease_pins_.find(k);
    if (p == lease_pins_.end()) continue;
    p->second.erase(id);
    if (p->second.empty()) lease_pins_.erase(p);
  }
}

bool PinTable::ReleaseLease(const std::string& id, int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.expiry_ms <= now_ms) return false;
  UnpinLeaseLocked(id, it->second);
  leases_.erase(it);
  return true;
}

std::vector<std::string> PinTable::ExpireLeases(int64_t now_ms) {
  std::vector<std::string> ids;
  absl::MutexLock lock(&mu_);
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expiry_ms > now_ms) {
      ++it;
      continue;
    }
    UnpinLeaseLocked(it->first, it->second);
    ids.push_back(it->first);
    leases_.erase(it++);
  }
  return ids;
}

bool PinTable::IsPinnedLocked(const std::string& key, int64_t now_ms) const {
  auto r = readers_.find(key);
  if (r != readers_.end() && r->second > 0) return true;
  auto l = lease_pins_.find(key);
  if (l == lease_pins_.end()) return false;
  for (const auto& [id, expiry] : l->second) {
    if (expiry > now_ms) return true;
  }
  return false;
}

bool PinTable::IsPinned(const std::string& key, int64_t now_ms) const {
  absl::MutexLock lock(&mu_);
  return IsPinnedLocked(key, now_ms);
}

PinTable::Summary PinTable::Summarize(int64_t now_ms) const {
  absl::MutexLock lock(&mu_);
  Summary s;
  s.leases = static_cast<int64_t>(leases_.size());
  absl::flat_hash_set<std::string> pinned;
  for (const auto& [k, n] : readers_) {
    if (n > 0) pinned.insert(k);
  }
  for (const auto& [k, leases] : lease_pins_) {
    if (IsPinnedLocked(k, now_ms)) pinned.insert(k);
  }
  s.pinned_keys.assign(pinned.begin(), pinned.end());
  return s;
}

}  // namespace farm::cache
