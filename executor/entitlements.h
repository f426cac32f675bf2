// Entitlements: what a RUN step may do beyond the default sandbox, named as BuildKit names
// them. A step gets one only when BOTH the build asks for it (`farm build --allow NAME`,
// `farm submit --allow NAME`, like `docker buildx build --allow`) AND the host permits it
// (embedded: $FARM_HOME/sandbox.conf; a farm: farm-scheduler --allow-entitlement, and every
// farm-worker --allow-entitlement again, since a worker does not trust the scheduler blindly).
//
//   network.host       RUN --network=host (and farm build --network host): the host's network
//   security.insecure  RUN --security=insecure: all capabilities, no seccomp filter, no masked
//                      paths, every device
//
// The planner checks them at plan time (an error names the Dockerfile line); workers check
// the step they receive against their own permission (CheckRunEntitlements).
//
//   std::vector<std::string> need = executor::RequiredEntitlements(run);
//   RETURN_IF_ERROR(executor::CheckRunEntitlements(run, permitted, "this worker"));
#ifndef FARM_EXECUTOR_ENTITLEMENTS_H_
#define FARM_EXECUTOR_ENTITLEMENTS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "farm/v1/step.pb.h"

namespace farm::executor {

inline constexpr char kNetworkHost[] = "network.host";
inline constexpr char kSecurityInsecure[] = "security.insecure";

// The entitlements farm knows.
inline const std::vector<std::string>& KnownEntitlements() {
  static const std::vector<std::string>* known =
      new std::vector<std::string>{kNetworkHost, kSecurityInsecure};
  return *known;
}

// INVALID_ARGUMENT unless `name` is a known entitlement; `what` names the flag or setting.
inline absl::Status CheckEntitlementName(absl::string_view name, absl::string_view what) {
  for (const std::string& k : KnownEntitlements()) {
    if (name == k) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(what, " ", name, ": unknown entitlement (want ",
                                                 absl::StrJoin(KnownEntitlements(), " or "), ")"));
}

// The entitlements a RUN step needs, by its flags.
inline std::vector<std::string> RequiredEntitlements(const farm::v1::RunOp& run) {
  std::vector<std::string> need;
  if (run.network() == "host") need.push_back(kNetworkHost);
  if (run.security() == "insecure") need.push_back(kSecurityInsecure);
  return need;
}

// The RUN flag that needs `entitlement`, as the user wrote it.
inline std::string EntitlementFlag(absl::string_view entitlement) {
  if (entitlement == kNetworkHost) return "--network=host";
  if (entitlement == kSecurityInsecure) return "--security=insecure";
  return std::string(entitlement);
}

// FAILED_PRECONDITION when `run` needs an entitlement `permitted` lacks: "RUN
// --security=insecure needs the security.insecure entitlement, which <who> does not permit".
inline absl::Status CheckRunEntitlements(const farm::v1::RunOp& run,
                                         const std::set<std::string>& permitted,
                                         absl::string_view who) {
  for (const std::string& e : RequiredEntitlements(run)) {
    if (permitted.count(e) == 0) {
      return absl::FailedPreconditionError(absl::StrCat("RUN ", EntitlementFlag(e), " needs the ",
                                                        e, " entitlement, which ", who,
                                                        " does not permit"));
    }
  }
  return absl::OkStatus();
}

}  // namespace farm::executor

#endif  // FARM_EXECUTOR_ENTITLEMENTS_H_
