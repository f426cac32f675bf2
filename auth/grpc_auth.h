// Authentication and authorization of gRPC calls, server and client side.
//
// Server: ServerAuth checks every call before any handler runs (the bearer token in metadata
// "authorization: Bearer <jwt>", the TLS client certificate, and the server's rule for the
// method) and refuses it with UNAUTHENTICATED / PERMISSION_DENIED; handlers then ask it who the
// caller is and for the checks that need the request (cache scope, owning tenant).
//
//   auth::ServerAuthOptions o;                 // usually from auth/flags.h
//   o.tls = {...};  o.tokens.key_file = "/etc/farm/jwt/signing.pub";
//   o.worker_ca_file = "/etc/farm/tls/worker-ca.crt";
//   o.authorizer = std::move(my_server_rules);  // authorizer.h: TableAuthorizer
//   ASSIGN_OR_RETURN(std::shared_ptr<auth::ServerAuth> sa, auth::ServerAuth::Create(o));
//   ASSIGN_OR_RETURN(auto creds, sa->Credentials(listen));   // TLS or plaintext + the check
//   builder.AddListeningPort(listen, creds, &port);
//
//   // in a handler (CallbackServerContext* ctx):
//   ASSIGN_OR_RETURN(auth::Identity who, sa->Authorize(*ctx, kUpdateActionResult,
//                                                     auth::RequestInfo::Scope(instance)));
//
// Client: ClientCredentials gives channel credentials that speak TLS when configured and add
// the bearer token to every call.
//
//   auth::ClientAuthOptions c;  c.tls.ca_file = "/etc/farm/tls/ca.crt";
//   c.token_file = "~/.config/farm/token";
//   ASSIGN_OR_RETURN(auto creds, auth::ClientCredentials(target, c));
//   auto channel = grpc::CreateCustomChannel(target, creds, args);
//
// How it is built on gRPC 1.51, and why:
// - The per-call check is a core auth metadata processor (grpc_auth_metadata_processor)
//   attached to the server credentials. It runs in the server's auth filter after the
//   headers arrive and before the call reaches any handler, sees ":path" (the method) and
//   the peer's verified certificate, and its status goes to the client as is.
// - It is attached through gRPC's C API, because the C++ route does not cover plaintext:
//   grpc::InsecureServerCredentials()->SetAuthMetadataProcessor() aborts the process
//   (insecure_server_credentials.cc: "assertion failed: 0"). Core insecure credentials do run
//   a processor, so ServerAuth wraps core credentials (TLS or plaintext) in a small
//   grpc::ServerCredentials subclass. That subclass overrides the private virtual
//   AddPortToServer of gRPC 1.51's ServerCredentials: a gRPC upgrade that changes that class
//   breaks the build here, loudly, not the behaviour.
// - A server interceptor (grpc::experimental::ServerInterceptorFactoryInterface) cannot do
//   this: on the server side it can neither fail a call nor skip the handler (Hijack() is
//   client-only; TryCancel() makes the client see CANCELLED, not UNAUTHENTICATED).
// - The identity is not passed to handlers through AuthContext properties: that context
//   belongs to the connection, and properties one call adds are seen by every later call on
//   it (measured: a token's subject stayed visible to the next, tokenless, call). Handlers
//   instead get it again from their own call's metadata and certificate; TokenVerifier's
//   cache makes the second verification a hash and a lookup.
// - Client side: with TLS, the token is a call credential (grpc::MetadataCredentialsPlugin)
//   composed with grpc::SslCredentials. Without TLS gRPC refuses to send call credentials, so
//   to a loopback server they go over grpc::experimental::LocalCredentials (plaintext on the
//   wire, peers checked to be local) with the credential's minimum security level lowered; to
//   any other address a token is never sent in plaintext (FAILED_PRECONDITION).
#ifndef FARM_AUTH_GRPC_AUTH_H_
#define FARM_AUTH_GRPC_AUTH_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "auth/authorizer.h"
#include "auth/identity.h"
#include "auth/jwt.h"
#include "auth/tls.h"

namespace grpc {
class ChannelCredentials;
class ServerContextBase;
class ServerCredentials;
}  // namespace grpc

namespace farm {
namespace auth {

struct ServerAuthOptions {
  // TLS when cert and key are set; plaintext otherwise (loopback only, unless `insecure`).
  TlsServerOptions tls;
  bool insecure = false;
  // Client certificates issued by a CA in this PEM file identify workers (worker id = the
  // certificate's CN). Must also be among tls.client_ca_file's CAs. Empty: no workers.
  std::string worker_ca_file;
  // Bearer tokens (jwt.h). tokens.key_file empty: tokens are refused.
  TokenVerifierOptions tokens;
  // The server's rules (required).
  Authorizer::Ptr authorizer;
  // Audit lines and token key reloads; default: stderr.
  std::function<void(absl::string_view)> log;
};

class ServerAuth {
 public:
  // Loads and checks every file (TLS, worker CA, token keys): their errors come from here.
  static absl::StatusOr<std::unique_ptr<ServerAuth>> Create(ServerAuthOptions options);
  // No TLS, no tokens, every call allowed (callers are anonymous): for in-process and test
  // servers, and a server whose operator turned authentication off. Still plaintext only on
  // loopback unless `insecure`.
  static std::unique_ptr<ServerAuth> AllowAll(bool insecure = false);
  ~ServerAuth();

  // Server credentials for `listen` with the per-call check attached: TLS if configured,
  // else plaintext (FAILED_PRECONDITION unless `listen` is loopback or `insecure`). May be
  // called for several ports. The credentials keep what they need alive.
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
      absl::string_view listen) const;

  // The caller of the call `ctx` belongs to (anonymous if it presented nothing). Errors are
  // those the pre-handler check already returned to the client (so, in a handler, rare:
  // a token that expired in between).
  absl::StatusOr<Identity> IdentityOf(const grpc::ServerContextBase& ctx) const;
  // IdentityOf + the authorizer's check for `full_method` with the request's details.
  // Returns the identity, so a handler needs one call for both.
  absl::StatusOr<Identity> Authorize(const grpc::ServerContextBase& ctx,
                                     absl::string_view full_method,
                                     const RequestInfo& request) const;
  // Writes "audit: ACTION by IDENTITY from PEER" to the log (submit, cancel, gc, worker join).
  void Audit(const grpc::ServerContextBase& ctx, const Identity& who,
             absl::string_view action) const;

  // Whether calls are over TLS, and whether tokens are accepted.
  bool tls() const;
  // Whether this is AllowAll(): every caller trusted, scopes and tenants not checked.
  bool allows_all() const;
  const TokenVerifier* token_verifier() const;

  struct Core;  // internal, shared with the credentials

 private:
  explicit ServerAuth(std::shared_ptr<Core> core) : core_(std::move(core)) {}
  std::shared_ptr<Core> core_;
};

struct ClientAuthOptions {
  TlsClientOptions tls;
  // The bearer token: the token itself (e.g. from $FARM_TOKEN), or a file holding it (read
  // again whenever it changes, so a renewed token is picked up). At most one.
  std::string token;
  std::string token_file;
  // Allow plaintext to a non-loopback address (then no token may be configured).
  bool insecure = false;
};

// Channel credentials for `target` (see the header comment). Errors: the TLS files'
// (tls.h), an unreadable token file, FAILED_PRECONDITION for plaintext to a non-loopback
// target without `insecure`, or a token that would go there in plaintext.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    absl::string_view target, const ClientAuthOptions& options);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_GRPC_AUTH_H_
