// Internal to auth/: RAII owners for OpenSSL objects, the OpenSSL error queue as text, and
// base64url (RFC 4648 §5, unpadded, as JWS uses it).
#ifndef FARM_AUTH_OPENSSL_UTIL_H_
#define FARM_AUTH_OPENSSL_UTIL_H_

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm {
namespace auth {
namespace internal {

struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// Drains OpenSSL's thread-local error queue into one line ("" if empty). Call it right after
// the failing OpenSSL call, and call ClearOpenSslErrors() before one whose failure is expected.
std::string OpenSslErrors();
void ClearOpenSslErrors();

// A read-only memory BIO over `data` (which must outlive it).
BioPtr MemBio(absl::string_view data);

// Every certificate in a PEM text, in order (other PEM blocks are skipped); empty if there is
// none. INVALID_ARGUMENT if a certificate block is malformed.
absl::StatusOr<std::vector<X509Ptr>> ReadPemCertificates(absl::string_view pem);
// After a PEM read returned nothing: whether that was the clean end of the input (OpenSSL's
// "no start line") rather than a malformed block. Clears the error queue either way.
bool PemEndOfInput();

// "CN" of the certificate's subject, or "" if it has none.
std::string CommonName(X509* cert);
// "2031-05-01 10:00:00 UTC"-style text for an ASN1_TIME.
std::string AsnTimeText(const ASN1_TIME* t);

std::string Base64UrlEncode(absl::string_view data);
// Strict: the URL-safe alphabet without padding; a length that no encoding has (n % 4 == 1) or
// non-zero trailing bits are errors. nullopt on error.
std::optional<std::string> Base64UrlDecode(absl::string_view text);

// SHA-256 of `data` (32 raw bytes).
std::string Sha256(absl::string_view data);

}  // namespace internal
}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_OPENSSL_UTIL_H_
