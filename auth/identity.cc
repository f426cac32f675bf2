#include "auth/identity.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace farm {
namespace auth {

namespace {

bool AnyMatches(const std::vector<std::string>& patterns, absl::string_view scope) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [&](const std::string& p) { return ScopeMatches(p, scope); });
}

}  // namespace

bool ScopeMatches(absl::string_view pattern, absl::string_view scope) {
  if (absl::EndsWith(pattern, "*")) {
    return absl::StartsWith(scope, pattern.substr(0, pattern.size() - 1));
  }
  return pattern == scope;
}

absl::Status ValidateScopePattern(absl::string_view pattern) {
  for (size_t i = 0; i < pattern.size(); ++i) {
    unsigned char c = pattern[i];
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat("scope pattern \"", absl::CEscape(pattern), "\" has a control character"));
    }
    if (c == '*' && i + 1 != pattern.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "scope pattern \"", pattern, "\": '*' is only allowed at the end (as in \"pr/*\")"));
    }
  }
  return absl::OkStatus();
}

bool Identity::HasRole(absl::string_view role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

bool Identity::CanRead(absl::string_view scope) const { return AnyMatches(read_scopes, scope); }

bool Identity::CanWrite(absl::string_view scope) const { return AnyMatches(write_scopes, scope); }

std::string Identity::DebugString() const {
  if (anonymous()) return "anonymous";
  std::string out;
  if (has_token) {
    absl::StrAppend(&out, "token sub=", subject);
    if (!tenant.empty()) absl::StrAppend(&out, " tenant=", tenant);
    if (!roles.empty()) absl::StrAppend(&out, " roles=", absl::StrJoin(roles, ","));
  }
  if (is_worker()) {
    absl::StrAppend(&out, out.empty() ? "" : " ", "worker ", worker_id);
  } else if (!certificate.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : " ", "certificate CN=", certificate);
  }
  return out;
}

}  // namespace auth
}  // namespace farm
