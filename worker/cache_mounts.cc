#include "worker/cache_mounts.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker {

CacheMounts::Lease::~Lease() { owner_->Release(instance_, exclusive_); }

void CacheMounts::Release(const std::string& instance, bool exclusive) {
  absl::MutexLock lock(&mu_);
  State& s = in_use_[instance];
  if (exclusive) s.exclusive = false;
  if (--s.users <= 0) in_use_.erase(instance);
}

absl::Status CacheMounts::Create(const std::string& path, const copy::Attrs& attrs,
                                 const std::function<absl::Status(const std::string&)>& seed) {
  // Build it beside, then rename: a crash never leaves a half-seeded cache.
  std::string tmp = path + ".new";
  RETURN_IF_ERROR(common::RemoveAll(tmp));
  RETURN_IF_ERROR(common::MakeDirs(tmp, 0755));
  if (seed) RETURN_IF_ERROR(common::Annotate(seed(tmp), "seeding cache mount"));
  RETURN_IF_ERROR(copy::LayerTree::Apply(tmp, attrs, false));
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CacheMounts::Lease>> CacheMounts::Acquire(
    const std::string& id, const std::string& sharing, const copy::Attrs& attrs,
    const std::function<absl::Status(const std::string&)>& seed, const absl::Notification* cancel) {
  std::string mode = sharing.empty() ? "shared" : sharing;
  if (mode != "shared" && mode != "private" && mode != "locked") {
    return absl::InvalidArgumentError(absl::StrCat("cache mount \"", id,
                                                   "\": unknown sharing mode \"", sharing,
                                                   "\" (want shared, private or locked)"));
  }
  std::string key = common::Sha256Hex(id).substr(0, 32);
  std::string instance = key;
  bool exclusive = mode == "locked";
  {
    absl::MutexLock lock(&mu_);
    struct Arg {
      CacheMounts* self;
      const std::string* instance;
      bool exclusive;
    } arg{this, &instance, exclusive};
    // locked: wait until nobody uses it; shared: wait while someone holds it locked.
    auto free_enough = +[](Arg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
      auto it = a->self->in_use_.find(*a->instance);
      if (it == a->self->in_use_.end()) return true;
      return a->exclusive ? it->second.users == 0 : !it->second.exclusive;
    };
    if (mode == "private") {
      for (int n = 1; in_use_.count(instance) && in_use_[instance].users > 0; ++n) {
        instance = absl::StrCat(key, "-", n);
      }
    } else {
      while (!free_enough(&arg)) {
        if (cancel != nullptr && cancel->HasBeenNotified()) {
          return absl::CancelledError(
              absl::StrCat("cancelled while waiting for cache mount \"", id, "\""));
        }
        mu_.AwaitWithTimeout(absl::Condition(free_enough, &arg), absl::Milliseconds(100));
      }
    }
    State& st = in_use_[instance];
    ++st.users;
    if (exclusive) st.exclusive = true;
  }
  std::unique_ptr<Lease> lease(new Lease(this, instance, dir_ + "/" + instance, exclusive));
  // Two first users of a shared cache must not both create it.
  absl::MutexLock create_lock(&create_mu_);
  if (!common::PathExists(lease->path())) {
    RETURN_IF_ERROR(common::MakeDirs(dir_, 0700));
    RETURN_IF_ERROR(common::Annotate(Create(lease->path(), attrs, seed),
                                     absl::StrCat("cache mount \"", id, "\"")));
  }
  return lease;
}

}  // namespace farm::worker
