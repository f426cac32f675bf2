// Which device nodes a sandboxed command may use, enforced by the kernel's device cgroup:
// the devices controller on cgroup v1, an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE) attached
// to the run's cgroup on v2. A second line of defence: every writable mount in the sandbox is
// already `nodev` (runner.cc), so a node made by mknod, unpacked from a layer or ADDed from a
// tar can be stored in a layer but never opened.
//
//   for (const DeviceRule& r : StandardDeviceRules()) WriteV1(r.V1String());
//   RETURN_IF_ERROR(AttachDeviceFilter(run_cgroup_dir, StandardDeviceRules()));  // v2
#ifndef FARM_WORKER_SANDBOX_DEVICES_H_
#define FARM_WORKER_SANDBOX_DEVICES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace farm::worker::sandbox {

struct DeviceRule {
  char type = 'a';     // 'a' (any), 'b' (block), 'c' (character)
  int64_t major = -1;  // -1: any
  int64_t minor = -1;  // -1: any
  std::string access;  // subset of "rwm" (read, write, mknod)
  // "c 1:3 rwm", as the v1 devices.allow file takes it.
  std::string V1String() const;
};

// Docker's default: creating any node (m) but opening only null, zero, full, random, urandom,
// tty, console, ptmx and the pseudo-terminals (136:*).
const std::vector<DeviceRule>& StandardDeviceRules();

// Loads an eBPF device program allowing exactly `rules` (everything else is refused with
// EPERM) and attaches it to the cgroup v2 directory `cgroup_dir` with BPF_F_ALLOW_MULTI, so the
// programs of its ancestors still apply too. The attachment lives as long as the cgroup.
absl::Status AttachDeviceFilter(const std::string& cgroup_dir,
                                const std::vector<DeviceRule>& rules);

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_DEVICES_H_
