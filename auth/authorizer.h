// Authorization: may this caller call this method on what the request names? Each server
// declares its rules once, as a table (method → who may call it, which cache scope it touches,
// whether the resource must be the caller's tenant's), and grpc_auth.h's ServerAuth applies
// it: the caller part before any handler runs, the request part where the handler has the
// request's details.
//
//   using auth::Rule;
//   ASSIGN_OR_RETURN(auto authz, auth::TableAuthorizer::Create({
//       Rule("/build.bazel.remote.execution.v2.Capabilities/*").Anyone(),
//       Rule("/build.bazel.remote.execution.v2.ActionCache/GetActionResult").Tokens().Reads(),
//       Rule("/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult").Tokens()
//           .Writes(),
//       Rule("/build.bazel.remote.execution.v2.ContentAddressableStorage/*").Tokens().Workers()
//           .Reads(),
//       Rule("/farm.v1.CacheAdmin/*").Role(auth::kRoleAdmin),
//   }));
//   // in a handler, with the request in hand:
//   RETURN_IF_ERROR(authz->Authorize(who, method, auth::RequestInfo::Scope(req.instance_name())));
//
// Who may call (at least one must be given, or Anyone()):
//   Anyone()    no credentials needed
//   Tokens()    any caller with a valid bearer token
//   Role(r)     a caller whose token has role r (implies Tokens())
//   Workers()   a caller with a worker-CA client certificate
// What the request touches (checked for token holders; workers are not scoped):
//   Reads()/Writes()  RequestInfo::instance_name must match a read/write scope pattern
//   TenantOwned()     RequestInfo::owner_tenant must be the token's tenant
// A token with role "admin" passes every Role, scope and tenant check, but is not a worker.
// A method without a rule is denied. "/pkg.Service/*" covers the methods of a service that
// have no rule of their own.
//
// Errors: UNAUTHENTICATED when the rule needs credentials and the caller has none;
// PERMISSION_DENIED (saying which rule, and what the caller has) when it has the wrong ones;
// INTERNAL when a handler's check lacks a detail its rule needs (a wiring bug: fail closed).
#ifndef FARM_AUTH_AUTHORIZER_H_
#define FARM_AUTH_AUTHORIZER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/identity.h"

namespace farm {
namespace auth {

// What the authorization of one call knows beyond the caller and the method.
struct RequestInfo {
  enum class Stage {
    // Before the handler: the request is not read yet. Scope and tenant checks are left for
    // the handler's kRequest check.
    kCall,
    // In the handler: every check the rule asks for is made, and one whose detail is missing
    // fails (INTERNAL).
    kRequest,
  };
  Stage stage = Stage::kRequest;
  // The action-cache scope / REAPI instance name the request reads or writes.
  std::optional<std::string> instance_name;
  // The tenant that owns what the request touches (a build).
  std::optional<std::string> owner_tenant;

  static RequestInfo Call() {
    RequestInfo r;
    r.stage = Stage::kCall;
    return r;
  }
  static RequestInfo Scope(std::string instance_name) {
    RequestInfo r;
    r.instance_name = std::move(instance_name);
    return r;
  }
  static RequestInfo OwnedBy(std::string tenant) {
    RequestInfo r;
    r.owner_tenant = std::move(tenant);
    return r;
  }
};

class Authorizer {
 public:
  using Ptr = std::shared_ptr<const Authorizer>;
  virtual ~Authorizer() = default;
  // OK if `identity` may call `full_method` ("/package.Service/Method") on what `request`
  // names; otherwise an error as described above. Thread-safe.
  virtual absl::Status Authorize(const Identity& identity, absl::string_view full_method,
                                 const RequestInfo& request) const = 0;
};

// Allows everything: a server whose authentication is off (explicitly) uses it.
Authorizer::Ptr AllowAllAuthorizer();

enum class ScopeAccess { kNone, kRead, kWrite };

// One row of a rule table; build it with the chained setters.
struct Rule {
  explicit Rule(std::string full_method) : method(std::move(full_method)) {}
  Rule& Anyone() {
    anyone = true;
    return *this;
  }
  Rule& Tokens() {
    tokens = true;
    return *this;
  }
  Rule& Role(absl::string_view r) {
    tokens = true;
    role = std::string(r);
    return *this;
  }
  Rule& Workers() {
    workers = true;
    return *this;
  }
  Rule& Reads() {
    scope = ScopeAccess::kRead;
    return *this;
  }
  Rule& Writes() {
    scope = ScopeAccess::kWrite;
    return *this;
  }
  Rule& TenantOwned() {
    tenant_owned = true;
    return *this;
  }

  std::string method;
  bool anyone = false;
  bool tokens = false;
  std::string role;
  bool workers = false;
  ScopeAccess scope = ScopeAccess::kNone;
  bool tenant_owned = false;
};

class TableAuthorizer : public Authorizer {
 public:
  // INVALID_ARGUMENT for a malformed method name, a duplicate, or a rule that lets nobody in.
  static absl::StatusOr<std::unique_ptr<TableAuthorizer>> Create(std::vector<Rule> rules);

  absl::Status Authorize(const Identity& identity, absl::string_view full_method,
                         const RequestInfo& request) const override;

  // The rule that applies to `full_method`, or nullptr.
  const Rule* Find(absl::string_view full_method) const;

 private:
  TableAuthorizer() = default;
  std::vector<Rule> rules_;
  absl::flat_hash_map<std::string, size_t> index_;  // method or "/pkg.Service/*" → rule
};

// "/" + service + "/" + method, e.g. FullMethodName(farm::v1::Scheduler::service_full_name(),
// "SubmitBuild") → "/farm.v1.Scheduler/SubmitBuild" (what gRPC puts in :path).
std::string FullMethodName(absl::string_view service_full_name, absl::string_view method);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_AUTHORIZER_H_
