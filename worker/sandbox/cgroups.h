// Memory, pid and device limits for sandboxed runs through cgroups, v2 (unified) and v1.
//
// The worker decides once (PlanCgroups, at executor creation) where per-run cgroups go and
// what they contain; the runner creates one per run (RunCgroup), puts the run's init process in
// it, reports whether the OOM killer fired, kills anything left and removes it.
//
// v1: a child of the worker's own cgroup in the memory, pids and devices hierarchies (no
// constraint on processes in inner cgroups). v2: a child of the worker's cgroup, whose
// controllers must be delegated; v2 forbids processes in a cgroup that distributes
// controllers, so when the worker's cgroup holds only the worker itself, the worker first
// moves into a `farm-worker` leaf beside the runs (what systemd's Delegate=yes units and
// container engines do). A cgroup shared with other processes cannot be used: PlanCgroups
// says so instead of moving them. Devices alone need no controller on v2 (an eBPF program on
// the run's cgroup), hence no delegation and no move.
//
//   ASSIGN_OR_RETURN(auto plan, worker::sandbox::PlanCgroups({1 << 30, 512},
//   worker::sandbox::CgroupEnv())); request.mutable_cgroups()->Assign(plan.begin(), plan.end());
#ifndef FARM_WORKER_SANDBOX_CGROUPS_H_
#define FARM_WORKER_SANDBOX_CGROUPS_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "farm/v1/sandbox.pb.h"

namespace farm::worker::sandbox {

struct CgroupLimits {
  int64_t memory_bytes = 0;  // 0 = no limit
  int64_t pids = 0;          // 0 = no limit
  // Only the standard devices (devices.h). Best effort: skipped where the v1 devices
  // controller is not mounted (the sandbox's nodev mounts still keep other nodes unusable).
  bool devices = false;
  bool any() const { return memory_bytes > 0 || pids > 0 || devices; }
};

// Where to look; the defaults are the real system, tests pass a fake tree.
struct CgroupEnv {
  std::string root = "/sys/fs/cgroup";
  std::string proc_self_cgroup;  // content of /proc/self/cgroup; "" = read it
  pid_t self = 0;                // 0 = getpid()
  int version = 0;               // 0 = detect (statfs of `root`), 1 or 2 to force
};

// The cgroups each run gets (empty when no limit is asked for). FAILED_PRECONDITION, with what
// to do about it, when limits are asked for but the controllers are not usable.
absl::StatusOr<std::vector<farm::v1::SandboxCgroup>> PlanCgroups(const CgroupLimits& limits,
                                                                 const CgroupEnv& env);

// One run's cgroups (used by the runner process).
class RunCgroup {
 public:
  // `all_devices` (an insecure run): no device restriction.
  static absl::StatusOr<RunCgroup> Create(
      const google::protobuf::RepeatedPtrField<farm::v1::SandboxCgroup>& plan,
      const std::string& name, bool all_devices = false);
  RunCgroup(RunCgroup&&) = default;
  RunCgroup& operator=(RunCgroup&&) = default;
  ~RunCgroup();

  absl::Status AddProcess(pid_t pid);
  // True if the kernel's OOM killer killed a process of the run.
  bool OomKilled() const;
  // Kills whatever is left and removes the cgroups (waits briefly for them to empty).
  void Destroy();

 private:
  RunCgroup() = default;
  struct Dir {
    std::string path;
    bool v2 = false;
  };
  std::vector<Dir> dirs_;
};

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_CGROUPS_H_
