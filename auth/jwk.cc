#include "auth/jwk.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "auth/openssl_util.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm {
namespace auth {

using internal::Base64UrlDecode;
using internal::Base64UrlEncode;
using internal::BioPtr;
using internal::ClearOpenSslErrors;
using internal::EvpPkeyPtr;
using internal::MemBio;
using internal::OpenSslErrors;
using json = nlohmann::json;

namespace {

constexpr int kMinRsaBits = 2048;
constexpr size_t kP256CoordinateSize = 32;
constexpr size_t kEd25519KeySize = 32;

struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
struct EvpPkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, EvpPkeyCtxFree>;
struct EvpMdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, EvpMdCtxFree>;
struct ParamBldFree {
  void operator()(OSSL_PARAM_BLD* p) const { OSSL_PARAM_BLD_free(p); }
};
struct ParamFree {
  void operator()(OSSL_PARAM* p) const { OSSL_PARAM_free(p); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};

std::shared_ptr<EVP_PKEY> Share(EvpPkeyPtr key) {
  return std::shared_ptr<EVP_PKEY>(key.release(), EVP_PKEY_free);
}

std::string BnBytes(const BIGNUM* bn, int pad_to = 0) {
  int n = pad_to > 0 ? pad_to : BN_num_bytes(bn);
  std::string out(static_cast<size_t>(n), '\0');
  if (pad_to > 0) {
    BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), pad_to);
  } else {
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  }
  return out;
}

absl::StatusOr<std::string> GetBnParam(EVP_PKEY* key, const char* name, int pad_to = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) {
    return absl::InternalError(absl::StrCat("reading key parameter ", name, ": ", OpenSslErrors()));
  }
  BnPtr owned(bn);
  return BnBytes(bn, pad_to);
}

// The algorithm a key is for, and its RFC 7638 canonical JWK (members in lexicographic order).
struct KeyFacts {
  JwsAlg alg;
  std::string canonical_jwk;
};

absl::StatusOr<KeyFacts> InspectKey(EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA: {
      int bits = EVP_PKEY_get_bits(key);
      if (bits < kMinRsaBits) {
        return absl::InvalidArgumentError(
            absl::StrCat("RSA key has ", bits, " bits; at least ", kMinRsaBits, " are required"));
      }
      ASSIGN_OR_RETURN(std::string n, GetBnParam(key, OSSL_PKEY_PARAM_RSA_N));
      ASSIGN_OR_RETURN(std::string e, GetBnParam(key, OSSL_PKEY_PARAM_RSA_E));
      return KeyFacts{JwsAlg::kRS256,
                      absl::StrCat(R"({"e":")", Base64UrlEncode(e), R"(","kty":"RSA","n":")",
                                   Base64UrlEncode(n), R"("})")};
    }
    case EVP_PKEY_EC: {
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                         &len) != 1) {
        return absl::InvalidArgumentError("EC key without a named curve");
      }
      if (absl::string_view(group) != "prime256v1") {
        return absl::InvalidArgumentError(
            absl::StrCat("EC key on curve ", group, "; only P-256 (ES256) is supported"));
      }
      ASSIGN_OR_RETURN(std::string x, GetBnParam(key, OSSL_PKEY_PARAM_EC_PUB_X,
                                                 static_cast<int>(kP256CoordinateSize)));
      ASSIGN_OR_RETURN(std::string y, GetBnParam(key, OSSL_PKEY_PARAM_EC_PUB_Y,
                                                 static_cast<int>(kP256CoordinateSize)));
      return KeyFacts{JwsAlg::kES256,
                      absl::StrCat(R"({"crv":"P-256","kty":"EC","x":")", Base64UrlEncode(x),
                                   R"(","y":")", Base64UrlEncode(y), R"("})")};
    }
    case EVP_PKEY_ED25519: {
      std::string x(kEd25519KeySize, '\0');
      size_t len = x.size();
      if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(x.data()), &len) != 1 ||
          len != kEd25519KeySize) {
        return absl::InternalError(absl::StrCat("reading Ed25519 key: ", OpenSslErrors()));
      }
      return KeyFacts{JwsAlg::kEdDSA, absl::StrCat(R"({"crv":"Ed25519","kty":"OKP","x":")",
                                                   Base64UrlEncode(x), R"("})")};
    }
    default:
      return absl::InvalidArgumentError(absl::StrCat("unsupported key type ",
                                                     OBJ_nid2sn(EVP_PKEY_get_base_id(key)),
                                                     " (RSA, EC P-256 and Ed25519 are supported)"));
  }
}

const char* DigestName(JwsAlg alg) { return alg == JwsAlg::kEdDSA ? nullptr : "SHA256"; }

// JWS ES256 signatures are r||s, 32 bytes each (RFC 7518 §3.4); OpenSSL wants DER.
absl::StatusOr<std::string> RawEcdsaToDer(absl::string_view raw) {
  if (raw.size() != 2 * kP256CoordinateSize) {
    return absl::UnauthenticatedError(
        absl::StrCat("ES256 signature is ", raw.size(), " bytes, not 64 (r||s)"));
  }
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()),
                        static_cast<int>(kP256CoordinateSize), nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + kP256CoordinateSize,
                        static_cast<int>(kP256CoordinateSize), nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return absl::InternalError("ECDSA_SIG_set0 failed");
  }
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig.get(), &der);
  if (n <= 0) return absl::InternalError("i2d_ECDSA_SIG failed");
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

absl::StatusOr<std::string> DerEcdsaToRaw(absl::string_view der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ECDSA_SIG, EcdsaSigFree> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig) return absl::InternalError(absl::StrCat("d2i_ECDSA_SIG: ", OpenSslErrors()));
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  return absl::StrCat(BnBytes(r, kP256CoordinateSize), BnBytes(s, kP256CoordinateSize));
}

// ---- JWK parsing.

std::optional<std::string> StringMember(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) return std::nullopt;
  return it->get_ref<const std::string&>();
}

absl::StatusOr<std::string> B64Member(const json& obj, const char* name, absl::string_view what) {
  std::optional<std::string> text = StringMember(obj, name);
  if (!text) return absl::InvalidArgumentError(absl::StrCat(what, ": missing \"", name, "\""));
  std::optional<std::string> bytes = Base64UrlDecode(*text);
  if (!bytes || bytes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", name, "\" is not base64url (RFC 4648 §5, unpadded)"));
  }
  return *bytes;
}

absl::StatusOr<EvpPkeyPtr> FromParams(const char* type, OSSL_PARAM_BLD* bld) {
  std::unique_ptr<OSSL_PARAM, ParamFree> params(OSSL_PARAM_BLD_to_param(bld));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return absl::InvalidArgumentError(OpenSslErrors());
  }
  EvpPkeyPtr owned(key);
  EvpPkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("invalid public key: ", OpenSslErrors()));
  }
  return owned;
}

absl::StatusOr<EvpPkeyPtr> JwkToEvp(const json& jwk, absl::string_view what) {
  std::optional<std::string> kty = StringMember(jwk, "kty");
  if (!kty) return absl::InvalidArgumentError(absl::StrCat(what, ": missing \"kty\""));
  for (const char* priv : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}) {
    if (jwk.contains(priv)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": has private member \"", priv,
                       "\"; a key file for verifying tokens must hold public keys only"));
    }
  }
  std::unique_ptr<OSSL_PARAM_BLD, ParamBldFree> bld(OSSL_PARAM_BLD_new());
  if (*kty == "RSA") {
    ASSIGN_OR_RETURN(std::string n, B64Member(jwk, "n", what));
    ASSIGN_OR_RETURN(std::string e, B64Member(jwk, "e", what));
    BnPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()),
                         static_cast<int>(n.size()), nullptr));
    BnPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()),
                         static_cast<int>(e.size()), nullptr));
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get());
    OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get());
    auto key = FromParams("RSA", bld.get());
    if (!key.ok()) return common::Annotate(key.status(), what);
    return key;
  }
  if (*kty == "EC") {
    std::optional<std::string> crv = StringMember(jwk, "crv");
    if (crv != "P-256") {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": EC curve \"", crv.value_or(""), "\" is not supported (only P-256, for ES256)"));
    }
    ASSIGN_OR_RETURN(std::string x, B64Member(jwk, "x", what));
    ASSIGN_OR_RETURN(std::string y, B64Member(jwk, "y", what));
    if (x.size() != kP256CoordinateSize || y.size() != kP256CoordinateSize) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": P-256 coordinates must be 32 bytes each"));
    }
    std::string pub = absl::StrCat("\x04", x, y);
    OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, pub.data(), pub.size());
    auto key = FromParams("EC", bld.get());
    if (!key.ok()) return common::Annotate(key.status(), what);
    return key;
  }
  if (*kty == "OKP") {
    std::optional<std::string> crv = StringMember(jwk, "crv");
    if (crv != "Ed25519") {
      return absl::InvalidArgumentError(absl::StrCat(what, ": OKP curve \"", crv.value_or(""),
                                                     "\" is not supported (only Ed25519)"));
    }
    ASSIGN_OR_RETURN(std::string x, B64Member(jwk, "x", what));
    if (x.size() != kEd25519KeySize) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": Ed25519 key must be 32 bytes"));
    }
    EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(
        EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(x.data()), x.size()));
    if (!key) return absl::InvalidArgumentError(absl::StrCat(what, ": ", OpenSslErrors()));
    return key;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      what, ": key type \"", *kty, "\" is not supported (RSA, EC and OKP are; never \"oct\")"));
}

absl::StatusOr<std::vector<PublicKey>> ParseJwks(absl::string_view text, absl::string_view name) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a JSON object (a JWK Set)"));
  }
  std::vector<const json*> jwks;
  auto keys = doc.find("keys");
  if (keys != doc.end()) {
    if (!keys->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": \"keys\" is not an array"));
    }
    for (const json& k : *keys) jwks.push_back(&k);
  } else {
    jwks.push_back(&doc);  // a single JWK
  }
  std::vector<PublicKey> out;
  for (size_t i = 0; i < jwks.size(); ++i) {
    const json& jwk = *jwks[i];
    std::string what = absl::StrCat(name, ": key ", i + 1);
    if (!jwk.is_object()) return absl::InvalidArgumentError(absl::StrCat(what, ": not an object"));
    std::optional<std::string> kid = StringMember(jwk, "kid");
    if (kid) absl::StrAppend(&what, " (kid=", *kid, ")");
    std::optional<std::string> use = StringMember(jwk, "use");
    if (use && *use != "sig") continue;  // an encryption key: not ours to use
    ASSIGN_OR_RETURN(EvpPkeyPtr evp, JwkToEvp(jwk, what));
    auto key = PublicKey::FromEvp(Share(std::move(evp)), kid.value_or(""));
    if (!key.ok()) return common::Annotate(key.status(), what);
    std::optional<std::string> alg = StringMember(jwk, "alg");
    if (alg && *alg != JwsAlgName(key->alg())) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": \"alg\" is \"", *alg, "\" but it is ",
                                                     JwsAlgName(key->alg()), " key"));
    }
    out.push_back(*std::move(key));
  }
  return out;
}

absl::StatusOr<std::vector<PublicKey>> ParsePem(absl::string_view text, absl::string_view name) {
  std::vector<PublicKey> out;
  BioPtr bio = MemBio(text);
  for (int block = 1;; ++block) {
    char* type = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    ClearOpenSslErrors();
    if (PEM_read_bio(bio.get(), &type, &header, &data, &len) != 1) {
      if (internal::PemEndOfInput()) break;
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": PEM block ", block, " is malformed (bad base64 or no END line)"));
    }
    std::string block_type(type);
    std::string what = absl::StrCat(name, ": PEM block ", block, " (", block_type, ")");
    const unsigned char* p = data;
    EvpPkeyPtr key;
    if (block_type == "PUBLIC KEY") {
      key.reset(d2i_PUBKEY(nullptr, &p, len));
    } else if (block_type == "CERTIFICATE") {
      internal::X509Ptr cert(d2i_X509(nullptr, &p, len));
      if (cert) key.reset(X509_get_pubkey(cert.get()));
    }
    OPENSSL_free(type);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (absl::StrContains(block_type, "PRIVATE KEY")) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": a private key; servers need only the public key (openssl pkey -pubout)"));
    }
    if (block_type != "PUBLIC KEY" && block_type != "CERTIFICATE") {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": want \"PUBLIC KEY\" (or \"CERTIFICATE\") blocks"));
    }
    if (!key) return absl::InvalidArgumentError(absl::StrCat(what, ": ", OpenSslErrors()));
    auto pk = PublicKey::FromEvp(Share(std::move(key)), "");
    if (!pk.ok()) return common::Annotate(pk.status(), what);
    out.push_back(*std::move(pk));
  }
  return out;
}

int NoPassword(char*, int, int, void*) { return -1; }

}  // namespace

absl::string_view JwsAlgName(JwsAlg alg) {
  switch (alg) {
    case JwsAlg::kRS256:
      return "RS256";
    case JwsAlg::kES256:
      return "ES256";
    case JwsAlg::kEdDSA:
      return "EdDSA";
  }
  return "?";
}

absl::StatusOr<JwsAlg> ParseJwsAlg(absl::string_view name) {
  if (name == "RS256") return JwsAlg::kRS256;
  if (name == "ES256") return JwsAlg::kES256;
  if (name == "EdDSA") return JwsAlg::kEdDSA;
  if (absl::AsciiStrToLower(name) == "none") {
    return absl::InvalidArgumentError("alg \"none\" (an unsigned token) is never accepted");
  }
  if (absl::StartsWith(name, "HS")) {
    return absl::InvalidArgumentError(
        absl::StrCat("alg \"", name,
                     "\" (HMAC, a shared secret) is not accepted: only public-key signatures "
                     "(RS256, ES256, EdDSA)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("alg \"", name, "\" is not supported (RS256, ES256 and EdDSA are)"));
}

absl::StatusOr<PublicKey> PublicKey::FromEvp(std::shared_ptr<EVP_PKEY> key, std::string kid) {
  if (!key) return absl::InvalidArgumentError("no key");
  ASSIGN_OR_RETURN(KeyFacts facts, InspectKey(key.get()));
  PublicKey out;
  out.key_ = std::move(key);
  out.alg_ = facts.alg;
  out.thumbprint_ = Base64UrlEncode(internal::Sha256(facts.canonical_jwk));
  out.canonical_jwk_ = std::move(facts.canonical_jwk);
  out.kid_ = kid.empty() ? out.thumbprint_ : std::move(kid);
  return out;
}

std::string PublicKey::ToJwk() const {
  // canonical_jwk_ is "{...}": insert our members before the closing brace.
  json kid = kid_;
  return absl::StrCat(canonical_jwk_.substr(0, canonical_jwk_.size() - 1), R"(,"alg":")",
                      JwsAlgName(alg_), R"(","kid":)",
                      kid.dump(-1, ' ', false, json::error_handler_t::replace), R"(,"use":"sig"})");
}

absl::Status PublicKey::Verify(JwsAlg alg, absl::string_view signing_input,
                               absl::string_view signature) const {
  if (alg != alg_) {
    return absl::UnauthenticatedError(absl::StrCat("key kid=", kid_, " is an ", JwsAlgName(alg_),
                                                   " key; the token is signed ", JwsAlgName(alg)));
  }
  std::string der;
  if (alg == JwsAlg::kES256) {
    ASSIGN_OR_RETURN(der, RawEcdsaToDer(signature));
    signature = der;
  }
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  ClearOpenSslErrors();
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, DigestName(alg), nullptr, nullptr,
                                      key_.get(), nullptr) != 1) {
    return absl::InternalError(absl::StrCat("EVP_DigestVerifyInit: ", OpenSslErrors()));
  }
  int ok = EVP_DigestVerify(
      ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
      reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  ClearOpenSslErrors();
  if (ok != 1) {
    return absl::UnauthenticatedError(
        absl::StrCat("signature does not verify with key kid=", kid_));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<PublicKey>> ParseKeyFile(absl::string_view text,
                                                    absl::string_view name) {
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(text);
  absl::StatusOr<std::vector<PublicKey>> keys;
  if (absl::StartsWith(trimmed, "{")) {
    keys = ParseJwks(text, name);
  } else if (absl::StartsWith(trimmed, "-----BEGIN")) {
    keys = ParsePem(text, name);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": neither a JWK Set (JSON) nor PEM public keys"));
  }
  if (!keys.ok()) return keys.status();
  if (keys->empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": no signing keys"));
  std::set<std::string> kids;
  for (const PublicKey& k : *keys) {
    if (!kids.insert(k.kid()).second) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": two keys have kid=", k.kid()));
    }
  }
  return keys;
}

absl::StatusOr<SigningKey> SigningKey::FromPem(absl::string_view pem, std::string kid) {
  if (absl::StrContains(pem, "ENCRYPTED")) {
    return absl::InvalidArgumentError("encrypted private keys are not supported");
  }
  BioPtr bio = MemBio(pem);
  ClearOpenSslErrors();
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(absl::StrCat("not a PEM private key: ", OpenSslErrors()));
  }
  return FromEvp(Share(std::move(key)), std::move(kid));
}

absl::StatusOr<SigningKey> SigningKey::FromEvp(std::shared_ptr<EVP_PKEY> key, std::string kid) {
  SigningKey out;
  ASSIGN_OR_RETURN(out.public_key_, PublicKey::FromEvp(key, std::move(kid)));
  out.key_ = std::move(key);
  return out;
}

std::string SigningKey::PublicKeyPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key_.get());
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::StatusOr<std::string> SigningKey::Sign(absl::string_view signing_input) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  ClearOpenSslErrors();
  size_t len = 0;
  if (!ctx ||
      EVP_DigestSignInit_ex(ctx.get(), nullptr, DigestName(alg()), nullptr, nullptr, key_.get(),
                            nullptr) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError(absl::StrCat("signing: ", OpenSslErrors()));
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(signing_input.data()),
                     signing_input.size()) != 1) {
    return absl::InternalError(absl::StrCat("signing: ", OpenSslErrors()));
  }
  sig.resize(len);
  if (alg() == JwsAlg::kES256) return DerEcdsaToRaw(sig);
  return sig;
}

absl::StatusOr<SigningKey> GenerateSigningKey(JwsAlg alg, std::string kid) {
  EVP_PKEY* key = nullptr;
  switch (alg) {
    case JwsAlg::kRS256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
      break;
    case JwsAlg::kES256:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
      break;
    case JwsAlg::kEdDSA:
      key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
      break;
  }
  if (!key) return absl::InternalError(absl::StrCat("key generation: ", OpenSslErrors()));
  return SigningKey::FromEvp(Share(EvpPkeyPtr(key)), std::move(kid));
}

}  // namespace auth
}  // namespace farm
