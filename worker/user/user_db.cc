#include "worker/user/user_db.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace farm::worker::user {
namespace {

struct PasswdEntry {
  std::string name;
  uint32_t uid = 0, gid = 0;
  std::string home;
};
struct GroupEntry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

bool ParseId(absl::string_view s, uint32_t* out) {
  uint64_t v = 0;
  if (s.empty() || !absl::SimpleAtoi(s, &v) || v > 0x7fffffffu) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

std::vector<PasswdEntry> ParsePasswd(const std::optional<std::string>& text) {
  std::vector<PasswdEntry> out;
  if (!text.has_value()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ':');
    if (f.size() < 4) continue;
    PasswdEntry e;
    e.name = std::string(f[0]);
    if (!ParseId(f[2], &e.uid) || !ParseId(f[3], &e.gid)) continue;
    if (f.size() >= 6) e.home = std::string(f[5]);
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<GroupEntry> ParseGroup(const std::optional<std::string>& text) {
  std::vector<GroupEntry> out;
  if (!text.has_value()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ':');
    if (f.size() < 3) continue;
    GroupEntry e;
    e.name = std::string(f[0]);
    if (!ParseId(f[2], &e.gid)) continue;
    if (f.size() >= 4) {
      for (absl::string_view m : absl::StrSplit(f[3], ',', absl::SkipEmpty())) {
        e.members.emplace_back(m);
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

absl::StatusOr<uint32_t> ResolveGroup(absl::string_view spec,
                                      const std::optional<std::string>& group) {
  uint32_t gid = 0;
  for (const GroupEntry& g : ParseGroup(group)) {
    if (g.name == spec) return g.gid;
  }
  if (ParseId(spec, &gid)) return gid;
  return absl::FailedPreconditionError(
      absl::StrCat("unable to find group ", spec, ": no matching entries in group file"));
}

absl::StatusOr<ResolvedUser> ResolveUser(absl::string_view spec,
                                         const std::optional<std::string>& passwd,
                                         const std::optional<std::string>& group) {
  ResolvedUser out;
  // No USER is uid 0, looked up like any other (runc takes HOME from its passwd entry).
  if (spec.empty()) spec = "0";
  absl::string_view user_spec = spec, group_spec;
  bool has_group = false;
  size_t colon = spec.find(':');
  if (colon != absl::string_view::npos) {
    user_spec = spec.substr(0, colon);
    group_spec = spec.substr(colon + 1);
    has_group = true;
  }
  std::vector<PasswdEntry> users = ParsePasswd(passwd);
  const PasswdEntry* found = nullptr;
  uint32_t numeric = 0;
  bool is_numeric = ParseId(user_spec, &numeric);
  for (const PasswdEntry& u : users) {
    if (u.name == user_spec || (is_numeric && u.uid == numeric && found == nullptr)) {
      if (u.name == user_spec || found == nullptr) found = &u;
      if (u.name == user_spec) break;
    }
  }
  if (user_spec.empty()) {
    // ":group": root with that group.
  } else if (found != nullptr) {
    out.uid = found->uid;
    out.gid = found->gid;
    out.name = found->name;
    if (!found->home.empty()) out.home = found->home;
  } else if (is_numeric) {
    out.uid = numeric;
  } else {
    return absl::FailedPreconditionError(
        absl::StrCat("unable to find user ", user_spec, ": no matching entries in passwd file"));
  }
  if (has_group && !group_spec.empty()) {
    ASSIGN_OR_RETURN(out.gid, ResolveGroup(group_spec, group));
    out.groups = {out.gid};
    return out;
  }
  // Supplementary groups: the primary one and every group listing the user by name.
  out.groups.push_back(out.gid);
  if (!out.name.empty()) {
    for (const GroupEntry& g : ParseGroup(group)) {
      if (std::find(g.members.begin(), g.members.end(), out.name) != g.members.end() &&
          std::find(out.groups.begin(), out.groups.end(), g.gid) == out.groups.end()) {
        out.groups.push_back(g.gid);
      }
    }
  }
  return out;
}

absl::StatusOr<Owner> ResolveChown(absl::string_view spec, const std::optional<std::string>& passwd,
                                   const std::optional<std::string>& group) {
  Owner out;
  absl::string_view user_spec = spec, group_spec;
  size_t colon = spec.find(':');
  if (colon != absl::string_view::npos) {
    user_spec = spec.substr(0, colon);
    group_spec = spec.substr(colon + 1);
  }
  if (!user_spec.empty()) {
    uint32_t id = 0;
    if (ParseId(user_spec, &id)) {
      out.uid = out.gid = id;
    } else {
      bool found = false;
      for (const PasswdEntry& u : ParsePasswd(passwd)) {
        if (u.name == user_spec) {
          out.uid = u.uid;
          out.gid = u.gid;
          found = true;
          break;
        }
      }
      if (!found) {
        return absl::FailedPreconditionError(absl::StrCat("--chown=", spec,
                                                          ": unable to find user ", user_spec,
                                                          ": no matching entries in passwd file"));
      }
    }
  }
  if (!group_spec.empty()) {
    auto gid = ResolveGroup(group_spec, group);
    if (!gid.ok())
      return absl::FailedPreconditionError(
          absl::StrCat("--chown=", spec, ": ", gid.status().message()));
    out.gid = *gid;
  }
  return out;
}

}  // namespace farm::worker::user
