// Keys for signed tokens (JWS, RFC 7515): public keys that verify and private keys that sign,
// loaded from PEM or from a JWK Set (RFC 7517), named by a key id ("kid"). jwt.h builds on it;
// use this header directly only to load or inspect keys.
//
//   ASSIGN_OR_RETURN(std::vector<auth::PublicKey> keys, auth::ParseKeyFile(text, "keys.pem"));
//   RETURN_IF_ERROR(keys[0].Verify(auth::JwsAlg::kES256, signing_input, signature));
//
//   ASSIGN_OR_RETURN(auth::SigningKey key, auth::SigningKey::FromPem(pem));
//   ASSIGN_OR_RETURN(std::string sig, key.Sign(signing_input));   // alg from the key's type
//
// Algorithms: RS256 (RSA >= 2048 bits, PKCS#1 v1.5, SHA-256), ES256 (ECDSA P-256, SHA-256;
// the JWS signature is the raw 64-byte r||s, not DER), EdDSA (Ed25519). Nothing else: HMAC
// ("HS256") never, because a verifier holding a public key must not treat it as a shared
// secret, and "none" never.
//
// Key ids: a JWK's "kid" when it has one; otherwise (and for every PEM key) the key's RFC 7638
// JWK thumbprint, base64url(SHA-256(canonical JWK)). A SigningKey loaded from PEM uses the
// same thumbprint, so a token minted with a private key names the public key a server loaded
// from the matching .pub file without any configuration.
#ifndef FARM_AUTH_JWK_H_
#define FARM_AUTH_JWK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace farm {
namespace auth {

enum class JwsAlg { kRS256, kES256, kEdDSA };

// "RS256", "ES256", "EdDSA".
absl::string_view JwsAlgName(JwsAlg alg);
// INVALID_ARGUMENT naming the algorithms we accept for anything else ("none" and "HS256"
// get their own explanation).
absl::StatusOr<JwsAlg> ParseJwsAlg(absl::string_view name);

// A public key that verifies one algorithm. Copyable (shares the OpenSSL key).
class PublicKey {
 public:
  // `kid` empty: the RFC 7638 thumbprint. Checks the key type and size suit an algorithm.
  static absl::StatusOr<PublicKey> FromEvp(std::shared_ptr<EVP_PKEY> key, std::string kid);

  const std::string& kid() const { return kid_; }
  JwsAlg alg() const { return alg_; }
  // RFC 7638 thumbprint (base64url), whatever the kid.
  const std::string& thumbprint() const { return thumbprint_; }
  // The key as a JWK object with "kid", "alg" and "use": "sig" (one line of JSON), for a JWK Set.
  std::string ToJwk() const;

  // OK if `signature` (JWS form) is `alg`'s valid signature of `signing_input` under this key.
  // UNAUTHENTICATED otherwise (including an `alg` this key is not for).
  absl::Status Verify(JwsAlg alg, absl::string_view signing_input,
                      absl::string_view signature) const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
  std::string kid_;
  std::string thumbprint_;
  std::string canonical_jwk_;  // RFC 7638 member set, sorted, no whitespace
  JwsAlg alg_ = JwsAlg::kRS256;
};

// Parses a key file: a JWK Set (`{"keys": [...]}`), a single JWK object, or PEM text with one
// or more "PUBLIC KEY" blocks (certificates are also accepted: their public keys are used).
// `name` (the file name) is used in errors. INVALID_ARGUMENT for anything malformed, a key
// with private members ("d"), an unsupported key type or curve, RSA under 2048 bits,
// duplicate kids, or no key at all. JWKs with "use" other than "sig" are skipped.
absl::StatusOr<std::vector<PublicKey>> ParseKeyFile(absl::string_view text, absl::string_view name);

// A private key that signs (for minting tokens: `farm token`, tests).
class SigningKey {
 public:
  // PEM private key (PKCS#8 "PRIVATE KEY" or traditional RSA/EC); the algorithm follows from
  // its type (RSA → RS256, P-256 → ES256, Ed25519 → EdDSA). `kid` empty: the thumbprint of its
  // public key. Encrypted keys are not supported.
  static absl::StatusOr<SigningKey> FromPem(absl::string_view pem, std::string kid = "");
  static absl::StatusOr<SigningKey> FromEvp(std::shared_ptr<EVP_PKEY> key, std::string kid = "");

  const std::string& kid() const { return public_key_.kid(); }
  JwsAlg alg() const { return public_key_.alg(); }
  const PublicKey& public_key() const { return public_key_; }
  // The public key as PEM ("-----BEGIN PUBLIC KEY-----"), for a server's key file.
  std::string PublicKeyPem() const;
  // The JWS signature of `signing_input` (ES256: raw r||s).
  absl::StatusOr<std::string> Sign(absl::string_view signing_input) const;

 private:
  std::shared_ptr<EVP_PKEY> key_;
  PublicKey public_key_;
};

// Test and tooling helper: a fresh key pair (RSA 2048, P-256 or Ed25519).
absl::StatusOr<SigningKey> GenerateSigningKey(JwsAlg alg, std::string kid = "");

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_JWK_H_
