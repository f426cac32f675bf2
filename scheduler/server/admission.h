// Admission: which of farm-scheduler's waiting builds runs next, and whether there is room for
// one more. Pure bookkeeping over build ids (no threads, no I/O), so that the policy can be read
// and tested on its own:
//   - TenantQueue orders the waiting builds: round robin over the tenants that have builds
//     waiting (in tenant-name order, after the tenant served last), and within a tenant the
//     highest priority first, then the oldest (lowest submission order).
//   - Admission adds the limits: at most `max_queued` builds waiting (a new submission beyond
//     it is RESOURCE_EXHAUSTED) and at most `max_active` running.
//
//   Admission admission(/*max_active=*/32, /*max_queued=*/10000);
//   RETURN_IF_ERROR(admission.CheckRoom());
//   admission.Push(QueuedBuild{"b1", "team-a", /*priority=*/0, /*order=*/1});
//   while (std::optional<std::string> id = admission.Start()) run(*id);
//   ...  // once a started build is done:
//   admission.Done();
//
// Not thread-safe: BuildManager guards both classes with its own lock.
#ifndef FARM_SCHEDULER_SERVER_ADMISSION_H_
#define FARM_SCHEDULER_SERVER_ADMISSION_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace farm::scheduler::server {

// One waiting build, as the queue orders it.
struct QueuedBuild {
  std::string id;
  std::string tenant;
  int priority = 0;   // higher runs first within a tenant
  int64_t order = 0;  // submission order: lower (older) runs first at equal priority
};

class TenantQueue {
 public:
  // Adds a waiting build. Its id must not be queued already.
  void Push(QueuedBuild build);
  // Removes and returns the build that runs next (see the file comment), or nullopt when
  // nothing waits. The tenant it belongs to becomes the one served last.
  std::optional<std::string> Next();
  // Removes a waiting build (a cancel). False when it is not queued.
  bool Remove(const std::string& id);

  // Builds waiting, in all and for one tenant.
  int size() const { return size_; }
  bool empty() const { return size_ == 0; }
  int size(const std::string& tenant) const;

 private:
  std::map<std::string, std::deque<QueuedBuild>> by_tenant_;  // only tenants with builds
  std::map<std::string, std::string> tenant_of_;              // id → tenant
  std::string last_tenant_;
  int size_ = 0;
};

class Admission {
 public:
  Admission(int max_active, int max_queued) : max_active_(max_active), max_queued_(max_queued) {}

  // OK when a new submission may wait; RESOURCE_EXHAUSTED when max_queued builds already do.
  absl::Status CheckRoom() const;
  // Queues a build. Not bounded: a submission checks CheckRoom first; builds that were waiting
  // or running before a restart are queued again whatever the limit.
  void Push(QueuedBuild build) { queue_.Push(std::move(build)); }
  // The next build to run, counted as active, when fewer than max_active run; else nullopt.
  std::optional<std::string> Start();
  // A build returned by Start is done (finished, or interrupted by a shutdown).
  void Done() { --active_; }
  // Removes a waiting build (a cancel). False when it is not waiting.
  bool Remove(const std::string& id) { return queue_.Remove(id); }

  int queued() const { return queue_.size(); }
  int active() const { return active_; }

 private:
  const int max_active_;
  const int max_queued_;
  TenantQueue queue_;
  int active_ = 0;
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_ADMISSION_H_
