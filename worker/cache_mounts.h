// CacheMounts: the persistent directories behind RUN --mount=type=cache, one per id, kept
// under the worker's state directory across builds (like BuildKit's cache mounts; they are
// never part of a layer or a cache key).
//
// Sharing modes, as in BuildKit:
//   shared  (default) every concurrent user gets the same directory;
//   locked  one user at a time, the others wait;
//   private a user that finds the directory in use gets another instance of the same id
//           (kept too, and reused by later private users).
// A new directory gets the mount's mode/uid/gid (default 0755, 0:0) and, with `from=`, the
// content of that source as its seed.
//
//   ASSIGN_OR_RETURN(auto m, cache_mounts.Acquire("go-build", "locked", {0755, 0, 0}, seed));
//   request.add_mounts()->set_source(m->path());   // released when `m` is destroyed
#ifndef FARM_WORKER_CACHE_MOUNTS_H_
#define FARM_WORKER_CACHE_MOUNTS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "worker/copy/layer_tree.h"

namespace farm::worker {

class CacheMounts {
 public:
  explicit CacheMounts(std::string dir) : dir_(std::move(dir)) {}

  class Lease {
   public:
    ~Lease();
    const std::string& path() const { return path_; }

   private:
    friend class CacheMounts;
    Lease(CacheMounts* owner, std::string instance, std::string path, bool exclusive)
        : owner_(owner),
          instance_(std::move(instance)),
          path_(std::move(path)),
          exclusive_(exclusive) {}
    CacheMounts* owner_;
    std::string instance_;
    std::string path_;
    bool exclusive_;
  };

  // `seed` (nullable) fills a newly created directory. `cancel` (nullable) stops a wait for a
  // locked cache (CANCELLED). INVALID_ARGUMENT for an unknown sharing mode.
  absl::StatusOr<std::unique_ptr<Lease>> Acquire(
      const std::string& id, const std::string& sharing, const copy::Attrs& attrs,
      const std::function<absl::Status(const std::string& dir)>& seed,
      const absl::Notification* cancel);

 private:
  struct State {
    int users = 0;
    bool exclusive = false;
  };
  absl::Status Create(const std::string& path, const copy::Attrs& attrs,
                      const std::function<absl::Status(const std::string& dir)>& seed);
  void Release(const std::string& instance, bool exclusive);

  const std::string dir_;
  absl::Mutex create_mu_;  // serializes the creation (and seeding) of new directories
  absl::Mutex mu_;
  std::map<std::string, State> in_use_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::worker

#endif  // FARM_WORKER_CACHE_MOUNTS_H_
