#include "auth/authorizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace farm {
namespace auth {

namespace {

class AllowAll : public Authorizer {
 public:
  absl::Status Authorize(const Identity&, absl::string_view, const RequestInfo&) const override {
    return absl::OkStatus();
  }
};

absl::Status CheckMethodName(absl::string_view method) {
  std::vector<absl::string_view> parts = absl::StrSplit(method, '/');
  if (parts.size() != 3 || !parts[0].empty() || parts[1].empty() || parts[2].empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("authorization rule for \"", method,
                     "\": want \"/package.Service/Method\" or \"/package.Service/*\""));
  }
  return absl::OkStatus();
}

std::string ServiceWildcard(absl::string_view method) {
  size_t slash = method.rfind('/');
  if (slash == absl::string_view::npos || slash == 0) return "";
  return absl::StrCat(method.substr(0, slash), "/*");
}

std::string Callers(const Rule& rule) {
  std::vector<std::string> who;
  if (rule.tokens) {
    who.push_back(rule.role.empty() ? "a bearer token"
                                    : absl::StrCat("a bearer token with role \"", rule.role, "\""));
  }
  if (rule.workers) who.push_back("a worker certificate");
  return absl::StrJoin(who, " or ");
}

std::string Patterns(const std::vector<std::string>& patterns) {
  if (patterns.empty()) return "none";
  return absl::StrJoin(patterns, ", ", [](std::string* out, const std::string& p) {
    absl::StrAppend(out, "\"", p, "\"");
  });
}

}  // namespace

Authorizer::Ptr AllowAllAuthorizer() { return std::make_shared<AllowAll>(); }

std::string FullMethodName(absl::string_view service_full_name, absl::string_view method) {
  return absl::StrCat("/", service_full_name, "/", method);
}

absl::StatusOr<std::unique_ptr<TableAuthorizer>> TableAuthorizer::Create(std::vector<Rule> rules) {
  std::unique_ptr<TableAuthorizer> t(new TableAuthorizer());
  for (size_t i = 0; i < rules.size(); ++i) {
    const Rule& r = rules[i];
    absl::Status s = CheckMethodName(r.method);
    if (!s.ok()) return s;
    if (!r.anyone && !r.tokens && !r.workers) {
      return absl::InvalidArgumentError(
          absl::StrCat("authorization rule for ", r.method,
                       " lets nobody in: say Anyone(), Tokens(), Role(...) or Workers()"));
    }
    if (r.anyone && (r.scope != ScopeAccess::kNone || r.tenant_owned || !r.role.empty())) {
      return absl::InvalidArgumentError(absl::StrCat("authorization rule for ", r.method,
                                                     " is Anyone() but also checks the caller"));
    }
    if (!t->index_.emplace(r.method, i).second) {
      return absl::InvalidArgumentError(absl::StrCat("two authorization rules for ", r.method));
    }
  }
  t->rules_ = std::move(rules);
  return t;
}

const Rule* TableAuthorizer::Find(absl::string_view full_method) const {
  auto it = index_.find(full_method);
  if (it == index_.end()) it = index_.find(ServiceWildcard(full_method));
  if (it == index_.end()) return nullptr;
  return &rules_[it->second];
}

absl::Status TableAuthorizer::Authorize(const Identity& who, absl::string_view method,
                                        const RequestInfo& request) const {
  const Rule* rule = Find(method);
  if (rule == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("no authorization rule for ", method, " (denied by default)"));
  }
  if (rule->anyone) return absl::OkStatus();
  if (who.anonymous()) {
    return absl::UnauthenticatedError(
        absl::StrCat(method, " needs ", Callers(*rule),
                     rule->tokens ? " (metadata \"authorization: Bearer <token>\")" : ""));
  }
  const bool admin = who.has_token && who.HasRole(kRoleAdmin);
  const bool as_worker = rule->workers && who.is_worker();
  const bool as_token =
      rule->tokens && who.has_token && (rule->role.empty() || who.HasRole(rule->role) || admin);
  if (!as_worker && !as_token) {
    return absl::PermissionDeniedError(
        absl::StrCat(method, " needs ", Callers(*rule), "; the caller is ", who.DebugString()));
  }
  if (as_worker || request.stage == RequestInfo::Stage::kCall || admin) return absl::OkStatus();

  if (rule->scope != ScopeAccess::kNone) {
    if (!request.instance_name) {
      return absl::InternalError(
          absl::StrCat("authorization rule for ", method, " needs the request's instance name"));
    }
    const std::string& scope = *request.instance_name;
    if (rule->scope == ScopeAccess::kRead && !who.CanRead(scope)) {
      return absl::PermissionDeniedError(
          absl::StrCat(who.subject, " may not read scope \"", scope,
                       "\" (read scopes: ", Patterns(who.read_scopes), ")"));
    }
    if (rule->scope == ScopeAccess::kWrite && !who.CanWrite(scope)) {
      return absl::PermissionDeniedError(
          absl::StrCat(who.subject, " may not write scope \"", scope,
                       "\" (write scopes: ", Patterns(who.write_scopes), ")"));
    }
  }
  if (rule->tenant_owned) {
    if (!request.owner_tenant) {
      return absl::InternalError(
          absl::StrCat("authorization rule for ", method, " needs the owning tenant"));
    }
    if (who.tenant.empty() || *request.owner_tenant != who.tenant) {
      return absl::PermissionDeniedError(
          absl::StrCat(method, ": it belongs to another tenant than ",
                       who.tenant.empty() ? "the caller's (none)" : who.tenant));
    }
  }
  return absl::OkStatus();
}

}  // namespace auth
}  // namespace farm
