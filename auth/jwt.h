// Bearer tokens: signed JWTs (RFC 7519, compact JWS RFC 7515) that say who a client is, which
// tenant it builds for, which action-cache scopes it may read and write, and its roles.
// TokenVerifier checks them on servers; MintToken makes them (`farm token`, tests).
//
//   auth::TokenVerifierOptions o;
//   o.key_file = "/etc/farm/jwt/signing.pub";   // PEM public keys or a JWK Set; reloaded
//   o.audience = "farm";                         // optional: required "aud"
//   ASSIGN_OR_RETURN(auto verifier, auth::TokenVerifier::Create(std::move(o)));
//   ASSIGN_OR_RETURN(auth::Identity who, verifier->Verify(token));   // thread-safe
//
//   ASSIGN_OR_RETURN(auth::SigningKey key, auth::SigningKey::FromPem(private_pem));
//   auth::TokenClaims c;  c.subject = "ci-web";  c.tenant = "web";
//   c.read_scopes = {"main", "pr/*"};  c.write_scopes = {"pr/123"};  c.roles = {"submit"};
//   ASSIGN_OR_RETURN(std::string token, auth::MintToken(key, c, absl::Now()));
//
// Claims (everything else is ignored):
//   sub              string, required: who (a person, a CI job, a service)
//   exp              NumericDate, required unless require_expiry is false
//   nbf              NumericDate, optional
//   iat              NumericDate, set by MintToken, not checked
//   iss              string; must equal TokenVerifierOptions::issuer when that is set
//   aud              string or array; must contain TokenVerifierOptions::audience when set
//   farm/tenant      string: the tenant the holder builds for (farm-scheduler trusts only this)
//   farm/cache_read  array of scope patterns the holder may read ("main", "pr/*", "*")
//   farm/cache_write array of scope patterns the holder may write
//   farm/roles       array of roles ("submit", "admin"); "worker" is refused: worker identity
//                    comes only from a worker-CA client certificate
//
// Header: "alg" RS256, ES256 or EdDSA (never "none", never HMAC); "kid" selects the key (without
// it, every key of that algorithm is tried); "crit" is refused.
//
// Every failure is UNAUTHENTICATED with a message that says what is wrong ("token expired at
// 2025-01-01T10:00:00Z", "unknown key id kid=X", "malformed token: part 2 (claims) is not
// base64url", ...) and never contains the token.
//
// Key rotation: Verify() stats the key file at most every `reload_interval` and reloads it when
// its inode, size, mtime or ctime changed. A file that does not parse (or is missing) keeps
// the keys loaded before and is logged once. Replace the file atomically (write + rename) so a
// reader never sees half of it. Rotating: add the new public key beside the old one, start
// minting with the new private key, and remove the old public key once its tokens expired.
#ifndef FARM_AUTH_JWT_H_
#define FARM_AUTH_JWT_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "auth/identity.h"
#include "auth/jwk.h"

namespace farm {
namespace auth {

// The claim names (see above).
inline constexpr char kClaimTenant[] = "farm/tenant";
inline constexpr char kClaimCacheRead[] = "farm/cache_read";
inline constexpr char kClaimCacheWrite[] = "farm/cache_write";
inline constexpr char kClaimRoles[] = "farm/roles";

struct TokenVerifierOptions {
  // PEM public keys or a JWK Set (see jwk.h: ParseKeyFile). Required.
  std::string key_file;
  // When non-empty, "iss" must equal it / "aud" must contain it.
  std::string issuer;
  std::string audience;
  // Tolerance for clocks that disagree, applied to exp and nbf.
  absl::Duration clock_skew = absl::Seconds(60);
  bool require_expiry = true;
  // Tokens longer than this are refused before any parsing.
  size_t max_token_size = 16 << 10;
  // How often Verify() looks at the key file (0: on every call).
  absl::Duration reload_interval = absl::Seconds(10);
  // Verified tokens remembered (by SHA-256), so that verifying the same token again (each call
  // of a client, and ServerAuth's second look from the handler) costs a hash and a lookup.
  // Emptied when the keys change. 0 disables.
  size_t cache_entries = 4096;
  // Time source (tests inject one); default absl::Now.
  std::function<absl::Time()> clock;
  // Where reloads and rejected key files are reported; default: a line on stderr.
  std::function<void(absl::string_view)> log;
};

class TokenVerifier {
 public:
  // Loads the key file; its errors (NOT_FOUND, PERMISSION_DENIED, INVALID_ARGUMENT naming the
  // file and the key) are returned here, unlike later reloads.
  static absl::StatusOr<std::unique_ptr<TokenVerifier>> Create(TokenVerifierOptions options);

  // Verifies `token` (the compact JWS, without "Bearer ") and returns the identity its claims
  // describe. Thread-safe.
  absl::StatusOr<Identity> Verify(absl::string_view token) const;

  // Looks at the key file now (Verify does this by itself every reload_interval): OK if it is
  // unchanged or was reloaded; the load error if it changed but cannot be used (the previous
  // keys stay). Thread-safe.
  absl::Status ReloadIfChanged() const;

  // The key ids in use now.
  std::vector<std::string> key_ids() const;

  struct KeySet;  // internal

 private:
  struct FileSignature {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileSignature& o) const {
      return dev == o.dev && ino == o.ino && size == o.size && mtime_ns == o.mtime_ns &&
             ctime_ns == o.ctime_ns;
    }
  };
  struct CacheEntry {
    Identity identity;
    uint64_t generation = 0;
  };

  explicit TokenVerifier(TokenVerifierOptions options);
  absl::Time Now() const;
  void MaybeReload() const ABSL_LOCKS_EXCLUDED(reload_mu_);
  absl::Status Reload(bool initial) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  std::shared_ptr<const KeySet> keys() const;
  absl::StatusOr<Identity> VerifyUncached(absl::string_view token, const KeySet& keys) const;

  TokenVerifierOptions options_;

  mutable absl::Mutex keys_mu_;
  mutable std::shared_ptr<const KeySet> keys_ ABSL_GUARDED_BY(keys_mu_);

  // Held while looking at / loading the key file (by one thread; others keep verifying).
  mutable absl::Mutex reload_mu_;
  mutable absl::Time next_check_ ABSL_GUARDED_BY(reload_mu_) = absl::InfinitePast();
  mutable FileSignature seen_ ABSL_GUARDED_BY(reload_mu_);  // last file state looked at

  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, CacheEntry> cache_ ABSL_GUARDED_BY(cache_mu_);
};

struct TokenClaims {
  std::string subject;  // required
  std::string tenant;
  std::vector<std::string> read_scopes;
  std::vector<std::string> write_scopes;
  std::vector<std::string> roles;
  std::string issuer;
  std::vector<std::string> audience;
  absl::Duration lifetime = absl::Hours(12);
};

// A signed token for `claims`, issued at `now` and expiring at now + lifetime; the header
// names `key`'s alg and kid. INVALID_ARGUMENT for an empty subject, a bad scope pattern, the
// "worker" role or a non-positive lifetime.
absl::StatusOr<std::string> MintToken(const SigningKey& key, const TokenClaims& claims,
                                      absl::Time now);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_JWT_H_
