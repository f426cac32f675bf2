// FairQueue: the dispatcher's queue for one platform, with per-tenant fair share.
//
// Next() serves the tenant with the fewest running tasks relative to its weight. Among tenants
// with the same share (always the case when slots are scarce and every slot frees one at a
// time) the one that received the least service so far wins: each tenant has a virtual time
// that advances by 1/weight per dispatch, and a tenant that becomes active starts at the
// current virtual time (start-time fair queuing), so it neither starves nor catches up on
// service it never asked for. Remaining ties go to the tenant whose first item arrived first.
// Within a tenant, items rank by (requeued first, higher priority, lower sequence number): a
// requeued task goes ahead of its tenant's queue, equal priorities are first come first served.
// So one tenant's thousand tasks do not starve another tenant's one: it is next as soon as a
// slot frees.
//
// Items are embedded in the caller's objects (the dispatcher's Task derives from QueueItem);
// the queue never owns them. Not thread-safe: the dispatcher calls it under its lock.
//
//   scheduler::dispatch::FairQueue q(&weights);
//   q.Push(&task);                        // task.tenant/priority/front/seq set before
//   QueueItem* next = q.Next();
//   q.Remove(next);  q.AddRunning(next->tenant, +1);
#ifndef FARM_SCHEDULER_DISPATCH_FAIR_QUEUE_H_
#define FARM_SCHEDULER_DISPATCH_FAIR_QUEUE_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace farm::scheduler::dispatch {

struct QueueItem {
  // Ordering fields: must not change while the item is queued (Remove, change, Push).
  std::string tenant;
  int32_t priority = 0;
  bool front = false;   // requeued: ahead of its tenant's other items
  uint64_t seq = 0;     // arrival order
  bool queued = false;  // maintained by FairQueue
};

class FairQueue {
 public:
  // `weights` (tenant → weight > 0; absent = 1) must outlive the queue.
  explicit FairQueue(const std::map<std::string, double>* weights);

  void Push(QueueItem* item);
  void Remove(QueueItem* item);  // no-op if not queued
  // Changes the count of `tenant`'s running tasks (the fair-share measure). A positive delta
  // is service received: it also advances the tenant's virtual time.
  void AddRunning(const std::string& tenant, int delta);
  int Running(const std::string& tenant) const;

  // The next item to serve; nullptr if none. Cost: O(tenants with queued items).
  QueueItem* Next() const;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Key {
    bool front;
    int32_t priority;
    uint64_t seq;
    QueueItem* item;
    bool operator<(const Key& o) const {
      if (front != o.front) return front;  // front items first
      if (priority != o.priority) return priority > o.priority;
      if (seq != o.seq) return seq < o.seq;
      return item < o.item;
    }
  };
  struct Tenant {
    std::set<Key> items;
    int running = 0;
    double weight = 1.0;
    double vtime = 0;  // service received / weight, from when it (re)joined
  };
  static Key KeyOf(QueueItem* item) { return Key{item->front, item->priority, item->seq, item}; }
  Tenant& GetTenant(const std::string& name);
  void MaybeErase(const std::string& name);

  const std::map<std::string, double>* weights_;
  absl::flat_hash_map<std::string, Tenant> tenants_;
  size_t size_ = 0;
  double vclock_ = 0;  // virtual time of the last tenant served
};

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_FAIR_QUEUE_H_
