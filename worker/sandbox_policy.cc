#include "worker/sandbox_policy.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "executor/entitlements.h"
#include "farm/v1/step.pb.h"

namespace farm::worker {

absl::Status ApplyRunSandbox(const SandboxPolicy& policy, const network::StepNetwork* step_network,
                             absl::string_view network, absl::string_view security,
                             bool check_entitlements, farm::v1::SandboxRequest* req) {
  farm::v1::RunOp run;
  run.set_network(std::string(network));
  run.set_security(std::string(security));
  if (network == "none") {
    req->set_network(farm::v1::SandboxRequest::NONE);
  } else if (network == "host") {
    req->set_network(farm::v1::SandboxRequest::HOST);
  } else if (network.empty() || network == "default") {
    if (step_network != nullptr) {
      step_network->Apply(req);
    } else {
      req->set_network(farm::v1::SandboxRequest::HOST);
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--network=", network, ": want default, none or host"));
  }
  if (security == "insecure") {
    req->set_insecure(true);
  } else if (!security.empty() && security != "sandbox") {
    return absl::InvalidArgumentError(
        absl::StrCat("--security=", security, ": want sandbox or insecure"));
  }
  if (check_entitlements) {
    RETURN_IF_ERROR(executor::CheckRunEntitlements(run, policy.entitlements, "this host"));
  }
  req->set_no_new_privileges(policy.no_new_privileges);
  if (policy.rootless) {
    if (policy.subids.count == 0) {
      return absl::FailedPreconditionError(
          "rootless steps need a subordinate id range (subid-range or subid-user)");
    }
    req->mutable_userns()->set_uid_start(policy.subids.uid_start);
    req->mutable_userns()->set_gid_start(policy.subids.gid_start);
    req->mutable_userns()->set_count(policy.subids.count);
  }
  return absl::OkStatus();
}

}  // namespace farm::worker
