#include "auth/flags.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"

namespace farm {
namespace auth {

namespace {

std::string Env(const char* name) {
  const char* v = getenv(name);
  return v ? v : "";
}

}  // namespace

void RegisterServerFlags(common::FlagSet* fs, ServerAuthOptions* o) {
  fs->String("tls-cert", 0, &o->tls.cert_file,
             "Serve TLS with this PEM certificate chain (with --tls-key)", "FILE");
  fs->String("tls-key", 0, &o->tls.key_file, "PEM private key of --tls-cert (mode 0600)", "FILE");
  fs->String("tls-client-ca", 0, &o->tls.client_ca_file,
             "Verify client certificates against these PEM CA certificates (client-cas.crt)",
             "FILE");
  fs->String("worker-ca", 0, &o->worker_ca_file,
             "Client certificates from this CA are workers, named by their CN (worker-ca.crt; "
             "must be in --tls-client-ca)",
             "FILE");
  fs->String("token-keys", 0, &o->tokens.key_file,
             "Accept bearer tokens signed by these public keys (PEM or JWK Set; reloaded when "
             "the file changes)",
             "FILE");
  fs->String("token-issuer", 0, &o->tokens.issuer, "Require this \"iss\" in tokens", "NAME");
  fs->String("token-audience", 0, &o->tokens.audience, "Require this \"aud\" in tokens", "NAME");
  fs->Custom("token-clock-skew", 0, "DURATION",
             "How far clients' clocks may be off: a token is accepted this long past its "
             "\"exp\" (default 60s; 0s for none)",
             [o](absl::string_view v) -> absl::Status {
               absl::Duration d;
               if (!absl::ParseDuration(v, &d) || d < absl::ZeroDuration() || d > absl::Hours(1)) {
                 return absl::InvalidArgumentError(absl::StrCat(
                     "--token-clock-skew ", v, ": want a duration from 0s to 1h, e.g. 30s"));
               }
               o->tokens.clock_skew = d;
               return absl::OkStatus();
             });
  fs->Bool("insecure", 0, &o->insecure,
           "Serve plaintext on a non-loopback address (no TLS: only on a trusted network)");
}

void RegisterClientFlags(common::FlagSet* fs, absl::string_view prefix, ClientAuthOptions* o,
                         bool register_insecure) {
  fs->String(absl::StrCat(prefix, "tls-ca"), 0, &o->tls.ca_file,
             "Use TLS and verify the server against these PEM CA certificates (ca.crt)", "FILE");
  fs->String(absl::StrCat(prefix, "tls-cert"), 0, &o->tls.cert_file,
             "Client certificate for mutual TLS (PEM, with the key)", "FILE");
  fs->String(absl::StrCat(prefix, "tls-key"), 0, &o->tls.key_file,
             "PEM private key of the client certificate", "FILE");
  fs->Bool(absl::StrCat(prefix, "tls"), 0, &o->tls.use_tls,
           "Use TLS, verifying the server against the system's CA certificates");
  fs->String(absl::StrCat(prefix, "token-file"), 0, &o->token_file,
             "Send the bearer token in this file (read again when it changes)", "FILE");
  if (register_insecure) {
    fs->Bool("insecure", 0, &o->insecure,
             "Connect in plaintext to a non-loopback address (no TLS, and then no token)");
  }
}

absl::StatusOr<std::shared_ptr<const ServerAuth>> MakeServerAuth(ServerAuthOptions options,
                                                                 std::string* warning) {
  warning->clear();
  if (!options.tls.enabled() && options.tokens.key_file.empty() && options.worker_ca_file.empty() &&
      options.tls.client_ca_file.empty()) {
    *warning =
        options.insecure
            ? "AUTHENTICATION IS OFF and --insecure serves plaintext beyond loopback: anyone "
              "who reaches the port is trusted with everything (see README, Security)"
            : "authentication is off (no --tls-cert, --token-keys, --worker-ca): every local "
              "caller is trusted; serving plaintext on loopback only (see README, Security)";
    return std::shared_ptr<const ServerAuth>(ServerAuth::AllowAll(options.insecure));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ServerAuth> sa, ServerAuth::Create(std::move(options)));
  return std::shared_ptr<const ServerAuth>(std::move(sa));
}

absl::Status ApplyClientEnvironment(ClientAuthOptions* o) {
  if (o->tls.ca_file.empty()) o->tls.ca_file = Env("FARM_TLS_CA");
  if (o->tls.cert_file.empty() && o->tls.key_file.empty()) {
    o->tls.cert_file = Env("FARM_TLS_CERT");
    o->tls.key_file = Env("FARM_TLS_KEY");
    if (o->tls.cert_file.empty() != o->tls.key_file.empty()) {
      return absl::InvalidArgumentError("set FARM_TLS_CERT and FARM_TLS_KEY together");
    }
  }
  if (o->token.empty() && o->token_file.empty()) {
    o->token = Env("FARM_TOKEN");
    if (o->token.empty()) o->token_file = Env("FARM_TOKEN_FILE");
  }
  return absl::OkStatus();
}

}  // namespace auth
}  // namespace farm
