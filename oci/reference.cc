#include "oci/reference.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace farm::oci {

namespace {

constexpr size_t kNameTotalLengthMax = 255;
constexpr char kOfficialRepoPrefix[] = "library/";
constexpr char kLegacyDefaultDomain[] = "index.docker.io";

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)); }
bool IsWordChar(char c) { return IsAlnum(c) || c == '_'; }
bool IsHex(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

// path-component := [a-z0-9]+ (separator [a-z0-9]+)*,  separator := [._] | __ | -+
bool IsPathComponent(absl::string_view s) {
  size_t i = 0, n = s.size();
  while (true) {
    size_t start = i;
    while (i < n && IsLowerAlnum(s[i])) ++i;
    if (i == start) return false;
    if (i == n) return true;
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < n && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < n && s[i] == '-') ++i;
    } else {
      return false;
    }
  }
}

// domain-component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool IsDomainComponent(absl::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-') return false;
  }
  return true;
}

bool IsPort(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// domain := host [":" port],  host := domain-name | "[" [a-fA-F0-9:]+ "]"
bool IsDomainAndPort(absl::string_view s) {
  absl::string_view host = s, port;
  bool has_port = false;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == absl::string_view::npos || close == 1) return false;
    for (char c : s.substr(1, close - 1)) {
      if (!IsHex(c) && c != ':') return false;
    }
    absl::string_view rest = s.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    return IsPort(rest.substr(1));
  }
  size_t colon = s.find(':');
  if (colon != absl::string_view::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    has_port = true;
  }
  if (has_port && !IsPort(port)) return false;
  for (absl::string_view c : absl::StrSplit(host, '.')) {
    if (!IsDomainComponent(c)) return false;
  }
  return true;
}

// algorithm ":" hex: [A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)* ":" [0-9a-fA-F]{32,}
bool MatchesDigestPattern(absl::string_view s) {
  size_t colon = s.find(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view alg = s.substr(0, colon), hex = s.substr(colon + 1);
  if (hex.size() < 32) return false;
  for (char c : hex) {
    if (!IsHex(c)) return false;
  }
  size_t i = 0;
  while (true) {
    if (i >= alg.size() || !absl::ascii_isalpha(static_cast<unsigned char>(alg[i]))) return false;
    ++i;
    while (i < alg.size() && IsAlnum(alg[i])) ++i;
    if (i == alg.size()) return true;
    char c = alg[i];
    if (c != '-' && c != '_' && c != '+' && c != '.') return false;
    ++i;
  }
}

struct Match {
  std::string domain;  // "" when the name has no domain part
  std::string path;
  std::string tag;
  std::string digest;
};

// The anchored ReferenceRegexp of distribution/reference. Returns false if `s` does not match.
bool MatchReference(absl::string_view s, Match* m) {
  absl::string_view left = s, digest;
  size_t at = s.find('@');
  if (at != absl::string_view::npos) {
    left = s.substr(0, at);
    digest = s.substr(at + 1);
    if (!MatchesDigestPattern(digest)) return false;
  }
  absl::string_view name = left, tag;
  size_t colon = left.rfind(':');
  size_t slash = left.rfind('/');
  if (colon != absl::string_view::npos && (slash == absl::string_view::npos || colon > slash)) {
    name = left.substr(0, colon);
    tag = left.substr(colon + 1);
    if (!IsValidTag(tag)) return false;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  bool rest_are_paths = true;
  for (size_t i = 1; i < parts.size(); ++i) {
    if (!IsPathComponent(parts[i])) {
      rest_are_paths = false;
      break;
    }
  }
  if (!rest_are_paths) return false;
  // The optional domain group is greedy: it takes the first component when it can.
  if (parts.size() >= 2 && IsDomainAndPort(parts[0])) {
    m->domain = std::string(parts[0]);
    m->path = std::string(name.substr(parts[0].size() + 1));
  } else if (IsPathComponent(parts[0])) {
    m->domain.clear();
    m->path = std::string(name);
  } else {
    return false;
  }
  m->tag = std::string(tag);
  m->digest = std::string(digest);
  return true;
}

absl::Status Invalid(absl::string_view text, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": ", what));
}

// distribution/reference Parse on an already-prefixed name.
absl::StatusOr<Match> ParseRaw(absl::string_view s, absl::string_view original) {
  Match m;
  if (!MatchReference(s, &m)) {
    if (s.empty()) return Invalid(original, "repository name must have at least one component");
    Match ignored;
    if (MatchReference(absl::AsciiStrToLower(s), &ignored)) {
      return Invalid(original, "repository name must be lowercase");
    }
    return Invalid(original, "invalid reference format");
  }
  size_t name_len = m.path.size() + (m.domain.empty() ? 0 : m.domain.size() + 1);
  if (name_len > kNameTotalLengthMax) {
    return Invalid(original, absl::StrCat("repository name must not be more than ",
                                          kNameTotalLengthMax, " characters"));
  }
  if (!m.digest.empty()) {
    absl::Status s = ValidateDigest(m.digest);
    if (!s.ok()) return Invalid(original, s.message());
  }
  return m;
}

}  // namespace

bool IsValidTag(absl::string_view tag) {
  if (tag.empty() || tag.size() > 128 || !IsWordChar(tag[0])) return false;
  for (char c : tag) {
    if (!IsWordChar(c) && c != '.' && c != '-') return false;
  }
  return true;
}

absl::Status ValidateDigest(absl::string_view digest) {
  size_t colon = digest.find(':');
  if (colon == absl::string_view::npos || !MatchesDigestPattern(digest)) {
    return absl::InvalidArgumentError("invalid digest format");
  }
  absl::string_view alg = digest.substr(0, colon), hex = digest.substr(colon + 1);
  size_t want;
  if (alg == "sha256") {
    want = 64;
  } else if (alg == "sha384") {
    want = 96;
  } else if (alg == "sha512") {
    want = 128;
  } else {
    return absl::InvalidArgumentError("unsupported digest algorithm");
  }
  if (hex.size() != want) return absl::InvalidArgumentError("invalid checksum digest length");
  for (char c : hex) {
    if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f')) {
      return absl::InvalidArgumentError("invalid checksum digest format");
    }
  }
  return absl::OkStatus();
}

bool IsIdentifier(absl::string_view text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f')) return false;
  }
  return true;
}

std::string RegistryHostFor(absl::string_view domain) {
  if (domain == kDefaultDomain || domain == kLegacyDefaultDomain) return "registry-1.docker.io";
  return std::string(domain);
}

absl::StatusOr<Reference> Reference::Parse(absl::string_view text) {
  if (IsIdentifier(text)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid repository name (", text, "), cannot specify 64-byte hexadecimal strings"));
  }
  // splitDockerDomain.
  std::string domain, remainder;
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos) {
    domain = kDefaultDomain;
    remainder = absl::StrCat(kOfficialRepoPrefix, text);
  } else {
    absl::string_view maybe_domain = text.substr(0, slash);
    absl::string_view maybe_remote = text.substr(slash + 1);
    if (maybe_domain == "localhost" || absl::StrContains(maybe_domain, '.') ||
        absl::StrContains(maybe_domain, ':') ||
        absl::AsciiStrToLower(maybe_domain) != maybe_domain) {
      domain = maybe_domain == kLegacyDefaultDomain ? kDefaultDomain : std::string(maybe_domain);
      remainder = std::string(maybe_remote);
    } else {
      domain = kDefaultDomain;
      remainder = std::string(text);
    }
    if (domain == kDefaultDomain && !absl::StrContains(remainder, '/')) {
      remainder = absl::StrCat(kOfficialRepoPrefix, remainder);
    }
  }
  absl::string_view remote_name = remainder;
  size_t colon = remote_name.find(':');
  if (colon != absl::string_view::npos) remote_name = remote_name.substr(0, colon);
  if (absl::AsciiStrToLower(remote_name) != remote_name) {
    return Invalid(text, absl::StrCat("invalid reference format: repository name (", remote_name,
                                      ") must be lowercase"));
  }
  absl::StatusOr<Match> m = ParseRaw(absl::StrCat(domain, "/", remainder), text);
  if (!m.ok()) return m.status();
  if (m->domain.empty()) {
    // Docker would carry on with an empty registry and fail when contacting it; say why now.
    return Invalid(text, absl::StrCat("invalid reference format: registry (", domain,
                                      ") is not a valid host name"));
  }
  Reference r;
  r.domain_ = std::move(m->domain);
  r.path_ = std::move(m->path);
  r.tag_ = std::move(m->tag);
  r.digest_ = std::move(m->digest);
  return r;
}

absl::StatusOr<Reference> Reference::ParseWithDefaultTag(absl::string_view text) {
  absl::StatusOr<Reference> r = Parse(text);
  if (!r.ok()) return r.status();
  return r->WithDefaultTag();
}

absl::StatusOr<Reference> Reference::FromParts(absl::string_view domain, absl::string_view path,
                                               absl::string_view tag, absl::string_view digest) {
  std::string text = absl::StrCat(domain, "/", path);
  if (!tag.empty()) absl::StrAppend(&text, ":", tag);
  if (!digest.empty()) absl::StrAppend(&text, "@", digest);
  absl::StatusOr<Match> m = ParseRaw(text, text);
  if (!m.ok()) return m.status();
  if (m->domain != domain || m->path != path) return Invalid(text, "invalid reference format");
  Reference r;
  r.domain_ = std::string(domain);
  r.path_ = std::string(path);
  r.tag_ = std::string(tag);
  r.digest_ = std::string(digest);
  return r;
}

std::string Reference::Name() const { return absl::StrCat(domain_, "/", path_); }

std::string Reference::String() const {
  std::string s = Name();
  if (!tag_.empty()) absl::StrAppend(&s, ":", tag_);
  if (!digest_.empty()) absl::StrAppend(&s, "@", digest_);
  return s;
}

std::string Reference::FamiliarName() const {
  if (domain_ != kDefaultDomain) return Name();
  if (absl::StartsWith(path_, kOfficialRepoPrefix)) {
    absl::string_view rest = absl::string_view(path_).substr(sizeof(kOfficialRepoPrefix) - 1);
    if (!absl::StrContains(rest, '/')) return std::string(rest);
  }
  return path_;
}

std::string Reference::FamiliarString() const {
  std::string s = FamiliarName();
  if (!tag_.empty()) absl::StrAppend(&s, ":", tag_);
  if (!digest_.empty()) absl::StrAppend(&s, "@", digest_);
  return s;
}

Reference Reference::WithDefaultTag() const {
  Reference r = *this;
  if (r.tag_.empty() && r.digest_.empty()) r.tag_ = kDefaultTag;
  return r;
}

Reference Reference::WithTag(absl::string_view tag) const {
  Reference r = *this;
  r.tag_ = std::string(tag);
  r.digest_.clear();
  return r;
}

Reference Reference::WithDigest(absl::string_view digest) const {
  Reference r = *this;
  r.tag_.clear();
  r.digest_ = std::string(digest);
  return r;
}

Reference Reference::NameOnly() const {
  Reference r = *this;
  r.tag_.clear();
  r.digest_.clear();
  return r;
}

}  // namespace farm::oci
