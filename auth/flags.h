// The security flags every Farm server and client takes, registered in one place so that
// farm-cache, farm-scheduler, farm-worker and the farm CLI spell and explain them alike.
//
//   // a server's main():
//   auth::ServerAuthOptions sec;
//   auth::RegisterServerFlags(&fs, &sec);
//   ... fs.Parse(...) ...
//   sec.authorizer = MyServerRules();
//   ASSIGN_OR_RETURN(std::shared_ptr<auth::ServerAuth> sa, auth::ServerAuth::Create(sec));
//
//   // a client (or a server dialing another): prefix "cache-" gives --cache-tls-ca etc.
//   auth::ClientAuthOptions cache_sec;
//   auth::RegisterClientFlags(&fs, "cache-", &cache_sec);
//   ... fs.Parse(...) ...
//   auth::ApplyClientEnvironment(&cache_sec);   // FARM_TLS_CA, FARM_TOKEN, ... (CLI only)
//
// Server flags: --tls-cert FILE, --tls-key FILE, --tls-client-ca FILE, --worker-ca FILE,
// --token-keys FILE, --token-issuer NAME, --token-audience NAME, --insecure.
// Client flags: --PREFIXtls-ca FILE, --PREFIXtls-cert FILE, --PREFIXtls-key FILE, --PREFIXtls,
// --PREFIXtoken-file FILE, and --insecure (unprefixed; registered once per FlagSet by the
// first RegisterClientFlags or RegisterServerFlags call that asks for it).
#ifndef FARM_AUTH_FLAGS_H_
#define FARM_AUTH_FLAGS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/grpc_auth.h"
#include "common/flags.h"

namespace farm {
namespace auth {

// Binds the server flags to `options` (which must outlive `fs`'s Parse).
void RegisterServerFlags(common::FlagSet* fs, ServerAuthOptions* options);

// Binds the client flags, named with `prefix`, to `options`. With `register_insecure`, also
// --insecure (plaintext beyond loopback; a binary that is also a server shares the server's).
void RegisterClientFlags(common::FlagSet* fs, absl::string_view prefix, ClientAuthOptions* options,
                         bool register_insecure = true);

// The server's ServerAuth from its flags. With nothing configured (no TLS, no --token-keys,
// no --worker-ca) authentication is off: ServerAuth::AllowAll (every caller trusted, plaintext,
// loopback only unless --insecure), and `*warning` says so in one line for the server to print
// at start; otherwise ServerAuth::Create (errors: the files'). `authorizer` must be set.
absl::StatusOr<std::shared_ptr<const ServerAuth>> MakeServerAuth(ServerAuthOptions options,
                                                                 std::string* warning);

// Fills what the flags left empty from the environment: FARM_TLS_CA, FARM_TLS_CERT and
// FARM_TLS_KEY (both or neither), FARM_TOKEN (the token itself) or else FARM_TOKEN_FILE.
// INVALID_ARGUMENT if FARM_TLS_CERT and FARM_TLS_KEY come alone.
absl::Status ApplyClientEnvironment(ClientAuthOptions* options);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_FLAGS_H_
