// Seccomp profiles: farm's own text format (worker/sandbox/profiles/default.seccomp documents
// it), parsed into a SeccompProfile, compiled for one step (its capabilities, the host's
// architecture and kernel) into a classic BPF program with libseccomp, and installed in the
// sandbox just before the command is executed.
//
// Why a format of our own instead of Docker's JSON: the profile is data the reader of this
// repository should be able to review line by line (comments say why a call is allowed), and
// it needs only what Docker's profile uses: allow lists, argument conditions, per-architecture
// and per-capability sections, EPERM by default and ENOSYS for calls newer than the profile.
//
//   ASSIGN_OR_RETURN(const SeccompProfile* p, DefaultSeccompProfile());
//   SeccompTarget t;
//   t.caps = {CAP_CHOWN, ...};  // the step's bounding set
//   ASSIGN_OR_RETURN(std::vector<sock_filter> prog, CompileSeccomp(*p, t));
//   ... in the process about to exec, with CAP_SYS_ADMIN or no_new_privs:
//   RETURN_IF_ERROR(InstallSeccomp(prog));
#ifndef FARM_WORKER_SANDBOX_SECCOMP_PROFILE_H_
#define FARM_WORKER_SANDBOX_SECCOMP_PROFILE_H_

#include <linux/filter.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::worker::sandbox {

struct SeccompAction {
  enum Kind { kAllow, kErrno, kKill };
  Kind kind = kAllow;
  int errno_value = 0;  // kErrno
  bool operator==(const SeccompAction& o) const {
    return kind == o.kind && errno_value == o.errno_value;
  }
};

// argN OP VALUE, or argN & MASK == VALUE (op kMaskedEq).
struct SeccompArg {
  enum Op { kEq, kNe, kLt, kLe, kGt, kGe, kMaskedEq };
  int index = 0;  // 0..5
  Op op = kEq;
  uint64_t mask = 0;
  uint64_t value = 0;
};

// One condition of a [when ...] section.
struct SeccompWhen {
  enum Kind { kCap, kArch, kKernelAtLeast };
  Kind kind = kCap;
  bool negated = false;
  int cap = 0;                      // kCap: the capability's number
  std::vector<std::string> arches;  // kArch: libseccomp names
  int major = 0, minor = 0;         // kKernelAtLeast
};

struct SeccompRule {
  std::vector<std::string> names;
  std::vector<SeccompArg> args;  // all must hold
  SeccompAction action;
  std::vector<SeccompWhen> when;  // the section's conditions (all must hold)
  int line = 0;
};

struct SeccompProfile {
  SeccompAction default_action{SeccompAction::kErrno, 1};
  // For calls numbered above every call the profile names (per architecture); unset (kAllow
  // with has_newer false) means "the default action".
  bool has_newer = false;
  SeccompAction newer_action;
  std::map<std::string, std::vector<std::string>> arches;  // native → the others it covers
  std::vector<SeccompRule> rules;

  // Parses the text; INVALID_ARGUMENT with `name:line: what` on the first error.
  static absl::StatusOr<SeccompProfile> Parse(absl::string_view text, absl::string_view name);
};

// What one step's filter is compiled for.
struct SeccompTarget {
  std::string native_arch;  // libseccomp name ("x86_64"); "" = this machine's
  std::vector<int> caps;    // the step's capabilities (bounding set)
  int kernel_major = 0;     // 0 = the running kernel's (uname)
  int kernel_minor = 0;
};

// The profile compiled into the sandbox (worker/sandbox/profiles/default.seccomp), parsed once.
absl::StatusOr<const SeccompProfile*> DefaultSeccompProfile();

// Compiles `profile` for `target`. The program checks the architecture first (a call through
// an ABI the profile does not cover kills the process), answers calls newer than the profile
// with `newer`, then runs libseccomp's filter of the rules whose sections apply.
// INVALID_ARGUMENT for an architecture the profile has no `arch` line for.
absl::StatusOr<std::vector<sock_filter>> CompileSeccomp(const SeccompProfile& profile,
                                                        const SeccompTarget& target);

// Installs `program` on the calling thread (seccomp(SECCOMP_SET_MODE_FILTER)). The caller must
// have CAP_SYS_ADMIN or have set no_new_privs. Async-signal-safe apart from the error path.
absl::Status InstallSeccomp(const std::vector<sock_filter>& program);

// The number of a capability name ("CAP_SYS_ADMIN"), or -1.
int CapabilityByName(absl::string_view name);

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_SECCOMP_PROFILE_H_
