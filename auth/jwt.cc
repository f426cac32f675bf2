#include "auth/jwt.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "auth/openssl_util.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm {
namespace auth {

using internal::Base64UrlDecode;
using internal::Base64UrlEncode;
using json = nlohmann::json;

struct TokenVerifier::KeySet {
  std::vector<PublicKey> keys;
  absl::flat_hash_map<std::string, size_t> by_kid;
  uint64_t generation = 0;
};

namespace {

absl::Status Malformed(int part, absl::string_view what) {
  static constexpr const char* kParts[] = {"", "header", "claims", "signature"};
  return absl::UnauthenticatedError(
      absl::StrCat("malformed token: part ", part, " (", kParts[part], ") ", what));
}

std::string TimeText(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string DurationText(absl::Duration d) { return absl::FormatDuration(d); }

// NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional.
std::optional<absl::Time> NumericDate(const json& claims, const char* name, absl::Status* error) {
  auto it = claims.find(name);
  if (it == claims.end()) return std::nullopt;
  if (!it->is_number()) {
    *error = absl::UnauthenticatedError(
        absl::StrCat("token claim \"", name, "\" is not a number (seconds since the epoch)"));
    return std::nullopt;
  }
  double seconds = it->get<double>();
  if (!std::isfinite(seconds) || seconds > 1e12) return absl::InfiniteFuture();
  if (seconds < -1e12) return absl::InfinitePast();
  return absl::FromUnixMicros(static_cast<int64_t>(seconds * 1e6));
}

absl::StatusOr<std::vector<std::string>> StringArrayClaim(const json& claims, const char* name) {
  std::vector<std::string> out;
  auto it = claims.find(name);
  if (it == claims.end()) return out;
  if (!it->is_array()) {
    return absl::UnauthenticatedError(
        absl::StrCat("token claim \"", name, "\" is not an array of strings"));
  }
  for (const json& v : *it) {
    if (!v.is_string()) {
      return absl::UnauthenticatedError(
          absl::StrCat("token claim \"", name, "\" is not an array of strings"));
    }
    out.push_back(v.get_ref<const std::string&>());
  }
  return out;
}

absl::Status CheckScopes(const std::vector<std::string>& scopes, absl::string_view claim) {
  for (const std::string& s : scopes) {
    absl::Status st = ValidateScopePattern(s);
    if (!st.ok()) return common::Annotate(st, absl::StrCat("token claim \"", claim, "\""));
  }
  return absl::OkStatus();
}

absl::Status CheckRoles(const std::vector<std::string>& roles) {
  for (const std::string& r : roles) {
    if (r == kRoleWorker) {
      return absl::InvalidArgumentError(
          "role \"worker\" cannot be granted by a token: workers are identified by a "
          "certificate from the worker CA");
    }
  }
  return absl::OkStatus();
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

TokenVerifier::TokenVerifier(TokenVerifierOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<TokenVerifier>> TokenVerifier::Create(TokenVerifierOptions options) {
  if (options.key_file.empty()) {
    return absl::InvalidArgumentError("token verification needs a key file");
  }
  if (!options.clock) options.clock = [] { return absl::Now(); };
  if (!options.log) {
    options.log = [](absl::string_view line) { std::cerr << "farm: auth: " << line << std::endl; };
  }
  std::unique_ptr<TokenVerifier> v(new TokenVerifier(std::move(options)));
  {
    absl::MutexLock lock(&v->reload_mu_);
    RETURN_IF_ERROR(v->Reload(/*initial=*/true));
    v->next_check_ = v->Now() + v->options_.reload_interval;
  }
  return v;
}

absl::Time TokenVerifier::Now() const { return options_.clock(); }

std::shared_ptr<const TokenVerifier::KeySet> TokenVerifier::keys() const {
  absl::MutexLock lock(&keys_mu_);
  return keys_;
}

std::vector<std::string> TokenVerifier::key_ids() const {
  std::vector<std::string> out;
  for (const PublicKey& k : keys()->keys) out.push_back(k.kid());
  return out;
}

absl::Status TokenVerifier::Reload(bool initial) const {
  const std::string& path = options_.key_file;
  struct stat st;
  FileSignature sig;
  if (stat(path.c_str(), &st) != 0) {
    absl::Status s = common::ErrnoToStatus(errno, absl::StrCat("token key file ", path));
    if (initial) return s;
    sig.size = -2;  // "missing": log once
    if (sig == seen_) return s;
    seen_ = sig;
    options_.log(absl::StrCat(s.message(), "; keeping the keys loaded before"));
    return s;
  }
  sig.dev = st.st_dev;
  sig.ino = st.st_ino;
  sig.size = st.st_size;
  sig.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  sig.ctime_ns = int64_t{st.st_ctim.tv_sec} * 1000000000 + st.st_ctim.tv_nsec;
  if (!initial && sig == seen_) return absl::OkStatus();
  seen_ = sig;

  absl::StatusOr<std::vector<PublicKey>> parsed;
  absl::StatusOr<std::string> text = common::ReadFile(path);
  if (!text.ok()) {
    parsed = common::Annotate(text.status(), "token key file");
  } else {
    parsed = ParseKeyFile(*text, path);
  }
  if (!parsed.ok()) {
    if (!initial) {
      options_.log(absl::StrCat("token key file changed but cannot be used, keeping the ",
                                keys()->keys.size(),
                                " keys loaded before: ", parsed.status().message()));
    }
    return parsed.status();
  }
  auto set = std::make_shared<KeySet>();
  set->keys = *std::move(parsed);
  for (size_t i = 0; i < set->keys.size(); ++i) set->by_kid[set->keys[i].kid()] = i;
  {
    absl::MutexLock lock(&keys_mu_);
    set->generation = keys_ ? keys_->generation + 1 : 1;
    keys_ = set;
  }
  {
    absl::MutexLock lock(&cache_mu_);
    cache_.clear();
  }
  std::vector<std::string> kids;
  for (const PublicKey& k : set->keys) {
    kids.push_back(absl::StrCat(k.kid(), " (", JwsAlgName(k.alg()), ")"));
  }
  if (!initial) {
    options_.log(absl::StrCat("reloaded ", set->keys.size(), " token keys from ", path, ": ",
                              absl::StrJoin(kids, ", ")));
  }
  return absl::OkStatus();
}

absl::Status TokenVerifier::ReloadIfChanged() const {
  absl::MutexLock lock(&reload_mu_);
  next_check_ = Now() + options_.reload_interval;
  return Reload(/*initial=*/false);
}

void TokenVerifier::MaybeReload() const {
  // One thread looks at the file; the others go on with the keys they have.
  if (!reload_mu_.TryLock()) return;
  absl::Time now = Now();
  if (now >= next_check_) {
    next_check_ = now + options_.reload_interval;
    Reload(/*initial=*/false).IgnoreError();  // logged by Reload
  }
  reload_mu_.Unlock();
}

absl::StatusOr<Identity> TokenVerifier::Verify(absl::string_view token) const {
  MaybeReload();
  std::shared_ptr<const KeySet> set = keys();
  if (token.size() > options_.max_token_size) {
    return absl::UnauthenticatedError(absl::StrCat("bearer token is ", token.size(),
                                                   " bytes; at most ", options_.max_token_size,
                                                   " are accepted"));
  }
  std::string cache_key;
  if (options_.cache_entries > 0) {
    cache_key = internal::Sha256(token);
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(cache_key);
    if (it != cache_.end() && it->second.generation == set->generation) {
      // Signature, issuer and audience were checked; only time moves on.
      if (Now() < it->second.identity.token_expiry + options_.clock_skew) {
        return it->second.identity;
      }
      cache_.erase(it);
    }
  }
  absl::StatusOr<Identity> id = VerifyUncached(token, *set);
  if (id.ok() && options_.cache_entries > 0) {
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() >= options_.cache_entries) cache_.clear();
    cache_[cache_key] = CacheEntry{*id, set->generation};
  }
  return id;
}

absl::StatusOr<Identity> TokenVerifier::VerifyUncached(absl::string_view token,
                                                       const KeySet& set) const {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) {
    return absl::UnauthenticatedError(
        absl::StrCat("malformed token: ", parts.size(),
                     " dot-separated parts, want 3 (a compact JWS: header.claims.signature)"));
  }
  std::optional<std::string> header_bytes = Base64UrlDecode(parts[0]);
  if (!header_bytes) return Malformed(1, "is not base64url");
  std::optional<std::string> claims_bytes = Base64UrlDecode(parts[1]);
  if (!claims_bytes) return Malformed(2, "is not base64url");
  std::optional<std::string> signature = Base64UrlDecode(parts[2]);
  if (!signature) return Malformed(3, "is not base64url");

  json header = json::parse(*header_bytes, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Malformed(1, "is not a JSON object");
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) return Malformed(1, "has no \"alg\"");
  absl::StatusOr<JwsAlg> alg = ParseJwsAlg(alg_it->get_ref<const std::string&>());
  if (!alg.ok()) return absl::UnauthenticatedError(absl::StrCat("token ", alg.status().message()));
  if (header.contains("crit")) {
    return absl::UnauthenticatedError(
        "token header has \"crit\": critical extensions are not supported");
  }
  if (signature->empty()) return Malformed(3, "is empty (an unsigned token)");

  absl::string_view signing_input = token.substr(0, parts[0].size() + 1 + parts[1].size());
  const PublicKey* verified_by = nullptr;
  auto kid_it = header.find("kid");
  if (kid_it != header.end()) {
    if (!kid_it->is_string()) return Malformed(1, "has a \"kid\" that is not a string");
    const std::string& kid = kid_it->get_ref<const std::string&>();
    auto k = set.by_kid.find(kid);
    if (k == set.by_kid.end()) {
      std::vector<std::string> kids;
      for (const PublicKey& key : set.keys) kids.push_back(key.kid());
      return absl::UnauthenticatedError(
          absl::StrCat("token signed with unknown key id kid=", kid,
                       " (this server knows kid=", absl::StrJoin(kids, ", kid="), ")"));
    }
    const PublicKey& key = set.keys[k->second];
    absl::Status s = key.Verify(*alg, signing_input, *signature);
    if (!s.ok()) return absl::UnauthenticatedError(absl::StrCat("token ", s.message()));
    verified_by = &key;
  } else {
    int tried = 0;
    for (const PublicKey& key : set.keys) {
      if (key.alg() != *alg) continue;
      ++tried;
      if (key.Verify(*alg, signing_input, *signature).ok()) {
        verified_by = &key;
        break;
      }
    }
    if (verified_by == nullptr) {
      if (tried == 0) {
        return absl::UnauthenticatedError(
            absl::StrCat("token is signed ", JwsAlgName(*alg), " but no key here is for it"));
      }
      return absl::UnauthenticatedError(
          absl::StrCat("token signature (no kid) does not verify with any of the ", tried, " ",
                       JwsAlgName(*alg), " keys"));
    }
  }

  json claims = json::parse(*claims_bytes, nullptr, /*allow_exceptions=*/false);
  if (claims.is_discarded() || !claims.is_object()) return Malformed(2, "is not a JSON object");

  absl::Time now = Now();
  absl::Status time_error;
  std::optional<absl::Time> exp = NumericDate(claims, "exp", &time_error);
  RETURN_IF_ERROR(time_error);
  std::optional<absl::Time> nbf = NumericDate(claims, "nbf", &time_error);
  RETURN_IF_ERROR(time_error);
  if (!exp && options_.require_expiry) {
    return absl::UnauthenticatedError("token has no \"exp\" claim (tokens must expire)");
  }
  if (exp && now >= *exp + options_.clock_skew) {
    return absl::UnauthenticatedError(absl::StrCat("token expired at ", TimeText(*exp), " (now ",
                                                   TimeText(now), ", clock skew allowed ",
                                                   DurationText(options_.clock_skew), ")"));
  }
  if (nbf && now + options_.clock_skew < *nbf) {
    return absl::UnauthenticatedError(absl::StrCat("token is not valid before ", TimeText(*nbf),
                                                   " (now ", TimeText(now), ", clock skew allowed ",
                                                   DurationText(options_.clock_skew), ")"));
  }
  if (!options_.issuer.empty()) {
    auto it = claims.find("iss");
    std::string iss = it != claims.end() && it->is_string() ? it->get<std::string>() : "";
    if (iss != options_.issuer) {
      return absl::UnauthenticatedError(
          absl::StrCat("token issuer \"", iss, "\" is not the expected \"", options_.issuer, "\""));
    }
  }
  if (!options_.audience.empty()) {
    auto it = claims.find("aud");
    bool found = false;
    if (it != claims.end() && it->is_string()) {
      found = it->get_ref<const std::string&>() == options_.audience;
    } else if (it != claims.end() && it->is_array()) {
      for (const json& a : *it) found = found || (a.is_string() && a == options_.audience);
    }
    if (!found) {
      return absl::UnauthenticatedError(
          absl::StrCat("token audience does not include \"", options_.audience, "\""));
    }
  }

  Identity id;
  auto sub = claims.find("sub");
  if (sub == claims.end() || !sub->is_string() || sub->get_ref<const std::string&>().empty()) {
    return absl::UnauthenticatedError("token has no \"sub\" claim (who it is for)");
  }
  id.subject = sub->get<std::string>();
  auto tenant = claims.find(kClaimTenant);
  if (tenant != claims.end()) {
    if (!tenant->is_string()) {
      return absl::UnauthenticatedError(
          absl::StrCat("token claim \"", kClaimTenant, "\" is not a string"));
    }
    id.tenant = tenant->get<std::string>();
  }
  ASSIGN_OR_RETURN(id.read_scopes, StringArrayClaim(claims, kClaimCacheRead));
  ASSIGN_OR_RETURN(id.write_scopes, StringArrayClaim(claims, kClaimCacheWrite));
  ASSIGN_OR_RETURN(id.roles, StringArrayClaim(claims, kClaimRoles));
  absl::Status s = CheckScopes(id.read_scopes, kClaimCacheRead);
  if (s.ok()) s = CheckScopes(id.write_scopes, kClaimCacheWrite);
  if (s.ok()) s = CheckRoles(id.roles);
  if (!s.ok()) return absl::UnauthenticatedError(absl::StrCat("token ", s.message()));
  id.has_token = true;
  id.token_expiry = exp.value_or(absl::InfiniteFuture());
  id.token_key_id = verified_by->kid();
  return id;
}

absl::StatusOr<std::string> MintToken(const SigningKey& key, const TokenClaims& c, absl::Time now) {
  if (c.subject.empty()) return absl::InvalidArgumentError("a token needs a subject (sub)");
  if (c.lifetime <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("a token's lifetime must be positive");
  }
  RETURN_IF_ERROR(CheckScopes(c.read_scopes, kClaimCacheRead));
  RETURN_IF_ERROR(CheckScopes(c.write_scopes, kClaimCacheWrite));
  RETURN_IF_ERROR(CheckRoles(c.roles));
  json header = {{"alg", std::string(JwsAlgName(key.alg()))}, {"kid", key.kid()}, {"typ", "JWT"}};
  json claims = json::object();
  claims["sub"] = c.subject;
  int64_t iat = absl::ToUnixSeconds(now);
  claims["iat"] = iat;
  claims["exp"] = absl::ToUnixSeconds(now + c.lifetime);
  if (!c.issuer.empty()) claims["iss"] = c.issuer;
  if (c.audience.size() == 1) claims["aud"] = c.audience[0];
  if (c.audience.size() > 1) claims["aud"] = c.audience;
  if (!c.tenant.empty()) claims[kClaimTenant] = c.tenant;
  if (!c.read_scopes.empty()) claims[kClaimCacheRead] = c.read_scopes;
  if (!c.write_scopes.empty()) claims[kClaimCacheWrite] = c.write_scopes;
  if (!c.roles.empty()) claims[kClaimRoles] = c.roles;
  std::string signing_input =
      absl::StrCat(Base64UrlEncode(Dump(header)), ".", Base64UrlEncode(Dump(claims)));
  ASSIGN_OR_RETURN(std::string sig, key.Sign(signing_input));
  return absl::StrCat(signing_input, ".", Base64UrlEncode(sig));
}

}  // namespace auth
}  // namespace farm
