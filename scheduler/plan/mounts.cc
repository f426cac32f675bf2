#include "scheduler/plan/mounts.h"

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "scheduler/plan/keys.h"

namespace farm::scheduler::plan {

namespace {

// Splits a --mount value into fields like Go's csv reader (quotes allowed around a field).
absl::StatusOr<std::vector<std::string>> CsvFields(absl::string_view v) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (size_t i = 0; i < v.size(); ++i) {
    char c = v[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < v.size() && v[i + 1] == '"') {
          cur.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        cur.push_back(c);
      }
    } else if (c == '"' && cur.empty()) {
      quoted = true;
    } else if (c == ',') {
      out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (quoted) return absl::InvalidArgumentError("unterminated quote");
  out.push_back(std::move(cur));
  return out;
}

bool ParseBool(absl::string_view v, bool* out) {
  std::string l = absl::AsciiStrToLower(v);
  if (l == "1" || l == "t" || l == "true") {
    *out = true;
    return true;
  }
  if (l == "0" || l == "f" || l == "false") {
    *out = false;
    return true;
  }
  return false;
}

absl::StatusOr<int64_t> ParseRamBytes(absl::string_view v) {
  std::string s = absl::AsciiStrToLower(v);
  size_t i = 0;
  while (i < s.size() && (absl::ascii_isdigit(s[i]) || s[i] == '.')) ++i;
  double n;
  if (i == 0 || !absl::SimpleAtod(s.substr(0, i), &n)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid size: '", v, "'"));
  }
  std::string unit = s.substr(i);
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  if (!unit.empty() && unit.back() == 'i') unit.pop_back();
  double mult = 1;
  if (unit == "k") {
    mult = 1024;
  } else if (unit == "m") {
    mult = 1024.0 * 1024;
  } else if (unit == "g") {
    mult = 1024.0 * 1024 * 1024;
  } else if (unit == "t") {
    mult = 1024.0 * 1024 * 1024 * 1024;
  } else if (!unit.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid size: '", v, "'"));
  }
  return static_cast<int64_t>(n * mult);
}

// BuildKit's parseMount, with errors that do not yet say where (ParseRunMount adds that).
absl::StatusOr<RunMount> ParseMount(absl::string_view value, const dockerfile::ShellLex& lex,
                                    const dockerfile::EnvLookup& env, const std::string& workdir,
                                    int ssh_index) {
  absl::StatusOr<std::vector<std::string>> fields = CsvFields(value);
  if (!fields.ok()) return fields.status();
  RunMount m;
  std::string type = "bind";
  std::string target, source, from, id, sharing, env_name;
  bool ro = false, ro_auto = true, required = false;
  std::optional<uint32_t> mode, uid, gid;
  int64_t size = 0;
  for (const std::string& field : *fields) {
    size_t eq = field.find('=');
    std::string key = absl::AsciiStrToLower(field.substr(0, eq));
    if (eq == std::string::npos) {
      if (field.empty()) continue;
      if (key == "readonly" || key == "ro") {
        ro = true;
        ro_auto = false;
      } else if (key == "readwrite" || key == "rw") {
        ro = false;
        ro_auto = false;
      } else if (key == "required") {
        if (type != "secret" && type != "ssh") {
          return absl::InvalidArgumentError(
              absl::StrCat("unexpected key 'required' for mount type '", type, "'"));
        }
        required = true;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid field '", field, "' must be a key=value pair"));
      }
      continue;
    }
    absl::StatusOr<std::string> v = lex.ProcessWord(field.substr(eq + 1), env);
    if (!v.ok()) return v.status();
    const std::string& val = *v;
    bool b;
    if (key == "type") {
      type = absl::AsciiStrToLower(val);
      if (type != "bind" && type != "cache" && type != "tmpfs" && type != "secret" &&
          type != "ssh") {
        return absl::InvalidArgumentError(absl::StrCat(
            "unsupported mount type \"", val, "\" (want bind, cache, tmpfs, secret or ssh)"));
      }
    } else if (key == "from") {
      from = val;
      m.has_from = true;
    } else if (key == "source" || key == "src") {
      source = val;
    } else if (key == "target" || key == "dst" || key == "destination") {
      target = val;
    } else if (key == "readonly" || key == "ro") {
      if (!ParseBool(val, &b)) {
        return absl::InvalidArgumentError(absl::StrCat("invalid value for ", key, ": ", val));
      }
      ro = b;
      ro_auto = false;
    } else if (key == "readwrite" || key == "rw") {
      if (!ParseBool(val, &b)) {
        return absl::InvalidArgumentError(absl::StrCat("invalid value for ", key, ": ", val));
      }
      ro = !b;
      ro_auto = false;
    } else if (key == "required") {
      if (type != "secret" && type != "ssh") {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected key 'required' for mount type '", type, "'"));
      }
      if (!ParseBool(val, &required)) {
        return absl::InvalidArgumentError(absl::StrCat("invalid value for required: ", val));
      }
    } else if (key == "size") {
      if (type != "tmpfs") {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected key 'size' for mount type '", type, "'"));
      }
      absl::StatusOr<int64_t> s = ParseRamBytes(val);
      if (!s.ok()) return s.status();
      size = *s;
    } else if (key == "id") {
      id = val;
    } else if (key == "sharing") {
      if (type != "cache") {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid cache sharing set for ", type, " mount"));
      }
      if (val != "shared" && val != "private" && val != "locked") {
        return absl::InvalidArgumentError(absl::StrCat("unsupported sharing value \"", val,
                                                       "\" (want shared, private or locked)"));
      }
      sharing = val;
    } else if (key == "mode" || key == "uid" || key == "gid") {
      uint32_t n;
      bool ok = key == "mode" ? absl::numbers_internal::safe_strtou32_base(val, &n, 8)
                              : absl::SimpleAtoi(val, &n);
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat("invalid value for ", key, ": ", val));
      }
      (key == "mode" ? mode : key == "uid" ? uid : gid) = n;
    } else if (key == "env") {
      if (type != "secret") {
        return absl::InvalidArgumentError(
            absl::StrCat("unexpected key 'env' for mount type '", type, "'"));
      }
      env_name = val;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected key '", key, "' in '", field, "'"));
    }
  }
  bool file_info = type == "secret" || type == "ssh" || type == "cache";
  if (!file_info && (mode || uid || gid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("mode/uid/gid not allowed for type \"", type, "\""));
  }
  if (ro_auto) ro = !(type == "cache" || type == "tmpfs");
  if ((type == "secret" || type == "ssh") && m.has_from) {
    return absl::InvalidArgumentError(absl::StrCat(type, " mount should not have a from"));
  }
  if ((type == "secret" || type == "ssh") && !source.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(type, " source currently not supported"));
  }
  if (type == "tmpfs" && m.has_from) {
    return absl::InvalidArgumentError("tmpfs mount should not have a from");
  }
  if (type == "secret") {
    if (id.empty() && target.empty() && env_name.empty()) {
      return absl::InvalidArgumentError("secret mount requires an id or a target");
    }
    if (id.empty()) id = std::string(absl::string_view(target).substr(target.rfind('/') + 1));
    if (target.empty() && env_name.empty()) target = "/run/secrets/" + id;
  } else if (type == "ssh") {
    if (id.empty()) id = "default";
    if (target.empty()) target = absl::StrCat("/run/buildkit/ssh_agent.", ssh_index);
  } else if (target.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("mount type=", type, " requires a target"));
  }
  if (!target.empty() && target[0] != '/') {
    target = common::CleanPath(absl::StrCat("/", workdir, "/", target));
  } else if (!target.empty()) {
    target = common::CleanPath(target);
  }
  if (type == "cache" && id.empty()) id = target;

  farm::v1::Mount& p = m.proto;
  p.set_type(type == "bind"     ? farm::v1::Mount::BIND
             : type == "cache"  ? farm::v1::Mount::CACHE
             : type == "tmpfs"  ? farm::v1::Mount::TMPFS
             : type == "secret" ? farm::v1::Mount::SECRET
                                : farm::v1::Mount::SSH);
  p.set_target(target);
  p.set_readonly(ro);
  p.set_source(source);
  p.set_id(id);
  p.set_sharing(type == "cache" && sharing.empty() ? "shared" : sharing);
  p.set_mode(mode.value_or(0));
  p.set_uid(uid.value_or(0));
  p.set_gid(gid.value_or(0));
  p.set_size_bytes(size);
  p.set_env(env_name);
  p.set_required(required);
  m.from = from;
  std::vector<std::string> canon = {absl::StrCat("type=", type), absl::StrCat("target=", target)};
  if (m.has_from) canon.push_back(absl::StrCat("from=", from));
  if (!source.empty()) canon.push_back(absl::StrCat("source=", source));
  if (!id.empty()) canon.push_back(absl::StrCat("id=", id));
  if (!p.sharing().empty()) canon.push_back(absl::StrCat("sharing=", p.sharing()));
  canon.push_back(ro ? "ro" : "rw");
  if (mode) canon.push_back(absl::StrCat("mode=", OctalMode(*mode)));
  if (uid) canon.push_back(absl::StrCat("uid=", *uid));
  if (gid) canon.push_back(absl::StrCat("gid=", *gid));
  if (size) canon.push_back(absl::StrCat("size=", size));
  if (!env_name.empty()) canon.push_back(absl::StrCat("env=", env_name));
  if (required) canon.push_back("required");
  m.canonical = absl::StrJoin(canon, ",");
  return m;
}

}  // namespace

absl::StatusOr<RunMount> ParseRunMount(absl::string_view value, const MountContext& ctx) {
  dockerfile::ShellLex lex(ctx.escape);
  dockerfile::EnvLookup none = [](absl::string_view) { return std::optional<std::string>(); };
  absl::StatusOr<RunMount> m =
      ParseMount(value, lex, ctx.env ? ctx.env : none, ctx.workdir, ctx.ssh_index);
  if (!m.ok()) {
    return dockerfile::ErrorAt(ctx.filename, ctx.pos,
                               absl::StrCat("--mount=", value, ": ", m.status().message()));
  }
  return m;
}

}  // namespace farm::scheduler::plan
