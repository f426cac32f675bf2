// Compose files' build sections (https://docs.docker.com/reference/compose-file/build/) as
// bake targets, the way buildx reads them. yaml-cpp throws: this file is its adapter, and every
// YAML error becomes INVALID_ARGUMENT with file:line:col.
#include <exception>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/bake/files.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "yaml-cpp/yaml.h"

namespace farm::cli::bake {

namespace {

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

std::string Where(const std::string& file, const YAML::Mark& m) {
  if (m.is_null()) return file;
  return absl::StrCat(file, ":", m.line + 1, ":", m.column + 1);
}

// KEY=VALUE lines of a .env file (comments, blank lines and "export " skipped, one level of
// quotes removed).
std::map<std::string, std::string> ReadDotEnv(const std::string& path) {
  std::map<std::string, std::string> out;
  absl::StatusOr<std::string> text = common::ReadFile(path);
  if (!text.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    absl::ConsumePrefix(&line, "export ");
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string key(absl::StripAsciiWhitespace(line.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(line.substr(eq + 1)));
    if (value.size() >= 2 && (value[0] == '"' || value[0] == '\'') && value.back() == value[0]) {
      value = value.substr(1, value.size() - 2);
    }
    out[key] = value;
  }
  return out;
}

class ComposeReader {
 public:
  ComposeReader(const std::string& file, const Env& env) : file_(file), env_(env) {
    size_t slash = file.rfind('/');
    dir_ = slash == std::string::npos ? "" : file.substr(0, slash);
    dotenv_ = ReadDotEnv(dir_.empty() ? ".env" : common::JoinPath(dir_, ".env"));
    lookup_ = [this](const std::string& name) -> std::optional<std::string> {
      if (env_) {
        if (std::optional<std::string> v = env_(name)) return v;
      }
      auto it = dotenv_.find(name);
      if (it != dotenv_.end()) return it->second;
      return std::nullopt;
    };
  }

  absl::Status Read(const YAML::Node& doc, Definition* into) {
    if (!doc.IsMap()) return Err(doc, "a compose file is a mapping (with \"services:\")");
    YAML::Node services = doc["services"];
    if (!services) return absl::OkStatus();
    if (!services.IsMap()) return Err(services, "services: expected a mapping");
    std::vector<std::string> names;
    for (const auto& kv : services) {
      std::string name = kv.first.as<std::string>();
      const YAML::Node& svc = kv.second;
      if (!svc.IsMap()) return Err(svc, absl::StrCat("services.", name, ": expected a mapping"));
      YAML::Node build = svc["build"];
      if (!build) continue;  // an image-only service: nothing to build
      Target t;
      t.name = name;
      t.origin = Where(file_, build.Mark());
      std::string p = absl::StrCat("services.", name, ".build");
      if (build.IsScalar()) {
        ASSIGN_OR_RETURN(std::string ctx, String(build, p));
        t.context = Path(ctx);
      } else if (build.IsMap()) {
        RETURN_IF_ERROR(ReadBuild(build, p, &t, into));
      } else {
        return Err(build, p + ": expected a path or a mapping");
      }
      if (!t.context) t.context = Path(".");
      if (YAML::Node image = svc["image"]) {
        ASSIGN_OR_RETURN(std::string ref, String(image, absl::StrCat("services.", name, ".image")));
        std::vector<std::string> tags = {ref};
        if (t.tags) tags.insert(tags.end(), t.tags->begin(), t.tags->end());
        t.tags = tags;
      }
      auto it = into->targets.find(name);
      if (it == into->targets.end()) {
        into->targets[name] = std::move(t);
      } else {
        MergeTarget(t, &it->second);
      }
      names.push_back(name);
    }
    if (!names.empty() && !into->groups.count("default")) {
      // buildx: a Compose file's services make the default group.
      into->groups["default"].targets = names;
    } else if (!names.empty()) {
      std::vector<std::string>& d = into->groups["default"].targets;
      for (const std::string& n : names) {
        if (std::find(d.begin(), d.end(), n) == d.end()) d.push_back(n);
      }
    }
    for (const std::string& u : unset_) {
      into->warnings.push_back(absl::StrCat(
          file_, ": the \"", u, "\" variable is not set; defaulting to a blank string"));
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Err(const YAML::Node& n, absl::string_view msg) const {
    return absl::InvalidArgumentError(absl::StrCat(Where(file_, n.Mark()), ": ", msg));
  }

  // A path in the file, taken relative to the compose file's directory.
  std::string Path(const std::string& p) const {
    if (dir_.empty() || p.empty() || p[0] == '/' || absl::StrContains(p, "://")) return p;
    return common::CleanPath(common::JoinPath(dir_, p));
  }

  absl::StatusOr<std::string> String(const YAML::Node& n, const std::string& path) {
    if (!n.IsScalar()) return Err(n, path + ": expected a string");
    return InterpolateCompose(n.Scalar(), lookup_, Where(file_, n.Mark()), &unset_);
  }

  absl::StatusOr<std::vector<std::string>> Strings(const YAML::Node& n, const std::string& path) {
    if (!n.IsSequence()) return Err(n, path + ": expected a list");
    std::vector<std::string> out;
    for (const auto& e : n) {
      ASSIGN_OR_RETURN(std::string s, String(e, path));
      out.push_back(std::move(s));
    }
    return out;
  }

  // A mapping, or a list of "KEY=VALUE" (a bare "KEY" takes the environment's value).
  absl::StatusOr<std::map<std::string, std::string>> Map(const YAML::Node& n,
                                                         const std::string& path) {
    std::map<std::string, std::string> out;
    if (n.IsMap()) {
      for (const auto& kv : n) {
        std::string k = kv.first.as<std::string>();
        if (kv.second.IsNull()) {
          if (std::optional<std::string> v = lookup_(k)) out[k] = *v;
          continue;
        }
        ASSIGN_OR_RETURN(out[k], String(kv.second, absl::StrCat(path, ".", k)));
      }
      return out;
    }
    if (n.IsSequence()) {
      for (const auto& e : n) {
        ASSIGN_OR_RETURN(std::string s, String(e, path));
        size_t eq = s.find('=');
        if (eq == std::string::npos) {
          if (std::optional<std::string> v = lookup_(s)) out[s] = *v;
        } else {
          out[s.substr(0, eq)] = s.substr(eq + 1);
        }
      }
      return out;
    }
    return Err(n, path + ": expected a mapping or a list of KEY=VALUE");
  }

  absl::StatusOr<bool> Bool(const YAML::Node& n, const std::string& path) {
    ASSIGN_OR_RETURN(std::string s, String(n, path));
    if (s == "true") return true;
    if (s == "false") return false;
    return Err(n, path + ": expected true or false");
  }

  absl::Status ReadBuild(const YAML::Node& build, const std::string& p, Target* t,
                         Definition* into) {
    for (const auto& kv : build) {
      std::string field = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      std::string fp = absl::StrCat(p, ".", field);
      if (field == "context") {
        ASSIGN_OR_RETURN(std::string c, String(v, fp));
        t->context = Path(c);
      } else if (field == "dockerfile") {
        ASSIGN_OR_RETURN(t->dockerfile, String(v, fp));
      } else if (field == "dockerfile_inline") {
        ASSIGN_OR_RETURN(t->dockerfile_inline, String(v, fp));
      } else if (field == "target") {
        ASSIGN_OR_RETURN(t->target, String(v, fp));
      } else if (field == "args") {
        ASSIGN_OR_RETURN(t->args, Map(v, fp));
      } else if (field == "labels") {
        ASSIGN_OR_RETURN(t->labels, Map(v, fp));
      } else if (field == "tags") {
        ASSIGN_OR_RETURN(t->tags, Strings(v, fp));
      } else if (field == "platforms") {
        ASSIGN_OR_RETURN(t->platforms, Strings(v, fp));
      } else if (field == "cache_from") {
        ASSIGN_OR_RETURN(t->cache_from, Strings(v, fp));
      } else if (field == "no_cache") {
        ASSIGN_OR_RETURN(t->no_cache, Bool(v, fp));
      } else if (field == "pull") {
        ASSIGN_OR_RETURN(t->pull, Bool(v, fp));
      } else if (field == "additional_contexts") {
        ASSIGN_OR_RETURN(auto m, Map(v, fp));
        for (auto& [name, value] : m) {
          // Compose names another service "service:NAME"; bake says "target:NAME".
          if (absl::StartsWith(value, "service:")) {
            value = "target:" + value.substr(8);
          } else if (!absl::StartsWith(value, "target:") && !absl::StrContains(value, "://")) {
            value = Path(value);
          }
          t->contexts[name] = value;
        }
      } else if (field == "x-bake") {
        RETURN_IF_ERROR(ReadXBake(v, fp, t));
      } else {
        into->warnings.push_back(absl::StrCat(Where(file_, kv.first.Mark()), ": ", fp,
                                              " is not supported by farm bake (ignored)"));
      }
    }
    return absl::OkStatus();
  }

  // buildx's extension field: bake attributes Compose has no word for.
  absl::Status ReadXBake(const YAML::Node& x, const std::string& p, Target* t) {
    if (!x.IsMap()) return Err(x, p + ": expected a mapping");
    auto list = [&](const YAML::Node& v,
                    const std::string& fp) -> absl::StatusOr<std::vector<std::string>> {
      if (v.IsScalar()) {
        ASSIGN_OR_RETURN(std::string s, String(v, fp));
        return std::vector<std::string>{s};
      }
      return Strings(v, fp);
    };
    for (const auto& kv : x) {
      std::string field = kv.first.as<std::string>();
      std::string fp = absl::StrCat(p, ".", field);
      if (field == "platforms") {
        ASSIGN_OR_RETURN(t->platforms, list(kv.second, fp));
      } else if (field == "tags") {
        ASSIGN_OR_RETURN(t->tags, list(kv.second, fp));
      } else if (field == "cache-from") {
        ASSIGN_OR_RETURN(t->cache_from, list(kv.second, fp));
      } else if (field == "output") {
        ASSIGN_OR_RETURN(t->output, list(kv.second, fp));
      } else if (field == "contexts") {
        ASSIGN_OR_RETURN(t->contexts, Map(kv.second, fp));
      } else if (field == "no-cache") {
        ASSIGN_OR_RETURN(t->no_cache, Bool(kv.second, fp));
      } else if (field == "pull") {
        ASSIGN_OR_RETURN(t->pull, Bool(kv.second, fp));
      }
    }
    return absl::OkStatus();
  }

  const std::string& file_;
  const Env& env_;
  std::string dir_;
  std::map<std::string, std::string> dotenv_;
  Env lookup_;
  std::vector<std::string> unset_;
};

}  // namespace

absl::StatusOr<std::string> InterpolateCompose(absl::string_view s, const Env& env,
                                               const std::string& where,
                                               std::vector<std::string>* unset) {
  auto get = [&](const std::string& name) -> std::optional<std::string> {
    return env ? env(name) : std::nullopt;
  };
  auto note_unset = [&](const std::string& name) {
    if (unset != nullptr && std::find(unset->begin(), unset->end(), name) == unset->end()) {
      unset->push_back(name);
    }
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '$') {
      out += s[i];
      continue;
    }
    if (i + 1 < s.size() && s[i + 1] == '$') {
      out += '$';
      ++i;
      continue;
    }
    if (i + 1 < s.size() && IsNameStart(s[i + 1])) {
      size_t j = i + 1;
      while (j < s.size() && IsNameChar(s[j])) ++j;
      std::string name(s.substr(i + 1, j - i - 1));
      std::optional<std::string> v = get(name);
      if (!v) note_unset(name);
      out += v.value_or("");
      i = j - 1;
      continue;
    }
    if (i + 1 >= s.size() || s[i + 1] != '{') {
      out += '$';
      continue;
    }
    // ${...}: find the matching brace (defaults may hold nested ${...}).
    size_t depth = 0, j = i + 1;
    for (; j < s.size(); ++j) {
      if (s[j] == '{') ++depth;
      if (s[j] == '}' && --depth == 0) break;
    }
    if (j >= s.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": invalid interpolation format for \"", s, "\": missing \"}\""));
    }
    absl::string_view body = s.substr(i + 2, j - i - 2);
    size_t n = 0;
    while (n < body.size() && IsNameChar(body[n])) ++n;
    std::string name(body.substr(0, n));
    if (name.empty() || !IsNameStart(name[0])) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": invalid interpolation format for \"", s, "\": bad variable name"));
    }
    absl::string_view op = body.substr(n);
    std::optional<std::string> v = get(name);
    bool colon = absl::ConsumePrefix(&op, ":");
    bool set = v.has_value() && (!colon || !v->empty());
    if (op.empty()) {
      if (colon) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": invalid interpolation format for \"", s, "\""));
      }
      if (!v) note_unset(name);
      out += v.value_or("");
    } else {
      char kind = op[0];
      ASSIGN_OR_RETURN(std::string arg, InterpolateCompose(op.substr(1), env, where, unset));
      if (kind == '-') {
        out += set ? *v : arg;
      } else if (kind == '?') {
        if (!set) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": required variable ", name,
                                                         " is missing a value",
                                                         arg.empty() ? "" : ": ", arg));
        }
        out += *v;
      } else if (kind == '+') {
        out += set ? arg : "";
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": invalid interpolation format for \"", s, "\""));
      }
    }
    i = j;
  }
  return out;
}

absl::Status ParseCompose(const std::string& filename, absl::string_view text, const Env& env,
                          Definition* into) {
  try {
    YAML::Node doc = YAML::Load(std::string(text));
    return ComposeReader(filename, env).Read(doc, into);
  } catch (const YAML::Exception& e) {
    std::string where = Where(filename, e.mark);
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": ", e.what()));
  }
}

}  // namespace farm::cli::bake
