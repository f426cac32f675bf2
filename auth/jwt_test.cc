#include "auth/jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "auth/jwk.h"
#include "auth/openssl_util.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm {
namespace auth {
namespace {

using internal::Base64UrlDecode;
using internal::Base64UrlEncode;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kStart = absl::FromUnixSeconds(1700000000);  // 2023-11-14T22:13:20Z

SigningKey NewKey(JwsAlg alg, std::string kid = "") {
  absl::StatusOr<SigningKey> k = GenerateSigningKey(alg, std::move(kid));
  EXPECT_TRUE(k.ok()) << k.status();
  return *std::move(k);
}

// A token with a hand-made header and claims, signed by `key` (or with `signature` as is).
std::string Craft(const std::string& header, const std::string& claims, const SigningKey* key,
                  const std::string* signature = nullptr) {
  std::string input = absl::StrCat(Base64UrlEncode(header), ".", Base64UrlEncode(claims));
  std::string sig = signature ? *signature : key ? *key->Sign(input) : "";
  return absl::StrCat(input, ".", Base64UrlEncode(sig));
}

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("jwt-test");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    key_file_ = tmp_->path() + "/keys.pem";
  }

  void WriteKeys(const std::vector<const SigningKey*>& keys) {
    std::string pem;
    for (const SigningKey* k : keys) pem += k->PublicKeyPem();
    ASSERT_TRUE(common::WriteFileAtomic(key_file_, pem).ok());
  }

  std::unique_ptr<TokenVerifier> Verifier(TokenVerifierOptions o = {}) {
    o.key_file = key_file_;
    o.clock = [this] { return now_; };
    o.log = [this](absl::string_view line) { log_.emplace_back(line); };
    auto v = TokenVerifier::Create(std::move(o));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *std::move(v) : nullptr;
  }

  std::string Mint(const SigningKey& key, TokenClaims c = {}) {
    if (c.subject.empty()) c.subject = "alice";
    auto t = MintToken(key, c, now_);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::string key_file_;
  absl::Time now_ = kStart;
  std::vector<std::string> log_;
};

TEST(Base64UrlTest, RoundTripsAndIsStrict) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00\x01"}) {
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(s)), s);
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zm9v=").has_value());  // padding
  EXPECT_FALSE(Base64UrlDecode("+/8").has_value());    // the other alphabet
  EXPECT_FALSE(Base64UrlDecode("Zm9vY").has_value());  // no encoding is 4n+1 long
  EXPECT_FALSE(Base64UrlDecode("Zh").has_value());     // non-zero trailing bits ("Zg" is "f")
}

TEST(JwkTest, Rfc7638ThumbprintExample) {
  // RFC 7638 §3.1.
  std::string jwk = R"({"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29","n":")"
                    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFF"
                    "xuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt"
                    "7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6q"
                    "MQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHa"
                    "Q-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw\"}";
  auto keys = ParseKeyFile(jwk, "rfc.jwk");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
  EXPECT_EQ((*keys)[0].kid(), "2011-04-29");
  EXPECT_EQ((*keys)[0].alg(), JwsAlg::kRS256);
}

TEST(JwkTest, PemKeysAreNamedByThumbprintAndMatchTheSigningKey) {
  for (JwsAlg alg : {JwsAlg::kRS256, JwsAlg::kES256, JwsAlg::kEdDSA}) {
    SigningKey k = NewKey(alg);
    auto keys = ParseKeyFile(k.PublicKeyPem(), "k.pub");
    ASSERT_TRUE(keys.ok()) << keys.status();
    ASSERT_EQ(keys->size(), 1u);
    EXPECT_EQ((*keys)[0].kid(), k.kid());
    EXPECT_EQ((*keys)[0].alg(), alg);
    // The JWK form names the same key.
    auto again = ParseKeyFile((*keys)[0].ToJwk(), "k.jwk");
    ASSERT_TRUE(again.ok()) << again.status() << " " << (*keys)[0].ToJwk();
    EXPECT_EQ((*again)[0].thumbprint(), k.kid());
  }
}

TEST(JwkTest, RejectsBadKeyFiles) {
  SigningKey ec = NewKey(JwsAlg::kES256);
  auto check = [](absl::string_view text, absl::string_view want) {
    auto keys = ParseKeyFile(text, "f");
    ASSERT_FALSE(keys.ok()) << text;
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(keys.status().message(), HasSubstr(want)) << text;
  };
  check("", "neither a JWK Set");
  check("hello", "neither a JWK Set");
  check("{", "not a JSON object");
  check(R"({"keys": 3})", "not an array");
  check(R"({"keys": []})", "no signing keys");
  check(R"({"keys": [{"kty":"oct","k":"c2VjcmV0"}]})", "private member \"k\"");
  check(R"({"keys": [{"kty":"oct"}]})", "key type \"oct\" is not supported");
  check(R"({"keys": [{"kty":"EC","crv":"P-384","x":"AA","y":"AA"}]})", "P-384");
  check(R"({"keys": [{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]})", "32 bytes");
  check(R"({"keys": [{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]})", "private member \"d\"");
  std::string ec_jwk = ec.public_key().ToJwk();
  check(absl::StrCat(R"({"keys": [)", ec_jwk, ",", ec_jwk, "]}"), "two keys have kid=");
  // A good key, then a damaged one: not silently one key.
  check(absl::StrCat(ec.PublicKeyPem(),
                     "-----BEGIN PUBLIC KEY-----\nMFkw!!\n-----END PUBLIC KEY-----\n"),
        "PEM block 2 is malformed");
  // A JWK whose alg disagrees with its key type.
  std::string wrong_alg = ec_jwk;
  wrong_alg.replace(wrong_alg.find("ES256"), 5, "RS256");
  check(wrong_alg, "\"alg\" is \"RS256\"");
  // A private key where the public one belongs.
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), raw, nullptr, nullptr, 0, nullptr, nullptr);
  EVP_PKEY_free(raw);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  check(std::string(data, n), "a private key; servers need only the public key");
  // Too-small RSA keys.
  EVP_PKEY* small = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{1024});
  auto pk = PublicKey::FromEvp(std::shared_ptr<EVP_PKEY>(small, EVP_PKEY_free), "");
  ASSERT_FALSE(pk.ok());
  EXPECT_THAT(pk.status().message(), HasSubstr("at least 2048"));
}

TEST(JwkTest, EncryptionKeysInAJwkSetAreSkipped) {
  SigningKey a = NewKey(JwsAlg::kES256);
  SigningKey b = NewKey(JwsAlg::kES256);
  std::string enc = b.public_key().ToJwk();
  enc.replace(enc.find("\"use\":\"sig\""), 11, "\"use\":\"enc\"");
  auto keys =
      ParseKeyFile(absl::StrCat(R"({"keys":[)", a.public_key().ToJwk(), ",", enc, "]}"), "f");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].kid(), a.kid());
}

TEST(JwsAlgTest, RefusesNoneAndHmac) {
  EXPECT_THAT(ParseJwsAlg("none").status().message(), HasSubstr("never accepted"));
  EXPECT_THAT(ParseJwsAlg("NONE").status().message(), HasSubstr("never accepted"));
  EXPECT_THAT(ParseJwsAlg("HS256").status().message(), HasSubstr("HMAC"));
  EXPECT_THAT(ParseJwsAlg("PS512").status().message(), HasSubstr("not supported"));
  EXPECT_EQ(*ParseJwsAlg("EdDSA"), JwsAlg::kEdDSA);
}

TEST_F(JwtTest, VerifiesEachAlgorithmAndMapsTheClaims) {
  for (JwsAlg alg : {JwsAlg::kRS256, JwsAlg::kES256, JwsAlg::kEdDSA}) {
    SigningKey key = NewKey(alg);
    WriteKeys({&key});
    auto v = Verifier();
    TokenClaims c;
    c.subject = "ci-web";
    c.tenant = "web";
    c.read_scopes = {"main", "pr/*"};
    c.write_scopes = {"pr/123"};
    c.roles = {"submit"};
    std::string token = Mint(key, c);
    auto id = v->Verify(token);
    ASSERT_TRUE(id.ok()) << JwsAlgName(alg) << ": " << id.status();
    EXPECT_EQ(id->subject, "ci-web");
    EXPECT_EQ(id->tenant, "web");
    EXPECT_THAT(id->read_scopes, ElementsAre("main", "pr/*"));
    EXPECT_THAT(id->write_scopes, ElementsAre("pr/123"));
    EXPECT_THAT(id->roles, ElementsAre("submit"));
    EXPECT_TRUE(id->has_token);
    EXPECT_EQ(id->token_key_id, key.kid());
    EXPECT_EQ(id->token_expiry, kStart + c.lifetime);
    EXPECT_TRUE(id->CanRead("pr/7"));
    EXPECT_FALSE(id->CanWrite("main"));
    // ES256 signatures are raw r||s.
    if (alg == JwsAlg::kES256) {
      std::vector<std::string> parts = absl::StrSplit(token, '.');
      EXPECT_EQ(Base64UrlDecode(parts[2])->size(), 64u);
    }
  }
}

TEST_F(JwtTest, ExpiryAndNotBeforeUseTheClockWithSkew) {
  SigningKey key = NewKey(JwsAlg::kES256);
  WriteKeys({&key});
  TokenVerifierOptions o;
  o.clock_skew = absl::Seconds(30);
  auto v = Verifier(o);
  TokenClaims c;
  c.lifetime = absl::Minutes(10);
  std::string token = Mint(key, c);
  now_ = kStart + absl::Minutes(10) + absl::Seconds(29);
  EXPECT_TRUE(v->Verify(token).ok());  // within the skew (and served from the cache)
  now_ = kStart + absl::Minutes(10) + absl::Seconds(30);
  auto expired = v->Verify(token);
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(expired.status().message(), HasSubstr("token expired at 2023-11-14T22:23:20Z"));

  // nbf in the future.
  now_ = kStart;
  std::string nbf = Craft(absl::StrCat(R"({"alg":"ES256","kid":")", key.kid(), "\"}"),
                          absl::StrCat(R"({"sub":"a","exp":)", absl::ToUnixSeconds(kStart) + 3600,
                                       R"(,"nbf":)", absl::ToUnixSeconds(kStart) + 60, "}"),
                          &key);
  auto early = v->Verify(nbf);
  ASSERT_FALSE(early.ok());
  EXPECT_THAT(early.status().message(), HasSubstr("not valid before 2023-11-14T22:14:20Z"));
  now_ = kStart + absl::Seconds(31);
  EXPECT_TRUE(v->Verify(nbf).ok());
}

TEST_F(JwtTest, ClearErrorsThatNeverEchoTheToken) {
  SigningKey key = NewKey(JwsAlg::kES256);
  SigningKey other = NewKey(JwsAlg::kES256);
  SigningKey rsa = NewKey(JwsAlg::kRS256);
  WriteKeys({&key, &rsa});
  auto v = Verifier();
  std::string exp = absl::StrCat(absl::ToUnixSeconds(kStart) + 3600);
  std::string claims = absl::StrCat(R"({"sub":"mallory","exp":)", exp, "}");
  std::string kid_header = absl::StrCat(R"({"alg":"ES256","kid":")", key.kid(), "\"}");

  // Signed by another key that claims to be ours.
  std::string forged = Craft(kid_header, claims, &other);
  // HMAC-SHA256 keyed with our public key's PEM (the classic RS/HS confusion).
  std::string pem = rsa.PublicKeyPem();
  std::string hs_input =
      absl::StrCat(Base64UrlEncode(absl::StrCat(R"({"alg":"HS256","kid":")", rsa.kid(), "\"}")),
                   ".", Base64UrlEncode(claims));
  unsigned char mac[32];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), pem.data(), static_cast<int>(pem.size()),
       reinterpret_cast<const unsigned char*>(hs_input.data()), hs_input.size(), mac, &mac_len);
  std::string hs256 = absl::StrCat(
      hs_input, ".", Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), mac_len)));
  std::string empty_sig;
  std::string short_sig(63, 'x');

  struct Case {
    std::string name, token, want;
  };
  std::vector<Case> cases = {
      {"two parts", "abc.def", "2 dot-separated parts, want 3"},
      {"JWE-like", "a.b.c.d.e", "5 dot-separated parts"},
      {"header not base64", "a+b.e30.AA", "part 1 (header) is not base64url"},
      {"claims not base64", absl::StrCat(Base64UrlEncode(kid_header), ".a+b.AA"),
       "part 2 (claims) is not base64url"},
      {"signature not base64", absl::StrCat(Base64UrlEncode(kid_header), ".e30.a+b"),
       "part 3 (signature) is not base64url"},
      {"header not JSON", Craft("nope", claims, &key), "part 1 (header) is not a JSON object"},
      {"no alg", Craft(R"({"kid":"x"})", claims, &key), "part 1 (header) has no \"alg\""},
      {"alg none", Craft(R"({"alg":"none"})", claims, nullptr, &empty_sig), "\"none\""},
      {"HS256 with the public key", hs256, "HMAC"},
      {"crit", Craft(R"({"alg":"ES256","crit":["x"]})", claims, &key), "\"crit\""},
      {"unknown kid", Craft(R"({"alg":"ES256","kid":"who"})", claims, &key),
       "unknown key id kid=who"},
      {"forged", forged, absl::StrCat("signature does not verify with key kid=", key.kid())},
      {"wrong alg for the key",
       Craft(absl::StrCat(R"({"alg":"RS256","kid":")", key.kid(), "\"}"), claims, &key),
       "is an ES256 key; the token is signed RS256"},
      {"ES256 signature of the wrong size", Craft(kid_header, claims, nullptr, &short_sig),
       "63 bytes, not 64"},
      {"no kid, no key verifies", Craft(R"({"alg":"ES256"})", claims, &other),
       "does not verify with any of the 1 ES256 keys"},
      {"no kid, no key of that alg", Craft(R"({"alg":"EdDSA"})", claims, &other),
       "no key here is for it"},
      {"claims not JSON", Craft(kid_header, "[1]", &key), "part 2 (claims) is not a JSON object"},
      {"no sub", Craft(kid_header, absl::StrCat(R"({"exp":)", exp, "}"), &key), "no \"sub\" claim"},
      {"no exp", Craft(kid_header, R"({"sub":"a"})", &key), "no \"exp\" claim"},
      {"exp not a number", Craft(kid_header, R"({"sub":"a","exp":"soon"})", &key),
       "\"exp\" is not a number"},
      {"roles not an array",
       Craft(kid_header, absl::StrCat(R"({"sub":"a","exp":)", exp, R"(,"farm/roles":"admin"})"),
             &key),
       "\"farm/roles\" is not an array of strings"},
      {"tenant not a string",
       Craft(kid_header, absl::StrCat(R"({"sub":"a","exp":)", exp, R"(,"farm/tenant":7})"), &key),
       "\"farm/tenant\" is not a string"},
      {"worker role",
       Craft(kid_header, absl::StrCat(R"({"sub":"a","exp":)", exp, R"(,"farm/roles":["worker"]})"),
             &key),
       "cannot be granted by a token"},
      {"bad scope pattern",
       Craft(kid_header,
             absl::StrCat(R"({"sub":"a","exp":)", exp, R"(,"farm/cache_write":["p*r"]})"), &key),
       "'*' is only allowed at the end"},
      {"oversized", std::string(17 << 10, 'a'), "at most 16384"},
  };
  for (const Case& c : cases) {
    auto id = v->Verify(c.token);
    ASSERT_FALSE(id.ok()) << c.name;
    EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated) << c.name;
    EXPECT_THAT(id.status().message(), HasSubstr(c.want)) << c.name;
    std::vector<std::string> parts = absl::StrSplit(c.token, '.');
    for (const std::string& p : parts) {
      if (p.size() >= 8) {
        EXPECT_THAT(id.status().message(), Not(HasSubstr(p))) << c.name;
      }
    }
  }
}

TEST_F(JwtTest, IssuerAudienceAndOptionalExpiry) {
  SigningKey key = NewKey(JwsAlg::kEdDSA);
  WriteKeys({&key});
  TokenVerifierOptions o;
  o.issuer = "farm-admin";
  o.audience = "farm-cache";
  auto v = Verifier(o);
  TokenClaims c;
  c.issuer = "farm-admin";
  c.audience = {"farm-scheduler", "farm-cache"};
  EXPECT_TRUE(v->Verify(Mint(key, c)).ok());
  c.audience = {"farm-cache"};  // a single string
  EXPECT_TRUE(v->Verify(Mint(key, c)).ok());
  c.audience = {"farm-scheduler"};
  EXPECT_THAT(v->Verify(Mint(key, c)).status().message(),
              HasSubstr("audience does not include \"farm-cache\""));
  c.audience = {"farm-cache"};
  c.issuer = "someone";
  EXPECT_THAT(v->Verify(Mint(key, c)).status().message(),
              HasSubstr("issuer \"someone\" is not the expected \"farm-admin\""));

  TokenVerifierOptions lax;
  lax.require_expiry = false;
  auto v2 = Verifier(lax);
  std::string no_exp =
      Craft(absl::StrCat(R"({"alg":"EdDSA","kid":")", key.kid(), "\"}"), R"({"sub":"svc"})", &key);
  auto id = v2->Verify(no_exp);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->token_expiry, absl::InfiniteFuture());
}

TEST_F(JwtTest, ReloadsARotatedKeyFileAndKeepsTheOldKeysWhenTheNewFileIsBad) {
  SigningKey old_key = NewKey(JwsAlg::kES256);
  SigningKey new_key = NewKey(JwsAlg::kRS256);
  WriteKeys({&old_key});
  TokenVerifierOptions o;
  o.reload_interval = absl::Seconds(10);
  auto v = Verifier(o);
  std::string old_token = Mint(old_key);
  ASSERT_TRUE(v->Verify(old_token).ok());

  // Rotate: the file now holds only the new key.
  WriteKeys({&new_key});
  std::string new_token = Mint(new_key);
  now_ += absl::Seconds(5);  // not yet time to look at the file
  EXPECT_THAT(v->Verify(new_token).status().message(), HasSubstr("unknown key id"));
  EXPECT_TRUE(v->Verify(old_token).ok());
  now_ += absl::Seconds(5);
  auto id = v->Verify(new_token);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->token_key_id, new_key.kid());
  // The old key is gone, even for a token verified (and cached) before.
  EXPECT_THAT(v->Verify(old_token).status().message(),
              HasSubstr(absl::StrCat("unknown key id kid=", old_key.kid())));
  EXPECT_THAT(v->key_ids(), ElementsAre(new_key.kid()));
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_THAT(log_[0], HasSubstr("reloaded 1 token keys"));

  // A broken file: the keys stay, and the reason is logged once.
  ASSERT_TRUE(common::WriteFileAtomic(key_file_, "-----BEGIN PUBLIC KEY-----\ngarbage\n").ok());
  absl::Status s = v->ReloadIfChanged();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(v->Verify(new_token).ok());
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_THAT(log_[1], HasSubstr("cannot be used, keeping the 1 keys loaded before"));
  now_ += absl::Seconds(60);
  EXPECT_TRUE(v->Verify(new_token).ok());
  EXPECT_EQ(log_.size(), 2u);  // not logged again for the same file

  // A missing file: the same.
  ASSERT_EQ(unlink(key_file_.c_str()), 0);
  now_ += absl::Seconds(60);
  EXPECT_TRUE(v->Verify(new_token).ok());
  ASSERT_EQ(log_.size(), 3u);
  EXPECT_THAT(log_[2], HasSubstr("keeping the keys loaded before"));

  // Both keys (during a rotation): both verify.
  WriteKeys({&old_key, &new_key});
  ASSERT_TRUE(v->ReloadIfChanged().ok());
  EXPECT_TRUE(v->Verify(old_token).ok());
  EXPECT_TRUE(v->Verify(new_token).ok());
}

TEST_F(JwtTest, VerifiesFromManyThreadsWhileTheKeyFileRotates) {
  SigningKey a = NewKey(JwsAlg::kES256);
  SigningKey b = NewKey(JwsAlg::kEdDSA);
  WriteKeys({&a, &b});
  TokenVerifierOptions o;
  o.reload_interval = absl::ZeroDuration();  // look at the file on every call
  o.cache_entries = 8;                       // and churn the cache
  auto v = Verifier(o);
  std::vector<std::string> tokens;
  for (int i = 0; i < 16; ++i) {
    TokenClaims c;
    c.subject = absl::StrCat("user", i);
    tokens.push_back(Mint(i % 2 ? a : b, c));
  }
  std::atomic<int> failures{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        const std::string& token = tokens[(t * 7 + i) % tokens.size()];
        auto id = v->Verify(token);
        if (!id.ok() || id->subject != absl::StrCat("user", (t * 7 + i) % tokens.size())) {
          ++failures;
        }
      }
    });
  }
  // Rewrite the file (same keys, other order, new inode) while they verify.
  std::thread writer([&] {
    for (int i = 0; i < 50 && !stop; ++i)
      WriteKeys(i % 2 ? std::vector<const SigningKey*>{&a, &b}
                      : std::vector<const SigningKey*>{&b, &a});
  });
  for (auto& t : threads) t.join();
  stop = true;
  writer.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(JwtTest, CreateReportsTheKeyFilesProblem) {
  TokenVerifierOptions o;
  o.key_file = tmp_->path() + "/missing.pem";
  auto v = TokenVerifier::Create(o);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(v.status().message(), HasSubstr("missing.pem"));
  ASSERT_TRUE(common::WriteFileAtomic(key_file_, "{\"keys\": [{\"kty\": \"RSA\"}]}").ok());
  o.key_file = key_file_;
  v = TokenVerifier::Create(o);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("keys.pem: key 1: missing \"n\""));
}

TEST_F(JwtTest, JwkSetWithExplicitKids) {
  SigningKey a = NewKey(JwsAlg::kES256, "2025-a");
  SigningKey b = NewKey(JwsAlg::kEdDSA, "2025-b");
  ASSERT_TRUE(
      common::WriteFileAtomic(key_file_, absl::StrCat(R"({"keys":[)", a.public_key().ToJwk(), ",",
                                                      b.public_key().ToJwk(), "]}"))
          .ok());
  auto v = Verifier();
  EXPECT_THAT(v->key_ids(), ElementsAre("2025-a", "2025-b"));
  auto id = v->Verify(Mint(b));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->token_key_id, "2025-b");
}

TEST_F(JwtTest, MintRefusesBadClaims) {
  SigningKey key = NewKey(JwsAlg::kES256);
  TokenClaims c;
  EXPECT_THAT(MintToken(key, c, now_).status().message(), HasSubstr("subject"));
  c.subject = "a";
  c.roles = {"worker"};
  EXPECT_THAT(MintToken(key, c, now_).status().message(), HasSubstr("worker"));
  c.roles = {};
  c.read_scopes = {"*x"};
  EXPECT_THAT(MintToken(key, c, now_).status().message(), HasSubstr("only allowed at the end"));
  c.read_scopes = {};
  c.lifetime = absl::ZeroDuration();
  EXPECT_THAT(MintToken(key, c, now_).status().message(), HasSubstr("lifetime"));
}

TEST(SigningKeyTest, FromPemRoundTrip) {
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  internal::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), raw, nullptr, nullptr, 0, nullptr, nullptr);
  EVP_PKEY_free(raw);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  auto key = SigningKey::FromPem(std::string(data, n));
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->alg(), JwsAlg::kEdDSA);
  auto sig = key->Sign("hello");
  ASSERT_TRUE(sig.ok());
  EXPECT_TRUE(key->public_key().Verify(JwsAlg::kEdDSA, "hello", *sig).ok());
  EXPECT_FALSE(key->public_key().Verify(JwsAlg::kEdDSA, "hellO", *sig).ok());
  EXPECT_THAT(SigningKey::FromPem("-----BEGIN PUBLIC KEY-----\n").status().message(),
              HasSubstr("not a PEM private key"));
  EXPECT_THAT(SigningKey::FromPem("-----BEGIN ENCRYPTED PRIVATE KEY-----\n").status().message(),
              HasSubstr("encrypted"));
}

}  // namespace
}  // namespace auth
}  // namespace farm
