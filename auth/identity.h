// Identity: who an authenticated caller is and what the credentials it presented allow, the
// common currency of auth/ (jwt.h makes one from a bearer token, grpc_auth.h from a token and/or
// a client certificate; authorizer.h decides with it).
//
//   ASSIGN_OR_RETURN(auth::Identity who, verifier->Verify(token));
//   if (!who.CanWrite("pr/123")) return absl::PermissionDeniedError(...);
//   if (who.HasRole(auth::kRoleAdmin)) ...
//
// Where each field comes from:
//   subject       token claim "sub"; for a worker certificate without a token, the worker id
//   tenant        token claim "farm/tenant" (empty: none)
//   read_scopes   token claim "farm/cache_read"  (scope patterns, see ScopeMatches)
//   write_scopes  token claim "farm/cache_write"
//   roles         token claim "farm/roles" ("submit", "admin", ...), plus "worker" when (and only
//                 when) the peer presented a certificate from the worker CA
//   worker_id     the CN of a verified worker-CA client certificate (empty otherwise)
//   certificate   the CN of any verified client certificate (empty if none)
#ifndef FARM_AUTH_IDENTITY_H_
#define FARM_AUTH_IDENTITY_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace farm {
namespace auth {

// Roles a token may carry (claim "farm/roles"). Free-form strings; these are the ones Farm's
// servers check.
inline constexpr absl::string_view kRoleSubmit = "submit";  // submit builds (farm-scheduler)
inline constexpr absl::string_view kRoleAdmin = "admin";    // everything but worker RPCs
// Granted by a worker-CA client certificate only; a token claiming it is rejected.
inline constexpr absl::string_view kRoleWorker = "worker";

struct Identity {
  std::string subject;
  std::string tenant;
  std::vector<std::string> read_scopes;
  std::vector<std::string> write_scopes;
  std::vector<std::string> roles;
  std::string worker_id;
  std::string certificate;

  // Whether a bearer token was verified for this caller (and when it expires, if so).
  bool has_token = false;
  absl::Time token_expiry = absl::InfiniteFuture();
  std::string token_key_id;  // the key ("kid") that verified the token

  // Nobody: no token and no client certificate.
  bool anonymous() const { return !has_token && certificate.empty(); }
  bool is_worker() const { return !worker_id.empty(); }
  bool HasRole(absl::string_view role) const;
  // Whether a read (write) scope pattern matches `scope` (an action-cache scope / REAPI
  // instance name such as "main" or "pr/123").
  bool CanRead(absl::string_view scope) const;
  bool CanWrite(absl::string_view scope) const;

  // One line for logs and audit records, e.g. `token sub=alice tenant=web` or `worker w1`;
  // never contains the token.
  std::string DebugString() const;
};

// Scope patterns: an exact scope ("main", "" for REAPI's default instance) or a prefix ending
// in '*' ("pr/*" matches "pr/1" and "pr/1/x"; "*" matches every scope). '*' is special only at
// the end.
bool ScopeMatches(absl::string_view pattern, absl::string_view scope);
// INVALID_ARGUMENT if `pattern` has a '*' before its end or a control character.
absl::Status ValidateScopePattern(absl::string_view pattern);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_IDENTITY_H_
