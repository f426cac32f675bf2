#include "worker/sandbox/cgroups.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/sandbox/devices.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

namespace farm::worker::sandbox {
namespace {

absl::Status WriteText(const std::string& path, absl::string_view value) {
  // cgroupfs files take one write; O_TRUNC is ignored there but keeps fake trees honest.
  FILE* f = fopen(path.c_str(), "we");
  if (f == nullptr) return common::ErrnoToStatus(errno, "open " + path);
  size_t n = fwrite(value.data(), 1, value.size(), f);
  int e = ferror(f) ? errno : 0;
  if (fclose(f) != 0 && e == 0) e = errno;
  if (n != value.size() || e != 0) {
    return common::ErrnoToStatus(e == 0 ? EIO : e, absl::StrCat("write \"", value, "\" to ", path));
  }
  return absl::OkStatus();
}

// Path of `controller`'s cgroup in /proc/self/cgroup ("" for v2's "0::" line).
std::optional<std::string> CgroupPath(const std::string& proc_self_cgroup,
                                      absl::string_view controller) {
  for (absl::string_view line : absl::StrSplit(proc_self_cgroup, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    if (controller.empty()) {
      if (f[0] == "0" && f[1].empty()) return std::string(f[2]);
      continue;
    }
    for (absl::string_view c : absl::StrSplit(f[1], ',')) {
      if (c == controller) return std::string(f[2]);
    }
  }
  return std::nullopt;
}

std::string Join(const std::string& root, const std::string& path) {
  if (path.empty() || path == "/") return root;
  return root + (path[0] == '/' ? "" : "/") + path;
}

absl::StatusOr<std::vector<farm::v1::SandboxCgroup>> PlanV2(const CgroupLimits& limits,
                                                            const CgroupEnv& env,
                                                            const std::string& self_cgroup) {
  std::vector<std::string> needed;
  if (limits.memory_bytes > 0) needed.push_back("memory");
  if (limits.pids > 0) needed.push_back("pids");
  std::optional<std::string> path = CgroupPath(self_cgroup, "");
  if (!path.has_value()) {
    return absl::FailedPreconditionError("cgroup v2: no \"0::\" line in /proc/self/cgroup");
  }
  std::string parent = Join(env.root, *path);
  if (needed.empty()) {
    // Devices only: an eBPF program on a child cgroup; no controller, so no delegation and
    // no "no internal processes" rule to satisfy.
    farm::v1::SandboxCgroup cg;
    cg.set_parent(parent);
    cg.set_v2(true);
    cg.set_devices(true);
    return std::vector<farm::v1::SandboxCgroup>{cg};
  }
  auto available = common::ReadFile(parent + "/cgroup.controllers");
  if (!available.ok()) return common::Annotate(available.status(), "cgroup v2");
  std::vector<std::string> have = absl::StrSplit(absl::StripAsciiWhitespace(*available), ' ');
  for (const std::string& c : needed) {
    if (std::find(have.begin(), have.end(), c) == have.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cgroup v2: controller \"", c, "\" is not delegated to ", parent,
          " (run the worker in a cgroup with it, e.g. a systemd unit with Delegate=yes)"));
    }
  }
  bool is_root = *path == "/" || path->empty();
  if (!is_root) {
    // Processes may not live in a cgroup that distributes controllers: move ourselves to a leaf.
    auto procs = common::ReadFile(parent + "/cgroup.procs");
    if (!procs.ok()) return common::Annotate(procs.status(), "cgroup v2");
    pid_t self = env.self != 0 ? env.self : getpid();
    std::vector<std::string> others;
    for (absl::string_view p : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
      int pid = 0;
      if (absl::SimpleAtoi(p, &pid) && pid != self) others.emplace_back(p);
    }
    if (!others.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cgroup v2: ", parent, " also holds other processes (", absl::StrJoin(others, ","),
          "); give the worker a cgroup of its own (e.g. a systemd unit with Delegate=yes) to "
          "use memory/pids limits"));
    }
    std::string leaf = parent + "/farm-worker";
    if (mkdir(leaf.c_str(), 0755) != 0 && errno != EEXIST) {
      return common::ErrnoToStatus(errno, "cgroup v2: mkdir " + leaf);
    }
    if (!procs->empty()) RETURN_IF_ERROR(WriteText(leaf + "/cgroup.procs", absl::StrCat(self)));
  }
  std::string enable;
  for (const std::string& c : needed) absl::StrAppend(&enable, enable.empty() ? "" : " ", "+", c);
  RETURN_IF_ERROR(common::Annotate(WriteText(parent + "/cgroup.subtree_control", enable),
                                   "cgroup v2: delegating controllers"));
  farm::v1::SandboxCgroup cg;
  cg.set_parent(parent);
  cg.set_v2(true);
  if (limits.memory_bytes > 0) {
    (*cg.mutable_settings())["memory.max"] = absl::StrCat(limits.memory_bytes);
    (*cg.mutable_settings())["memory.swap.max"] = "0";
  }
  if (limits.pids > 0) (*cg.mutable_settings())["pids.max"] = absl::StrCat(limits.pids);
  cg.set_devices(limits.devices);
  return std::vector<farm::v1::SandboxCgroup>{cg};
}

absl::StatusOr<std::vector<farm::v1::SandboxCgroup>> PlanV1(const CgroupLimits& limits,
                                                            const CgroupEnv& env,
                                                            const std::string& self_cgroup) {
  std::vector<farm::v1::SandboxCgroup> out;
  auto add = [&](const char* controller,
                 std::map<std::string, std::string> settings) -> absl::Status {
    std::optional<std::string> path = CgroupPath(self_cgroup, controller);
    std::string mount = env.root + "/" + controller;
    if (!path.has_value() || !common::PathExists(mount)) {
      return absl::FailedPreconditionError(
          absl::StrCat("cgroup v1: the ", controller, " controller is not mounted at ", mount));
    }
    farm::v1::SandboxCgroup cg;
    cg.set_parent(Join(mount, *path));
    for (auto& [k, v] : settings) (*cg.mutable_settings())[k] = v;
    out.push_back(std::move(cg));
    return absl::OkStatus();
  };
  if (limits.memory_bytes > 0) {
    std::string bytes = absl::StrCat(limits.memory_bytes);
    RETURN_IF_ERROR(
        add("memory", {{"memory.limit_in_bytes", bytes}, {"memory.memsw.limit_in_bytes", bytes}}));
  }
  if (limits.pids > 0) RETURN_IF_ERROR(add("pids", {{"pids.max", absl::StrCat(limits.pids)}}));
  std::optional<std::string> devices = CgroupPath(self_cgroup, "devices");
  if (limits.devices && devices.has_value() && common::PathExists(env.root + "/devices")) {
    farm::v1::SandboxCgroup cg;
    cg.set_parent(Join(env.root + "/devices", *devices));
    cg.set_devices(true);
    out.push_back(std::move(cg));
  }
  return out;
}

// Settings that only exist with swap accounting: a missing file is not an error.
bool Optional(const std::string& name) {
  return name == "memory.swap.max" || name == "memory.memsw.limit_in_bytes";
}

}  // namespace

absl::StatusOr<std::vector<farm::v1::SandboxCgroup>> PlanCgroups(const CgroupLimits& limits,
                                                                 const CgroupEnv& env) {
  if (!limits.any()) return std::vector<farm::v1::SandboxCgroup>();
  std::string self_cgroup = env.proc_self_cgroup;
  if (self_cgroup.empty()) {
    ASSIGN_OR_RETURN(self_cgroup, common::ReadFile("/proc/self/cgroup"));
  }
  int version = env.version;
  if (version == 0) {
    struct statfs fs;
    if (statfs(env.root.c_str(), &fs) != 0) {
      return common::ErrnoToStatus(errno, "statfs " + env.root + " (cgroups)");
    }
    version = fs.f_type == CGROUP2_SUPER_MAGIC ? 2 : 1;
  }
  return version == 2 ? PlanV2(limits, env, self_cgroup) : PlanV1(limits, env, self_cgroup);
}

absl::StatusOr<RunCgroup> RunCgroup::Create(
    const google::protobuf::RepeatedPtrField<farm::v1::SandboxCgroup>& plan,
    const std::string& name, bool all_devices) {
  RunCgroup run;
  for (const farm::v1::SandboxCgroup& cg : plan) {
    Dir dir{cg.parent() + "/" + name, cg.v2()};
    if (mkdir(dir.path.c_str(), 0755) != 0 && errno != EEXIST) {
      return common::ErrnoToStatus(errno, "mkdir cgroup " + dir.path);
    }
    run.dirs_.push_back(dir);
    // std::map order puts memory.limit_in_bytes before memory.memsw.limit_in_bytes (required).
    std::map<std::string, std::string> settings(cg.settings().begin(), cg.settings().end());
    for (const auto& [file, value] : settings) {
      std::string path = dir.path + "/" + file;
      if (Optional(file) && !common::PathExists(path)) continue;
      RETURN_IF_ERROR(WriteText(path, value));
    }
    if (cg.devices() && !all_devices) {
      if (cg.v2()) {
        RETURN_IF_ERROR(AttachDeviceFilter(dir.path, StandardDeviceRules()));
      } else {
        RETURN_IF_ERROR(WriteText(dir.path + "/devices.deny", "a"));
        for (const DeviceRule& r : StandardDeviceRules()) {
          // A parent that already refuses a device makes its allow line fail: the device
          // stays refused, which is all we need.
          WriteText(dir.path + "/devices.allow", r.V1String()).IgnoreError();
        }
      }
    }
  }
  return run;
}

RunCgroup::~RunCgroup() { Destroy(); }

absl::Status RunCgroup::AddProcess(pid_t pid) {
  for (const Dir& d : dirs_)
    RETURN_IF_ERROR(WriteText(d.path + "/cgroup.procs", absl::StrCat(pid)));
  return absl::OkStatus();
}

bool RunCgroup::OomKilled() const {
  for (const Dir& d : dirs_) {
    auto text = common::ReadFile(d.path + (d.v2 ? "/memory.events" : "/memory.oom_control"));
    if (!text.ok()) continue;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      int64_t n = 0;
      if (absl::ConsumePrefix(&line, "oom_kill ") && absl::SimpleAtoi(line, &n) && n > 0) {
        return true;
      }
    }
  }
  return false;
}

void RunCgroup::Destroy() {
  for (const Dir& d : dirs_) {
    if (d.v2 && common::PathExists(d.path + "/cgroup.kill")) {
      WriteText(d.path + "/cgroup.kill", "1").IgnoreError();
    }
    // Bounded wait for the kernel to finish tearing the (already killed) processes down.
    for (int attempt = 0; attempt < 200; ++attempt) {
      if (rmdir(d.path.c_str()) == 0 || errno == ENOENT) break;
      if (errno != EBUSY) break;
      auto procs = common::ReadFile(d.path + "/cgroup.procs");
      if (procs.ok()) {
        for (absl::string_view p : absl::StrSplit(*procs, '\n', absl::SkipEmpty())) {
          int pid = 0;
          if (absl::SimpleAtoi(p, &pid) && pid > 0) kill(pid, SIGKILL);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  dirs_.clear();
}

}  // namespace farm::worker::sandbox
