// $FARM_HOME: where the embedded `farm` keeps its state (default ~/.local/share/farm), and the
// lock that makes concurrent farm processes on one home safe.
//
// RocksDB lets one process at a time open a database, so every farm process that opens the
// stores under a home first takes HomeLock (an flock on $FARM_HOME/lock). A second process
// waits for it (printing once who holds it) instead of failing or corrupting anything.
//
//   ASSIGN_OR_RETURN(std::string home, common::FarmHome());
//   ASSIGN_OR_RETURN(auto lock, common::HomeLock::Acquire(home, absl::InfiniteDuration(),
//                                                         [](const std::string& m) { ... }));
//   ... open JoinPath(home, "cache"), JoinPath(home, "images") ...
#ifndef FARM_COMMON_FARM_HOME_H_
#define FARM_COMMON_FARM_HOME_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace farm::common {

// $FARM_HOME if set and non-empty, else $HOME/.local/share/farm. Creates it (0700) if missing.
absl::StatusOr<std::string> FarmHome();

class HomeLock {
 public:
  // Takes the exclusive lock on `home`, waiting up to `timeout` (InfiniteDuration: forever).
  // If another process holds it, `on_wait` is called once with a message naming its pid.
  // DEADLINE_EXCEEDED after `timeout`.
  static absl::StatusOr<std::unique_ptr<HomeLock>> Acquire(
      const std::string& home, absl::Duration timeout,
      const std::function<void(const std::string&)>& on_wait = nullptr);
  ~HomeLock();
  HomeLock(const HomeLock&) = delete;
  HomeLock& operator=(const HomeLock&) = delete;

 private:
  explicit HomeLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace farm::common

#endif  // FARM_COMMON_FARM_HOME_H_
