#include "scheduler/plan/planner.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/patternmatcher.h"
#include "executor/entitlements.h"
#include "nlohmann/json.hpp"
#include "scheduler/dockerfile/shell_lex.h"
#include "worker/copy/select.h"

namespace farm::scheduler::plan {

namespace {

using dockerfile::Position;

const char* const kProxyArgs[] = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                  "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                  "ALL_PROXY",  "all_proxy"};

bool IsProxyArg(absl::string_view name) {
  for (const char* p : kProxyArgs) {
    if (name == p) return true;
  }
  return false;
}

// Go's strconv.Quote for the ASCII/UTF-8 text Dockerfiles hold.
std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out += "\"";
  return out;
}

// fmt.Sprintf("%q", []string{...}) → ["a" "b"]
std::string GoQuoteSlice(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const std::string& s : v) q.push_back(GoQuote(s));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

// fmt.Sprintf("%v", []string{...}) → [a b]
std::string GoSlice(const std::vector<std::string>& v) {
  return absl::StrCat("[", absl::StrJoin(v, " "), "]");
}

// time.Duration.String().
std::string GoDuration(int64_t ns) {
  if (ns == 0) return "0s";
  bool neg = ns < 0;
  uint64_t u = neg ? static_cast<uint64_t>(-ns) : static_cast<uint64_t>(ns);
  auto frac = [](uint64_t v, uint64_t unit, const char* suffix) {
    std::string s = std::to_string(v / unit);
    uint64_t rem = v % unit;
    if (rem) {
      std::string f = std::to_string(rem);
      int width = 0;
      for (uint64_t x = unit; x > 1; x /= 10) ++width;
      f = std::string(width - f.size(), '0') + f;
      while (!f.empty() && f.back() == '0') f.pop_back();
      s += "." + f;
    }
    return s + suffix;
  };
  std::string out;
  if (u < 1000) {
    out = std::to_string(u) + "ns";
  } else if (u < 1000000) {
    out = frac(u, 1000, "\xC2\xB5s");
  } else if (u < 1000000000) {
    out = frac(u, 1000000, "ms");
  } else {
    uint64_t secs = u / 1000000000;
    uint64_t sub = u % 1000000000;
    uint64_t h = secs / 3600, m = (secs / 60) % 60, s = secs % 60;
    if (h) absl::StrAppend(&out, h, "h");
    if (h || m) absl::StrAppend(&out, m, "m");
    out += frac(s * 1000000000 + sub, 1000000000, "s");
  }
  return neg ? "-" + out : out;
}

std::string Octal(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "%04o", v);
  return buf;
}

std::string JsonArray(const std::vector<std::string>& v) {
  return nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Linux signal names for STOPSIGNAL validation.
bool ValidSignal(absl::string_view sig) {
  static const char* const kNames[] = {
      "ABRT",   "ALRM",   "BUS",  "CHLD", "CLD",    "CONT",  "FPE",  "HUP",  "ILL",
      "INT",    "IO",     "IOT",  "KILL", "PIPE",   "POLL",  "PROF", "PWR",  "QUIT",
      "SEGV",   "STKFLT", "STOP", "SYS",  "TERM",   "TRAP",  "TSTP", "TTIN", "TTOU",
      "UNUSED", "URG",    "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ"};
  std::string s = absl::AsciiStrToUpper(sig);
  int64_t n;
  if (absl::SimpleAtoi(s, &n)) return n >= 1 && n <= 64;
  if (absl::StartsWith(s, "SIG")) s = s.substr(3);
  if (absl::StartsWith(s, "RTMIN") || absl::StartsWith(s, "RTMAX")) return true;
  for (const char* k : kNames) {
    if (s == k) return true;
  }
  return false;
}

// Resolves `path` against `workdir` like BuildKit's pathRelativeToWorkingDir, keeping a
// trailing slash ("dir semantics") and treating "." as a directory.
std::string AbsDest(const std::string& workdir, const std::string& dest) {
  bool dir = dest.empty() || dest == "." || dest == ".." || dest.back() == '/' ||
             absl::EndsWith(dest, "/.") || absl::EndsWith(dest, "/..");
  std::string joined = (!dest.empty() && dest[0] == '/')
                           ? common::CleanPath(dest)
                           : common::CleanPath(absl::StrCat("/", workdir, "/", dest));
  if (dir && joined != "/") joined += "/";
  return joined;
}

struct RunMount {
  farm::v1::Mount proto;
  std::string from;  // the from= value (a stage or image), "" = context / empty
  bool has_from = false;
  std::string canonical;
};

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

// Parses one RUN --mount value, expanding each field's value (BuildKit's parseMount).
absl::StatusOr<RunMount> ParseMount(absl::string_view value, const dockerfile::ShellLex& lex,
                                    const dockerfile::EnvLookup& env, std::string workdir,
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
  if (mode) canon.push_back(absl::StrCat("mode=", Octal(*mode)));
  if (uid) canon.push_back(absl::StrCat("uid=", *uid));
  if (gid) canon.push_back(absl::StrCat("gid=", *gid));
  if (size) canon.push_back(absl::StrCat("size=", size));
  if (!env_name.empty()) canon.push_back(absl::StrCat("env=", env_name));
  if (required) canon.push_back("required");
  m.canonical = absl::StrJoin(canon, ",");
  return m;
}

// EXPOSE port specs: "80", "80/tcp", "53/udp", "8000-8002/tcp".
absl::StatusOr<std::vector<std::string>> ParsePorts(absl::string_view spec) {
  std::string s(spec);
  std::string proto = "tcp";
  size_t slash = s.find('/');
  if (slash != std::string::npos) {
    proto = absl::AsciiStrToLower(s.substr(slash + 1));
    s = s.substr(0, slash);
    if (proto != "tcp" && proto != "udp" && proto != "sctp") {
      return absl::InvalidArgumentError(absl::StrCat("invalid proto: ", proto));
    }
  }
  if (s.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid port \"", spec, "\": EXPOSE takes no host address"));
  }
  uint32_t lo, hi;
  size_t dash = s.find('-');
  bool ok = dash == std::string::npos ? (absl::SimpleAtoi(s, &lo) && (hi = lo, true))
                                      : (absl::SimpleAtoi(s.substr(0, dash), &lo) &&
                                         absl::SimpleAtoi(s.substr(dash + 1), &hi));
  if (!ok || lo > 65535 || hi > 65535 || hi < lo) {
    return absl::InvalidArgumentError(absl::StrCat("invalid containerPort: ", s));
  }
  std::vector<std::string> out;
  for (uint32_t p = lo; p <= hi; ++p) out.push_back(absl::StrCat(p, "/", proto));
  return out;
}

bool IsHttpUrl(absl::string_view s) {
  return absl::StartsWith(s, "http://") || absl::StartsWith(s, "https://");
}
bool IsGitUrl(absl::string_view s) {
  return absl::StartsWith(s, "git@") || absl::StartsWith(s, "git://") ||
         (IsHttpUrl(s) && (absl::EndsWith(s, ".git") || absl::StrContains(s, ".git#")));
}

// Lists how a config changed, for `farm plan`.
std::vector<std::string> DiffConfig(const oci::ContainerConfig& a, const oci::ContainerConfig& b) {
  std::vector<std::string> out;
  for (const std::string& e : b.env) {
    if (std::find(a.env.begin(), a.env.end(), e) == a.env.end()) out.push_back("Env: " + e);
  }
  if (a.user != b.user) out.push_back("User: " + b.user);
  if (a.working_dir != b.working_dir) out.push_back("WorkingDir: " + b.working_dir);
  if (a.entrypoint != b.entrypoint) {
    out.push_back("Entrypoint: " + (b.entrypoint ? JsonArray(*b.entrypoint) : "null"));
  }
  if (a.cmd != b.cmd) out.push_back("Cmd: " + (b.cmd ? JsonArray(*b.cmd) : "null"));
  for (const std::string& p : b.exposed_ports) {
    if (!a.exposed_ports.count(p)) out.push_back("ExposedPorts: " + p);
  }
  for (const std::string& v : b.volumes) {
    if (!a.volumes.count(v)) out.push_back("Volumes: " + v);
  }
  for (const auto& [k, v] : b.labels) {
    auto it = a.labels.find(k);
    if (it == a.labels.end() || it->second != v) out.push_back("Labels: " + k + "=" + v);
  }
  if (a.stop_signal != b.stop_signal) out.push_back("StopSignal: " + b.stop_signal);
  if (!(a.healthcheck == b.healthcheck)) {
    out.push_back("Healthcheck: " + (b.healthcheck ? JsonArray(b.healthcheck->test) : "null"));
  }
  if (a.on_build != b.on_build) {
    for (size_t i = a.on_build.size(); i < b.on_build.size(); ++i) {
      out.push_back("OnBuild: " + b.on_build[i]);
    }
  }
  if (a.shell != b.shell) out.push_back("Shell: " + (b.shell ? JsonArray(*b.shell) : "null"));
  return out;
}

struct StageState {
  Stage* st = nullptr;
  std::vector<std::pair<std::string, std::optional<std::string>>> args;  // declared ARGs
  std::string chain;
  bool cmd_set = false;
  std::string layer_opts;
};

class Planner {
 public:
  Planner(const dockerfile::Dockerfile& df, const PlanOptions& opts) : df_(df), opts_(opts) {}

  absl::StatusOr<Plan> Run() {
    absl::StatusOr<oci::Platform> platform = oci::Platform::Parse(opts_.platform);
    if (!platform.ok()) return platform.status();
    platform_ = platform->String();
    absl::StatusOr<oci::Platform> build_platform = oci::Platform::Parse(opts_.build_platform);
    if (!build_platform.ok()) return build_platform.status();
    const farm::v1::LayerOptions& lo = opts_.layer_options;
    layer_opts_ =
        absl::StrCat("compression=", farm::v1::LayerOptions::Compression_Name(lo.compression()),
                     " level=", lo.level(), " source_date_epoch=",
                     lo.has_source_date_epoch() ? absl::StrCat(lo.source_date_epoch()) : "unset",
                     " preserve_permissions=", lo.preserve_permissions() ? "true" : "false");

    // Predefined platform ARGs live in the global scope.
    auto add_platform = [&](const std::string& prefix, const std::string& p) {
      std::vector<std::string> parts = absl::StrSplit(p, '/');
      meta_.push_back({prefix + "PLATFORM", p});
      meta_.push_back({prefix + "OS", parts[0]});
      meta_.push_back({prefix + "ARCH", parts[1]});
      meta_.push_back({prefix + "VARIANT", parts.size() > 2 ? parts[2] : ""});
    };
    add_platform("TARGET", platform_);
    add_platform("BUILD", build_platform->String());
    predefined_count_ = meta_.size();
    dockerfile::ShellLex lex(df_.escape);
    for (size_t i = 0; i < df_.meta_args.size(); ++i) {
      const dockerfile::ArgDef& a = df_.meta_args[i];
      Position pos = df_.meta_arg_positions[i];
      absl::StatusOr<std::string> name = lex.ProcessWord(a.key, MetaEnv());
      if (!name.ok()) return Err(pos, name.status().message());
      std::optional<std::string> value;
      auto ba = opts_.build_args.find(*name);
      if (ba != opts_.build_args.end()) {
        value = ba->second;
        used_args_.insert(*name);
      } else if (a.value) {
        absl::StatusOr<std::string> v = lex.ProcessWord(*a.value, MetaEnv());
        if (!v.ok()) return Err(pos, v.status().message());
        value = *v;
      } else if (auto pre = MetaValue(*name)) {
        value = pre;
      }
      meta_.push_back({*name, value});
      used_args_.insert(*name);
    }

    // The target stage.
    int target = static_cast<int>(df_.stages.size()) - 1;
    if (!opts_.target.empty()) {
      target = FindStageByName(absl::AsciiStrToLower(opts_.target), df_.stages.size());
      if (target < 0) {
        return absl::NotFoundError(absl::StrCat(df_.filename, ": target stage \"", opts_.target,
                                                "\" could not be found (stages: ", StageNames(),
                                                ")"));
      }
    }
    planned_.resize(df_.stages.size());
    state_.assign(df_.stages.size(), 0);
    absl::Status s = PlanStage(target, df_.stages[target].pos);
    if (!s.ok()) return s;

    Plan plan;
    plan.filename = df_.filename;
    std::map<int, int> remap;
    for (int idx : order_) {
      remap[idx] = static_cast<int>(plan.stages.size());
      plan.stages.push_back(std::move(*planned_[idx]));
    }
    plan.target = remap[target];
    plan.warnings = std::move(warnings_);
    for (const auto& w : df_.warnings) {
      plan.warnings.push_back(absl::StrCat(df_.filename, ":", w.line, ": ", w.message));
    }
    for (const auto& [k, v] : opts_.build_args) {
      if (!used_args_.count(k) && !IsProxyArg(k)) plan.unused_build_args.push_back(k);
    }
    if (!plan.unused_build_args.empty()) {
      plan.warnings.push_back(absl::StrCat("One or more build-args [",
                                           absl::StrJoin(plan.unused_build_args, " "),
                                           "] were not consumed"));
    }
    return plan;
  }

 private:
  absl::Status Err(Position pos, absl::string_view msg) const {
    return dockerfile::ErrorAt(df_.filename, pos, msg);
  }
  absl::Status ErrCode(absl::StatusCode code, Position pos, absl::string_view msg) const {
    return absl::Status(code,
                        absl::StrCat(df_.filename, ":", pos.line, ":", pos.column, ": ", msg));
  }

  std::optional<std::string> MetaValue(absl::string_view name) const {
    for (auto it = meta_.rbegin(); it != meta_.rend(); ++it) {
      if (it->first == name) return it->second;
    }
    return std::nullopt;
  }

  dockerfile::EnvLookup MetaEnv() const {
    return [this](absl::string_view name) { return MetaValue(name); };
  }

  std::string StageNames() const {
    std::vector<std::string> names;
    for (const auto& s : df_.stages) {
      if (!s.from.stage_name.empty()) names.push_back(s.from.stage_name);
    }
    return names.empty() ? "none named" : absl::StrJoin(names, ", ");
  }

  int FindStageByName(const std::string& name, size_t limit) const {
    for (size_t i = 0; i < limit && i < df_.stages.size(); ++i) {
      if (df_.stages[i].from.stage_name == name) return static_cast<int>(i);
    }
    return -1;
  }

  static std::string ImageChain(const std::string& platform,
                                const std::vector<std::string>& diff_ids) {
    std::vector<std::pair<std::string, std::string>> pre = {
        {"version", kKeyVersion}, {"from", "image"}, {"platform", platform}};
    for (const std::string& d : diff_ids) pre.push_back({"diff_id", d});
    return KeyOf(pre);
  }

  // Resolves a COPY --from / --mount from= value: a stage (by name or index) or an image.
  absl::StatusOr<SourceRef> ResolveSource(const std::string& from, int current, Position pos,
                                          const std::string& platform) {
    SourceRef ref;
    std::string lower = absl::AsciiStrToLower(from);
    int idx = FindStageByName(lower, df_.stages.size());
    int64_t n;
    if (idx < 0 && absl::SimpleAtoi(from, &n)) {
      if (n < 0 || n >= static_cast<int64_t>(df_.stages.size())) {
        return Err(pos, absl::StrCat("invalid stage index ", from, ": the Dockerfile has ",
                                     df_.stages.size(), " stage(s)"));
      }
      idx = static_cast<int>(n);
    }
    if (idx >= 0) {
      if (idx == current) {
        return Err(pos, absl::StrCat("stage \"", from, "\" refers to itself"));
      }
      absl::Status s = PlanStage(idx, pos);
      if (!s.ok()) return s;
      ref.stage = idx;
      ref.chain = planned_[idx]->final_chain;
      return ref;
    }
    if (opts_.resolver == nullptr) {
      ref.chain =
          KeyOf({{"version", kKeyVersion}, {"unresolved-image", from}, {"platform", platform}});
      warnings_.push_back(absl::StrCat(df_.filename, ":", pos.line, ":", pos.column, ": image \"",
                                       from, "\" not resolved: its key is a placeholder"));
      ResolvedImageStub(&ref, from);
      return ref;
    }
    absl::StatusOr<image::ResolvedImage> img = opts_.resolver->Resolve(from, platform);
    if (!img.ok() && absl::IsNotFound(img.status()) && opts_.allow_unresolved) {
      ref.chain =
          KeyOf({{"version", kKeyVersion}, {"unresolved-image", from}, {"platform", platform}});
      Warn(absl::StrCat(df_.filename, ":", pos.line, ":", pos.column, ": image \"", from,
                        "\" is not in the local image store: its key is a placeholder"));
      ResolvedImageStub(&ref, from);
      return ref;
    }
    if (!img.ok()) {
      return ErrCode(img.status().code(), pos,
                     absl::StrCat("\"", from, "\" is neither a stage of this Dockerfile nor an ",
                                  "image that could be resolved: ", img.status().message()));
    }
    ref.chain = ImageChain(platform, img->config.diff_ids);
    ref.image = *std::move(img);
    return ref;
  }

  static void ResolvedImageStub(SourceRef* ref, const std::string& from) {
    image::ResolvedImage stub;
    stub.reference = from;
    ref->image = std::move(stub);
  }

  absl::Status PlanStage(int idx, Position ref_pos) {
    if (state_[idx] == 2) return absl::OkStatus();
    if (state_[idx] == 1) {
      std::vector<std::string> cycle;
      auto it = std::find(stack_.begin(), stack_.end(), idx);
      for (; it != stack_.end(); ++it) cycle.push_back(StageLabel(*it));
      cycle.push_back(StageLabel(idx));
      return Err(ref_pos, absl::StrCat("stage cycle: ", absl::StrJoin(cycle, " -> ")));
    }
    state_[idx] = 1;
    stack_.push_back(idx);
    const dockerfile::Stage& ds = df_.stages[idx];
    Stage st;
    st.index = idx;
    st.name = ds.from.stage_name;
    st.pos = ds.pos;
    dockerfile::ShellLex lex(df_.escape);
    absl::StatusOr<dockerfile::ShellLex::Result> base = lex.Process(ds.from.image, MetaEnv());
    if (!base.ok()) return Err(ds.pos, base.status().message());
    NoteUndefined(*base, ds.pos);
    st.base_ref = base->word;
    if (st.base_ref.empty()) {
      return Err(ds.pos, absl::StrCat("base name (", ds.from.image, ") should not be blank"));
    }
    st.platform = platform_;
    if (!ds.from.platform.empty()) {
      absl::StatusOr<std::string> p = lex.ProcessWord(ds.from.platform, MetaEnv());
      if (!p.ok()) return Err(ds.pos, p.status().message());
      absl::StatusOr<oci::Platform> np = oci::Platform::Parse(*p);
      if (!np.ok()) return Err(ds.pos, np.status().message());
      st.platform = np->String();
    }

    int base_stage = FindStageByName(absl::AsciiStrToLower(st.base_ref), idx);
    if (base_stage >= 0) {
      absl::Status s = PlanStage(base_stage, ds.pos);
      if (!s.ok()) return s;
      const Stage& b = *planned_[base_stage];
      st.base_kind = Stage::BaseKind::kStage;
      st.base_stage = base_stage;
      st.config = b.config;
      st.base_chain = b.final_chain;
      st.platform = b.platform;
      st.depends_on.insert(base_stage);
    } else if (absl::AsciiStrToLower(st.base_ref) == "scratch") {
      st.base_kind = Stage::BaseKind::kScratch;
      st.config = oci::ImageConfig();
      st.config.config.env = {absl::StrCat("PATH=", kDefaultPath)};
      st.base_chain =
          KeyOf({{"version", kKeyVersion}, {"from", "scratch"}, {"platform", st.platform}});
    } else {
      st.base_kind = Stage::BaseKind::kImage;
      if (opts_.resolver != nullptr) {
        absl::StatusOr<image::ResolvedImage> img =
            opts_.resolver->Resolve(st.base_ref, st.platform);
        if (!img.ok() && absl::IsNotFound(img.status()) && opts_.allow_unresolved) {
          st.base_resolved = false;
          st.config = oci::ImageConfig();
          st.base_chain = KeyOf({{"version", kKeyVersion},
                                 {"unresolved-image", st.base_ref},
                                 {"platform", st.platform}});
          Warn(absl::StrCat(df_.filename, ":", ds.pos.line, ":", ds.pos.column, ": base image \"",
                            st.base_ref,
                            "\" is not in the local image store: keys below it are "
                            "placeholders and its config is not applied"));
        } else if (!img.ok()) {
          return ErrCode(img.status().code(), ds.pos,
                         absl::StrCat("FROM ", st.base_ref, ": ", img.status().message()));
        } else {
          st.config = img->config;
          st.base_chain = ImageChain(st.platform, img->config.diff_ids);
          st.base_image = *std::move(img);
        }
      } else {
        st.base_resolved = false;
        st.config = oci::ImageConfig();
        st.base_chain = KeyOf({{"version", kKeyVersion},
                               {"unresolved-image", st.base_ref},
                               {"platform", st.platform}});
        warnings_.push_back(absl::StrCat(
            df_.filename, ":", ds.pos.line, ":", ds.pos.column, ": base image \"", st.base_ref,
            "\" not resolved: keys below it are placeholders and its config (ENV, WORKDIR, ",
            "USER, ONBUILD) is not applied"));
      }
    }
    std::vector<std::string> parts = absl::StrSplit(st.platform, '/');
    st.config.os = parts[0];
    st.config.architecture = parts[1];
    st.config.variant = parts.size() > 2 ? parts[2] : "";

    StageState ss;
    ss.st = &st;
    ss.chain = st.base_chain;

    // ONBUILD triggers of the base run first, then are dropped from the new image.
    std::vector<std::string> triggers = st.config.config.on_build;
    st.config.config.on_build.clear();
    for (const std::string& t : triggers) {
      std::string where = absl::StrCat("ONBUILD trigger of ", st.base_ref);
      absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(t, where);
      if (!tree.ok()) {
        return Err(ds.pos, absl::StrCat("ONBUILD trigger \"", t, "\" of ", st.base_ref, ": ",
                                        tree.status().message()));
      }
      for (const dockerfile::Node& n : tree->nodes) {
        absl::StatusOr<dockerfile::Instruction> ins = dockerfile::ParseInstruction(n, where);
        if (!ins.ok()) {
          return Err(ds.pos, absl::StrCat("ONBUILD trigger of ", st.base_ref, ": ",
                                          ins.status().message()));
        }
        ins->pos = ds.pos;
        ins->end_line = ds.pos.line;
        absl::Status s = Process(&ss, *ins, /*from_onbuild=*/true);
        if (!s.ok()) return s;
      }
    }
    for (const dockerfile::Instruction& ins : ds.instructions) {
      absl::Status s = Process(&ss, ins, false);
      if (!s.ok()) return s;
    }
    st.final_chain = ss.chain;
    planned_[idx] = std::move(st);
    state_[idx] = 2;
    stack_.pop_back();
    order_.push_back(idx);
    return absl::OkStatus();
  }

  std::string StageLabel(int idx) const {
    const std::string& n = df_.stages[idx].from.stage_name;
    return n.empty() ? absl::StrCat(idx) : absl::StrCat("\"", n, "\"");
  }

  void NoteUndefined(const dockerfile::ShellLex::Result& r, Position pos) {
    for (const std::string& v : r.unmatched) {
      Warn(absl::StrCat(df_.filename, ":", pos.line, ":", pos.column,
                        ": UndefinedVar: usage of undefined variable '$", v, "'"));
    }
  }

  void Warn(std::string w) {
    if (std::find(warnings_.begin(), warnings_.end(), w) == warnings_.end()) {
      warnings_.push_back(std::move(w));
    }
  }

  // Variables visible to expansion: ENV wins over ARG (Docker's rule).
  dockerfile::EnvLookup StageEnv(const StageState& ss) const {
    return [&ss](absl::string_view name) -> std::optional<std::string> {
      if (auto v = ss.st->config.config.GetEnv(name)) return v;
      for (auto it = ss.args.rbegin(); it != ss.args.rend(); ++it) {
        if (it->first == name) return it->second;
      }
      return std::nullopt;
    };
  }

  absl::StatusOr<std::string> Expand(StageState& ss, const std::string& word, Position pos) {
    dockerfile::ShellLex lex(df_.escape);
    absl::StatusOr<dockerfile::ShellLex::Result> r = lex.Process(word, StageEnv(ss));
    if (!r.ok()) return Err(pos, r.status().message());
    NoteUndefined(*r, pos);
    return r->word;
  }

  std::vector<std::string> Shell(const StageState& ss) const {
    const auto& sh = ss.st->config.config.shell;
    if (sh && !sh->empty()) return *sh;
    return {"/bin/sh", "-c"};
  }

  // The environment a RUN sees: the image Env (PATH defaulted), then the ARGs with values that
  // ENV does not shadow.
  std::vector<std::string> RunEnv(const StageState& ss, bool with_proxies) const {
    std::vector<std::string> env = ss.st->config.config.env;
    bool has_path = false;
    for (const std::string& e : env) has_path |= absl::StartsWith(e, "PATH=");
    if (!has_path) env.push_back(absl::StrCat("PATH=", kDefaultPath));
    for (const auto& [k, v] : ss.args) {
      if (!v || ss.st->config.config.GetEnv(k)) continue;
      env.push_back(absl::StrCat(k, "=", *v));
    }
    if (with_proxies) {
      for (const char* p : kProxyArgs) {
        auto it = opts_.build_args.find(p);
        if (it != opts_.build_args.end()) env.push_back(absl::StrCat(p, "=", it->second));
      }
    }
    return env;
  }

  Step NewStep(const StageState& ss, const dockerfile::Instruction& ins, bool from_onbuild) {
    Step step;
    step.name = ins.name;
    step.pos = ins.pos;
    step.end_line = ins.end_line;
    step.from_onbuild = from_onbuild;
    step.config = ss.st->config.config;
    return step;
  }

  void Finish(StageState& ss, Step step, const oci::ContainerConfig& before) {
    step.config = ss.st->config.config;
    for (std::string& c : DiffConfig(before, step.config)) step.changes.push_back(std::move(c));
    if (step.kind == StepKind::kMetadata) {
      step.chain = ss.chain;
      if (step.instruction.empty()) step.instruction = step.created_by;
    }
    ss.st->steps.push_back(std::move(step));
  }

  void FillExecEnv(const StageState& ss, farm::v1::ExecEnv* env, bool run) const {
    const oci::ContainerConfig& c = ss.st->config.config;
    for (const std::string& e : run ? RunEnv(ss, true) : c.env) env->add_env(e);
    env->set_user(c.user);
    env->set_workdir(c.working_dir.empty() ? "/" : c.working_dir);
    for (const std::string& s : Shell(ss)) env->add_shell(s);
    env->set_platform(ss.st->platform);
    env->set_hostname("farm");
  }

  // Key material for the files a source selects in the context (or an error naming them).
  absl::Status ContextInputs(StageState& ss, const std::vector<std::string>& paths, bool parents,
                             const std::vector<std::string>& excludes, Position pos,
                             std::vector<std::pair<std::string, std::string>>* pre,
                             std::vector<std::string>* listing = nullptr) {
    if (opts_.context == nullptr) {
      pre->push_back({"inputs", "context not hashed"});
      if (!context_warned_) {
        warnings_.push_back("build context not given: COPY/ADD keys from it are placeholders");
        context_warned_ = true;
      }
      return absl::OkStatus();
    }
    absl::StatusOr<common::PatternMatcher> ex = common::PatternMatcher::Create(excludes);
    if (!ex.ok()) return Err(pos, absl::StrCat("--exclude: ", ex.status().message()));
    worker::copy::SelectOptions so;
    so.parents = parents;
    so.excludes = ex->empty() ? nullptr : &*ex;
    absl::StatusOr<std::vector<worker::copy::Match>> matches =
        worker::copy::ResolveSources(*opts_.context, paths, so);
    if (!matches.ok()) {
      std::string msg(matches.status().message());
      if (absl::IsNotFound(matches.status())) {
        absl::StrAppend(&msg, " in the build context (or excluded by .dockerignore)");
      }
      return ErrCode(matches.status().code(), pos, msg);
    }
    common::Sha256 h;
    int64_t files = 0, bytes = 0;
    bool preserve = opts_.layer_options.preserve_permissions();
    for (const worker::copy::Match& m : *matches) {
      h.Update(absl::StrCat("match\t", m.src, "\t", m.path, "\t", m.resolved, "\t", m.base, "\n"));
      absl::Status s = worker::copy::WalkMatch(
          *opts_.context, m, so.excludes,
          [&](const std::string& rel, const worker::copy::FileInfo& fi) {
            std::string line = absl::StrCat(rel, "\t");
            switch (fi.type) {
              case worker::copy::FileType::kDirectory:
                absl::StrAppend(&line, "dir\t", preserve ? Octal(fi.mode) : "");
                break;
              case worker::copy::FileType::kSymlink:
                absl::StrAppend(&line, "symlink\t", fi.link_target);
                break;
              case worker::copy::FileType::kRegular:
                if (!fi.digest) {
                  return absl::InternalError(
                      absl::StrCat("context file ", m.path, "/", rel, " was not hashed"));
                }
                absl::StrAppend(&line, "file\t",
                                preserve ? Octal(fi.mode) : (fi.executable() ? "x" : "-"), "\t",
                                fi.digest->hash, "/", fi.digest->size_bytes);
                ++files;
                bytes += fi.size;
                break;
              default:
                absl::StrAppend(&line, "other");
            }
            h.Update(line);
            h.Update("\n");
            if (listing != nullptr) {
              listing->push_back(absl::StrCat(m.path.empty() ? "." : m.path, rel.empty() ? "" : "/",
                                              rel, "\t", line.substr(line.find('\t') + 1)));
            }
            return absl::OkStatus();
          });
      if (!s.ok()) return Err(pos, s.message());
    }
    pre->push_back({"inputs", absl::StrCat("context sha256:", h.Finish().hash, " (", files,
                                           " files, ", bytes, " bytes)")});
    return absl::OkStatus();
  }

  absl::Status Process(StageState* ssp, const dockerfile::Instruction& ins, bool from_onbuild) {
    StageState& ss = *ssp;
    oci::ContainerConfig before = ss.st->config.config;
    oci::ContainerConfig& cfg = ss.st->config.config;
    Step step = NewStep(ss, ins, from_onbuild);
    const Position pos = ins.pos;

    if (auto* c = std::get_if<dockerfile::EnvCmd>(&ins.command)) {
      std::vector<std::pair<std::string, std::string>> kvs;
      for (const auto& kv : c->env) {
        absl::StatusOr<std::string> k = Expand(ss, kv.key, pos);
        if (!k.ok()) return k.status();
        absl::StatusOr<std::string> v = Expand(ss, kv.value, pos);
        if (!v.ok()) return v.status();
        if (k->empty()) return Err(pos, "ENV names can not be blank");
        kvs.push_back({*k, *v});
      }
      std::vector<std::string> parts;
      for (const auto& [k, v] : kvs) {
        cfg.SetEnv(k, v);
        parts.push_back(absl::StrCat(k, "=", v));
      }
      step.created_by = absl::StrCat("ENV ", absl::StrJoin(parts, " "));
    } else if (auto* c = std::get_if<dockerfile::ArgCmd>(&ins.command)) {
      std::vector<std::string> parts;
      for (const dockerfile::ArgDef& a : c->args) {
        absl::StatusOr<std::string> k = Expand(ss, a.key, pos);
        if (!k.ok()) return k.status();
        std::optional<std::string> value;
        auto ba = opts_.build_args.find(*k);
        if (ba != opts_.build_args.end()) {
          value = ba->second;
        } else if (a.value) {
          absl::StatusOr<std::string> v = Expand(ss, *a.value, pos);
          if (!v.ok()) return v.status();
          value = *v;
        } else if (auto m = MetaValue(*k)) {
          value = m;
        }
        used_args_.insert(*k);
        ss.args.erase(std::remove_if(ss.args.begin(), ss.args.end(),
                                     [&](const auto& p) { return p.first == *k; }),
                      ss.args.end());
        ss.args.push_back({*k, value});
        parts.push_back(value ? absl::StrCat(*k, "=", *value) : *k);
      }
      step.created_by = absl::StrCat("ARG ", absl::StrJoin(parts, " "));
    } else if (auto* c = std::get_if<dockerfile::LabelCmd>(&ins.command)) {
      std::vector<std::string> parts;
      for (const auto& kv : c->labels) {
        absl::StatusOr<std::string> k = Expand(ss, kv.key, pos);
        if (!k.ok()) return k.status();
        absl::StatusOr<std::string> v = Expand(ss, kv.value, pos);
        if (!v.ok()) return v.status();
        if (k->empty()) return Err(pos, "LABEL names can not be blank");
        cfg.labels[*k] = *v;
        parts.push_back(absl::StrCat(*k, "=", *v));
      }
      step.created_by = absl::StrCat("LABEL ", absl::StrJoin(parts, " "));
    } else if (auto* c = std::get_if<dockerfile::MaintainerCmd>(&ins.command)) {
      ss.st->config.author = c->maintainer;
      ss.st->author = c->maintainer;
      step.created_by = absl::StrCat("MAINTAINER ", c->maintainer);
      step.changes.push_back("Author: " + c->maintainer);
    } else if (auto* c = std::get_if<dockerfile::ExposeCmd>(&ins.command)) {
      std::set<std::string> ports;
      for (const std::string& p : c->ports) {
        absl::StatusOr<std::string> e = Expand(ss, p, pos);
        if (!e.ok()) return e.status();
        for (absl::string_view one : absl::StrSplit(*e, ' ', absl::SkipEmpty())) {
          absl::StatusOr<std::vector<std::string>> specs = ParsePorts(one);
          if (!specs.ok()) return Err(pos, specs.status().message());
          ports.insert(specs->begin(), specs->end());
        }
      }
      std::vector<std::string> m;
      for (const std::string& p : ports) {
        cfg.exposed_ports.insert(p);
        m.push_back(p + ":{}");
      }
      step.created_by = absl::StrCat("EXPOSE map[", absl::StrJoin(m, " "), "]");
    } else if (auto* c = std::get_if<dockerfile::UserCmd>(&ins.command)) {
      absl::StatusOr<std::string> u = Expand(ss, c->user, pos);
      if (!u.ok()) return u.status();
      cfg.user = *u;
      step.created_by = absl::StrCat("USER ", *u);
    } else if (auto* c = std::get_if<dockerfile::VolumeCmd>(&ins.command)) {
      std::vector<std::string> vols;
      for (const std::string& v : c->volumes) {
        absl::StatusOr<std::string> e = Expand(ss, v, pos);
        if (!e.ok()) return e.status();
        if (e->empty()) return Err(pos, "VOLUME specified can not be an empty string");
        cfg.volumes.insert(*e);
        vols.push_back(*e);
      }
      step.created_by = absl::StrCat("VOLUME ", GoSlice(vols));
    } else if (auto* c = std::get_if<dockerfile::StopSignalCmd>(&ins.command)) {
      absl::StatusOr<std::string> sig = Expand(ss, c->signal, pos);
      if (!sig.ok()) return sig.status();
      if (!ValidSignal(*sig)) return Err(pos, absl::StrCat("Invalid signal: ", *sig));
      cfg.stop_signal = *sig;
      step.created_by = absl::StrCat("STOPSIGNAL ", *sig);
    } else if (auto* c = std::get_if<dockerfile::HealthcheckCmd>(&ins.command)) {
      oci::HealthConfig h;
      h.test = c->test.args;
      h.interval_ns = c->interval_ns;
      h.timeout_ns = c->timeout_ns;
      h.start_period_ns = c->start_period_ns;
      h.start_interval_ns = c->start_interval_ns;
      h.retries = c->retries;
      if (cfg.healthcheck && !cfg.healthcheck->test.empty() && !c->none) {
        // Docker keeps unspecified timing options from the base image's healthcheck? No:
        // a new HEALTHCHECK replaces the whole configuration.
      }
      cfg.healthcheck = h;
      char retries[16];
      snprintf(retries, sizeof(retries), "'\\x%02x'", static_cast<unsigned>(h.retries & 0xff));
      step.created_by =
          c->none ? "HEALTHCHECK &{[\"NONE\"] \"0s\" \"0s\" \"0s\" \"0s\" '\\x00'}"
                  : absl::StrCat("HEALTHCHECK &{", GoQuoteSlice(h.test), " \"",
                                 GoDuration(h.interval_ns), "\" \"", GoDuration(h.timeout_ns),
                                 "\" \"", GoDuration(h.start_period_ns), "\" \"",
                                 GoDuration(h.start_interval_ns), "\" ", retries, "}");
    } else if (auto* c = std::get_if<dockerfile::ShellCmd>(&ins.command)) {
      cfg.shell = c->shell;
      step.created_by = absl::StrCat("SHELL ", GoSlice(c->shell));
    } else if (auto* c = std::get_if<dockerfile::OnbuildCmd>(&ins.command)) {
      cfg.on_build.push_back(c->expression);
      step.created_by = absl::StrCat("ONBUILD ", c->expression);
    } else if (auto* c = std::get_if<dockerfile::CmdCmd>(&ins.command)) {
      std::vector<std::string> args = c->command.args;
      if (c->command.prepend_shell) {
        std::vector<std::string> sh = Shell(ss);
        sh.insert(sh.end(), args.begin(), args.end());
        args = std::move(sh);
      }
      cfg.cmd = args;
      ss.cmd_set = true;
      step.created_by = absl::StrCat("CMD ", GoQuoteSlice(args));
    } else if (auto* c = std::get_if<dockerfile::EntrypointCmd>(&ins.command)) {
      std::vector<std::string> args = c->command.args;
      if (c->command.prepend_shell && !args.empty()) {
        std::vector<std::string> sh = Shell(ss);
        sh.insert(sh.end(), args.begin(), args.end());
        args = std::move(sh);
      }
      if (args.empty()) {
        cfg.entrypoint.reset();
      } else {
        cfg.entrypoint = args;
      }
      // Docker: ENTRYPOINT resets a CMD inherited from the base (not one set in this stage).
      if (!ss.cmd_set) cfg.cmd.reset();
      step.created_by = absl::StrCat("ENTRYPOINT ", GoQuoteSlice(args));
    } else if (auto* c = std::get_if<dockerfile::WorkdirCmd>(&ins.command)) {
      absl::StatusOr<std::string> w = Expand(ss, c->path, pos);
      if (!w.ok()) return w.status();
      if (w->empty()) return Err(pos, "WORKDIR path can not be empty");
      std::string abs = (*w)[0] == '/'
                            ? common::CleanPath(*w)
                            : common::CleanPath(absl::StrCat(
                                  "/", cfg.working_dir.empty() ? "/" : cfg.working_dir, "/", *w));
      cfg.working_dir = abs;
      step.kind = StepKind::kWorkdir;
      step.instruction = absl::StrCat("WORKDIR ", abs);
      step.created_by = step.instruction;
      step.preimage = {{"version", kKeyVersion},      {"parent", ss.chain},
                       {"op", step.instruction},      {"user", cfg.user},
                       {"platform", ss.st->platform}, {"layer", layer_opts_}};
      step.key = KeyOf(step.preimage);
      step.chain = step.key;
      ss.chain = step.chain;
      step.request.set_key(step.key);
      step.request.set_description(step.instruction);
      FillExecEnv(ss, step.request.mutable_env(), false);
      step.request.mutable_mkdir()->set_path(abs);
      *step.request.mutable_output() = opts_.layer_options;
    } else if (auto* c = std::get_if<dockerfile::RunCmd>(&ins.command)) {
      absl::Status s = PlanRun(ss, *c, pos, &step);
      if (!s.ok()) return s;
    } else if (auto* c = std::get_if<dockerfile::CopyCmd>(&ins.command)) {
      absl::Status s = PlanCopy(ss, *c, pos, &step);
      if (!s.ok()) return s;
    }
    Finish(ss, std::move(step), before);
    return absl::OkStatus();
  }

  absl::Status PlanRun(StageState& ss, const dockerfile::RunCmd& c, Position pos, Step* step) {
    dockerfile::ShellLex lex(df_.escape);
    auto env = StageEnv(ss);
    farm::v1::RunOp* run = step->request.mutable_run();
    std::vector<std::pair<std::string, std::string>> pre = {{"version", kKeyVersion},
                                                            {"parent", ss.chain}};
    // Mounts.
    std::vector<std::string> mount_canon;
    int ssh_index = 0;
    for (const std::string& mv : c.mounts) {
      absl::StatusOr<RunMount> m =
          ParseMount(mv, lex, env, ss.st->config.config.working_dir, ssh_index);
      if (!m.ok()) return Err(pos, absl::StrCat("--mount=", mv, ": ", m.status().message()));
      if (m->proto.type() == farm::v1::Mount::SSH) ++ssh_index;
      int index = run->mounts_size();
      *run->add_mounts() = m->proto;
      std::string canon = m->canonical;
      if (m->has_from && !m->from.empty()) {
        absl::StatusOr<SourceRef> ref = ResolveSource(m->from, ss.st->index, pos, ss.st->platform);
        if (!ref.ok()) return ref.status();
        if (ref->stage >= 0) ss.st->depends_on.insert(ref->stage);
        absl::StrAppend(&canon, " from-chain=", ref->chain);
        step->mount_from[index] = *std::move(ref);
      } else if (m->proto.type() == farm::v1::Mount::BIND) {
        // A bind mount of the context: keyed by the content it exposes.
        std::vector<std::pair<std::string, std::string>> inputs;
        std::string src = m->proto.source().empty() ? "/" : m->proto.source();
        absl::Status s = ContextInputs(ss, {src}, false, {}, pos, &inputs);
        if (!s.ok()) return s;
        for (auto& kv : inputs) absl::StrAppend(&canon, " ", kv.second);
        *run->mutable_mounts(index)->mutable_from()->mutable_context() = opts_.context_root;
      }
      mount_canon.push_back(canon);
    }
    if (!c.network.empty() && c.network != "default" && c.network != "none" &&
        c.network != "host") {
      return Err(pos, absl::StrCat("unsupported network mode \"", c.network,
                                   "\" (want default, none or host)"));
    }
    if (!c.security.empty() && c.security != "sandbox" && c.security != "insecure") {
      return Err(pos, absl::StrCat("unsupported security mode \"", c.security,
                                   "\" (want sandbox or insecure)"));
    }
    run->set_network(c.network.empty() ? opts_.default_network : c.network);
    run->set_security(c.security.empty() ? "sandbox" : c.security);
    if (opts_.check_entitlements) {
      for (const std::string& e : executor::RequiredEntitlements(*run)) {
        std::string flag = executor::EntitlementFlag(e);
        if (c.network.empty() && e == executor::kNetworkHost) flag += " (the build's --network)";
        if (opts_.allowed_entitlements.count(e) == 0) {
          return ErrCode(absl::StatusCode::kPermissionDenied, pos,
                         absl::StrCat("RUN ", flag, " needs the ", e,
                                      " entitlement, which the build did not ask for "
                                      "(add --allow ",
                                      e, ")"));
        }
        if (opts_.permitted_entitlements.count(e) == 0) {
          return ErrCode(absl::StatusCode::kPermissionDenied, pos,
                         absl::StrCat("RUN ", flag, " needs the ", e, " entitlement, which ",
                                      opts_.permitted_by, " does not permit"));
        }
      }
    }

    // The command.
    std::vector<std::string> args = c.command.args;
    std::vector<std::string> key_args;
    if (c.command.prepend_shell) {
      std::string cmd = args.empty() ? "" : args[0];
      std::vector<std::string> shell = Shell(ss);
      bool lone_heredoc = false;
      if (c.heredocs.size() == 1) {
        absl::StatusOr<dockerfile::Heredoc> h =
            dockerfile::ParseHeredocWord(std::string(absl::StripAsciiWhitespace(cmd)));
        lone_heredoc = h.ok() && !h->name.empty();
      }
      if (lone_heredoc) {
        const dockerfile::Heredoc& h = c.heredocs[0];
        std::string content = h.chomp ? dockerfile::ChompHeredocContent(h.content) : h.content;
        if (absl::StartsWith(content, "#!")) {
          std::string path = absl::StrCat("/dev/pipes/", h.name);
          farm::v1::InlineFile* f = run->add_files();
          f->set_name(path);
          f->set_content(content);
          f->set_mode(0755);
          args = {path};
          key_args = {path};
          pre.push_back({"file", absl::StrCat(path, " sha256:", common::Sha256Hex(content))});
        } else {
          args = shell;
          args.push_back(content);
          key_args = args;
        }
      } else {
        for (const dockerfile::Heredoc& h : c.heredocs) {
          absl::StrAppend(&cmd, "\n", h.content, h.name);
        }
        args = shell;
        args.push_back(cmd);
        key_args = shell;
        key_args.push_back(c.heredocs.empty() ? NormalizeShellWhitespace(cmd) : cmd);
      }
    } else {
      key_args = args;
    }
    for (const std::string& a : args) run->add_args(a);
    std::string op = absl::StrCat("RUN ", JsonArray(key_args));
    for (const std::string& m : mount_canon) absl::StrAppend(&op, " --mount=", m);
    absl::StrAppend(&op, " --network=", run->network(), " --security=", run->security());
    pre.push_back({"op", op});
    std::vector<std::string> env_key = RunEnv(ss, false);
    pre.push_back({"env", absl::StrJoin(env_key, "\n     ")});
    const oci::ContainerConfig& cfg = ss.st->config.config;
    pre.push_back({"user", cfg.user});
    pre.push_back({"workdir", cfg.working_dir.empty() ? "/" : cfg.working_dir});
    pre.push_back({"shell", JsonArray(Shell(ss))});
    pre.push_back({"platform", ss.st->platform});
    pre.push_back({"layer", layer_opts_});

    step->kind = StepKind::kRun;
    step->preimage = std::move(pre);
    step->key = KeyOf(step->preimage);
    step->chain = step->key;
    ss.chain = step->chain;
    std::string flags;
    for (int i = 0; i < run->mounts_size(); ++i) {
      absl::StrAppend(&flags, "--mount=", mount_canon[i].substr(0, mount_canon[i].find(' ')), " ");
    }
    if (run->network() != "default") absl::StrAppend(&flags, "--network=", run->network(), " ");
    if (run->security() != "sandbox") {
      absl::StrAppend(&flags, "--security=", run->security(), " ");
    }
    step->instruction =
        absl::StrCat("RUN ", flags,
                     c.command.prepend_shell ? (c.command.args.empty() ? "" : c.command.args[0])
                                             : JsonArray(args));
    // History: BuildKit's runCommandString, "|N K=V ... argv # buildkit".
    std::vector<std::string> hist;
    std::vector<std::string> declared;
    for (const auto& [k, v] : ss.args) {
      if (v) declared.push_back(absl::StrCat(k, "=", *v));
    }
    if (!declared.empty()) {
      hist.push_back(absl::StrCat("|", declared.size()));
      hist.insert(hist.end(), declared.begin(), declared.end());
    }
    hist.insert(hist.end(), args.begin(), args.end());
    step->created_by = absl::StrCat("RUN ", absl::StrJoin(hist, " "), " # buildkit");
    step->request.set_key(step->key);
    step->request.set_description(step->instruction);
    FillExecEnv(ss, step->request.mutable_env(), true);
    *step->request.mutable_output() = opts_.layer_options;
    return absl::OkStatus();
  }

  absl::Status PlanCopy(StageState& ss, const dockerfile::CopyCmd& c, Position pos, Step* step) {
    const char* name = c.add ? "ADD" : "COPY";
    std::vector<std::string> paths, urls;
    std::vector<std::string> all_srcs;
    for (const std::string& s : c.sources) {
      if (absl::StartsWith(s, "<<")) continue;
      absl::StatusOr<std::string> e = Expand(ss, s, pos);
      if (!e.ok()) return e.status();
      if (e->empty()) return Err(pos, absl::StrCat(name, ": a source can not be empty"));
      if (c.add && IsGitUrl(*e)) {
        return ErrCode(
            absl::StatusCode::kUnimplemented, pos,
            absl::StrCat("ADD of a git repository (", *e, ") is not supported by farm yet"));
      }
      if (c.add && IsHttpUrl(*e)) {
        urls.push_back(*e);
      } else {
        if (!c.add && IsHttpUrl(*e)) {
          return Err(pos, absl::StrCat("COPY does not fetch URLs (\"", *e, "\"): use ADD"));
        }
        paths.push_back(*e);
      }
      all_srcs.push_back(*e);
    }
    absl::StatusOr<std::string> dest = Expand(ss, c.dest, pos);
    if (!dest.ok()) return dest.status();
    std::string workdir = ss.st->config.config.working_dir;
    std::string abs_dest = AbsDest(workdir.empty() ? "/" : workdir, *dest);
    std::string chown, chmod, from, checksum;
    const std::pair<const std::string*, std::string*> flag_values[] = {
        {&c.chown, &chown}, {&c.chmod, &chmod}, {&c.from, &from}, {&c.checksum, &checksum}};
    for (auto [in, out] : flag_values) {
      if (in->empty()) continue;
      absl::StatusOr<std::string> e = Expand(ss, *in, pos);
      if (!e.ok()) return e.status();
      *out = *e;
    }
    if (!chmod.empty()) {
      uint32_t m;
      bool octal = !chmod.empty() && chmod.find_first_not_of("01234567") == std::string::npos;
      if (!octal || !absl::numbers_internal::safe_strtou32_base(chmod, &m, 8) || m > 07777) {
        return Err(pos,
                   absl::StrCat("--chmod=", chmod, ": only octal modes (e.g. 0755) are supported"));
      }
    }
    if (!checksum.empty()) {
      if (urls.empty()) {
        return Err(pos, "--checksum can only be used with an http(s) source");
      }
      if (!absl::StartsWith(checksum, "sha256:") || !common::IsValidSha256Hex(checksum.substr(7))) {
        return Err(pos, absl::StrCat("--checksum=", checksum,
                                     ": expected sha256:<64 lowercase hex digits>"));
      }
    }
    std::vector<std::string> excludes;
    for (const std::string& x : c.excludes) {
      absl::StatusOr<std::string> e = Expand(ss, x, pos);
      if (!e.ok()) return e.status();
      excludes.push_back(*e);
    }

    std::vector<std::pair<std::string, std::string>> pre = {{"version", kKeyVersion}};
    if (!c.link) pre.push_back({"parent", ss.chain});
    std::vector<std::string> opflags;
    if (!from.empty()) opflags.push_back("--from=" + from);
    if (!chown.empty()) opflags.push_back("--chown=" + chown);
    if (!chmod.empty()) opflags.push_back("--chmod=" + chmod);
    if (c.link) opflags.push_back("--link");
    if (c.parents) opflags.push_back("--parents");
    for (const std::string& x : excludes) opflags.push_back("--exclude=" + x);
    if (!checksum.empty()) opflags.push_back("--checksum=" + checksum);
    if (c.keep_git_dir) opflags.push_back("--keep-git-dir");
    if (c.unpack) opflags.push_back(absl::StrCat("--unpack=", *c.unpack ? "true" : "false"));
    std::vector<std::string> shown = all_srcs;
    for (const dockerfile::Heredoc& h : c.heredocs) shown.push_back("<<" + h.name);
    std::string op = absl::StrCat(name, opflags.empty() ? "" : " ", absl::StrJoin(opflags, " "),
                                  " ", JsonArray(shown), " ", abs_dest);
    pre.push_back({"op", op});
    pre.push_back({"platform", ss.st->platform});

    farm::v1::CopyOp* cp = step->request.mutable_copy();
    // Inputs.
    if (!from.empty()) {
      if (!urls.empty()) return Err(pos, "COPY --from cannot copy URLs");
      absl::StatusOr<SourceRef> ref = ResolveSource(from, ss.st->index, pos, ss.st->platform);
      if (!ref.ok()) return ref.status();
      if (ref->stage >= 0) ss.st->depends_on.insert(ref->stage);
      pre.push_back({"inputs", absl::StrCat("from ", from, " chain ", ref->chain)});
      step->copy_from = *std::move(ref);
      cp->mutable_source()->mutable_layers();
    } else {
      if (!paths.empty()) {
        absl::Status s = ContextInputs(ss, paths, c.parents, excludes, pos, &pre, &step->inputs);
        if (!s.ok()) return s;
      }
      *cp->mutable_source()->mutable_context() = opts_.context_root;
    }
    for (const std::string& u : urls) {
      pre.push_back({"url", absl::StrCat(u, checksum.empty() ? " (content checked at build time)"
                                                             : " " + checksum)});
    }
    for (const dockerfile::Heredoc& h : c.heredocs) {
      std::string content = h.content;
      if (h.expand) {
        dockerfile::ShellLex raw('\\');
        raw.skip_process_quotes = true;
        absl::StatusOr<std::string> e = raw.ProcessWord(content, StageEnv(ss));
        if (!e.ok()) return Err(pos, e.status().message());
        content = *e;
      }
      farm::v1::InlineFile* f = cp->add_inline_files();
      f->set_name(h.name);
      f->set_content(content);
      pre.push_back({"heredoc", absl::StrCat(h.name, " sha256:", common::Sha256Hex(content))});
    }
    pre.push_back({"layer", layer_opts_});

    for (const std::string& p : paths) cp->add_srcs(p);
    for (const std::string& u : urls) cp->add_srcs(u);
    cp->set_dest(abs_dest);
    cp->set_chown(chown);
    cp->set_chmod(chmod);
    cp->set_link(c.link);
    cp->set_parents(c.parents);
    for (const std::string& x : excludes) cp->add_excludes(x);
    cp->set_add(c.add);
    cp->set_checksum(checksum);
    cp->set_keep_git_dir(c.keep_git_dir);
    if (c.unpack) cp->set_unpack(*c.unpack);

    step->kind = StepKind::kCopy;
    step->preimage = std::move(pre);
    step->key = KeyOf(step->preimage);
    step->chain = c.link
                      ? KeyOf({{"version", kKeyVersion}, {"parent", ss.chain}, {"link", step->key}})
                      : step->key;
    ss.chain = step->chain;
    step->instruction = op;
    std::vector<std::string> hist = {name};
    hist.insert(hist.end(), shown.begin(), shown.end());
    hist.push_back(*dest);
    step->created_by = absl::StrCat(absl::StrJoin(hist, " "), " # buildkit");
    step->request.set_key(step->key);
    step->request.set_description(step->instruction);
    FillExecEnv(ss, step->request.mutable_env(), false);
    *step->request.mutable_output() = opts_.layer_options;
    return absl::OkStatus();
  }

  const dockerfile::Dockerfile& df_;
  const PlanOptions& opts_;
  std::string platform_;
  std::string layer_opts_;
  std::vector<std::pair<std::string, std::optional<std::string>>> meta_;
  size_t predefined_count_ = 0;
  std::set<std::string> used_args_;
  std::vector<std::optional<Stage>> planned_;
  std::vector<int> state_;
  std::vector<int> order_;
  std::vector<int> stack_;  // stages being planned, outermost first
  std::vector<std::string> warnings_;
  bool context_warned_ = false;
};

}  // namespace

std::string KeyOf(const std::vector<std::pair<std::string, std::string>>& preimage) {
  common::Sha256 h;
  for (const auto& [k, v] : preimage) {
    h.Update(k);
    h.Update(": ");
    h.Update(v);
    h.Update("\n");
  }
  return h.Finish().hash;
}

std::string NormalizeShellWhitespace(absl::string_view cmd) {
  std::string out;
  char quote = 0;
  bool pending_space = false;
  for (size_t i = 0; i < cmd.size(); ++i) {
    char c = cmd[i];
    if (quote == 0 && (c == ' ' || c == '\t')) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) {
      out.push_back(' ');
      pending_space = false;
    }
    out.push_back(c);
    if (quote == '\'') {
      if (c == '\'') quote = 0;
    } else if (c == '\\' && i + 1 < cmd.size()) {
      out.push_back(cmd[++i]);
    } else if (quote == '"') {
      if (c == '"') quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    }
  }
  return out;
}

absl::StatusOr<Plan> MakePlan(const dockerfile::Dockerfile& df, const PlanOptions& options) {
  return Planner(df, options).Run();
}

namespace {

const char* KindName(StepKind k) {
  switch (k) {
    case StepKind::kRun:
      return "run";
    case StepKind::kCopy:
      return "copy";
    case StepKind::kWorkdir:
      return "workdir";
    case StepKind::kMetadata:
      return "metadata";
  }
  return "?";
}

std::string BaseText(const Stage& s, const Plan& plan) {
  switch (s.base_kind) {
    case Stage::BaseKind::kScratch:
      return "scratch";
    case Stage::BaseKind::kStage:
      return absl::StrCat("stage ", s.base_ref);
    case Stage::BaseKind::kImage:
      if (!s.base_resolved) return absl::StrCat("image ", s.base_ref, " (not resolved)");
      return absl::StrCat("image ", s.base_image->reference, "@", s.base_image->manifest_digest);
  }
  return "";
}

}  // namespace

std::string PlanToText(const Plan& plan) {
  std::string out;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const Stage& s = plan.stages[i];
    absl::StrAppend(&out, "stage ", s.index, s.name.empty() ? "" : " (" + s.name + ")",
                    static_cast<int>(i) == plan.target ? " [target]" : "", "\n");
    absl::StrAppend(&out, "  from ", BaseText(s, plan), "  platform ", s.platform, "\n");
    absl::StrAppend(&out, "  base chain ", s.base_chain.substr(0, 16), "\n");
    if (!s.depends_on.empty()) {
      std::vector<std::string> deps;
      for (int d : s.depends_on) deps.push_back(absl::StrCat(d));
      absl::StrAppend(&out, "  depends on stages ", absl::StrJoin(deps, ", "), "\n");
    }
    for (const Step& st : s.steps) {
      absl::StrAppend(&out, "  ", st.pos.line, ": ", st.from_onbuild ? "(ONBUILD) " : "",
                      st.instruction, "\n");
      if (!st.key.empty()) absl::StrAppend(&out, "      key ", st.key.substr(0, 16), "\n");
      for (const auto& [k, v] : st.preimage) {
        if (k == "inputs" || k == "url" || k == "heredoc" || k == "file") {
          absl::StrAppend(&out, "      ", k, " ", v, "\n");
        }
      }
      for (const std::string& c : st.changes) absl::StrAppend(&out, "      config ", c, "\n");
    }
  }
  for (const std::string& w : plan.warnings) absl::StrAppend(&out, "warning: ", w, "\n");
  return out;
}

std::string PlanToJson(const Plan& plan) {
  using oj = nlohmann::ordered_json;
  oj j = oj::object();
  j["file"] = plan.filename;
  j["target"] = plan.stages.empty() ? -1 : plan.stages[plan.target].index;
  oj stages = oj::array();
  for (const Stage& s : plan.stages) {
    oj sj = oj::object();
    sj["index"] = s.index;
    sj["name"] = s.name;
    oj base = oj::object();
    base["kind"] = s.base_kind == Stage::BaseKind::kScratch ? "scratch"
                   : s.base_kind == Stage::BaseKind::kStage ? "stage"
                                                            : "image";
    base["ref"] = s.base_ref;
    if (s.base_kind == Stage::BaseKind::kStage) base["stage"] = s.base_stage;
    if (s.base_kind == Stage::BaseKind::kImage) {
      base["resolved"] = s.base_resolved;
      if (s.base_image) {
        base["reference"] = s.base_image->reference;
        base["manifest_digest"] = s.base_image->manifest_digest;
        base["config_digest"] = s.base_image->config_digest;
      }
    }
    base["chain"] = s.base_chain;
    sj["base"] = std::move(base);
    sj["platform"] = s.platform;
    sj["depends_on"] = std::vector<int>(s.depends_on.begin(), s.depends_on.end());
    oj steps = oj::array();
    for (const Step& st : s.steps) {
      oj x = oj::object();
      x["line"] = st.pos.line;
      x["end_line"] = st.end_line;
      x["name"] = st.name;
      x["kind"] = KindName(st.kind);
      if (st.from_onbuild) x["from_onbuild"] = true;
      x["instruction"] = st.instruction;
      x["created_by"] = st.created_by;
      if (!st.key.empty()) {
        x["key"] = st.key;
        x["chain"] = st.chain;
        oj pre = oj::array();
        for (const auto& [k, v] : st.preimage) pre.push_back(oj::array({k, v}));
        x["preimage"] = std::move(pre);
      }
      if (st.copy_from && st.copy_from->stage >= 0) x["copy_from_stage"] = st.copy_from->stage;
      if (st.copy_from && st.copy_from->image) {
        x["copy_from_image"] = st.copy_from->image->reference;
      }
      x["changes"] = st.changes;
      steps.push_back(std::move(x));
    }
    sj["steps"] = std::move(steps);
    sj["final_chain"] = s.final_chain;
    oj cfg = oj::parse(s.config.ToJson(), nullptr, false);
    if (!cfg.is_discarded()) sj["config"] = cfg.contains("config") ? cfg["config"] : oj::object();
    stages.push_back(std::move(sj));
  }
  j["stages"] = std::move(stages);
  j["warnings"] = plan.warnings;
  j["unused_build_args"] = plan.unused_build_args;
  return j.dump(2, ' ', false, oj::error_handler_t::replace) + "\n";
}

}  // namespace farm::scheduler::plan
