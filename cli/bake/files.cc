#include "cli/bake/files.h"

#include <cstdlib>
#include <exception>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace farm::cli::bake {

namespace {

using json = nlohmann::json;

constexpr char kHclHelp[] =
    ": HCL bake files are not supported: convert it with `docker buildx bake --print "
    "> docker-bake.json` (or `-f FILE --print`) and bake the JSON";

bool IsHcl(const std::string& path) { return absl::EndsWith(absl::AsciiStrToLower(path), ".hcl"); }

bool IsJson(const std::string& path) {
  return absl::EndsWith(absl::AsciiStrToLower(path), ".json");
}

// Line and column (1-based) of byte `offset` in `text`.
std::pair<int, int> LineColumn(absl::string_view text, size_t offset) {
  int line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

// nlohmann's parser throws; this is its adapter. Errors carry file:line:col.
absl::StatusOr<json> ParseJson(const std::string& filename, absl::string_view text) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    // e.byte is 1-based: the byte where the parser stopped.
    auto [line, col] = LineColumn(text, e.byte > 0 ? e.byte - 1 : 0);
    std::string what = e.what();
    // "[json.exception.parse_error.101] parse error at line 3, column 5: syntax error ..."
    size_t colon = what.find(": ");
    std::string detail = colon == std::string::npos ? what : what.substr(colon + 2);
    return absl::InvalidArgumentError(absl::StrCat(filename, ":", line, ":", col, ": ", detail));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": ", e.what()));
  }
}

// Expands "${NAME}" from `vars`; "$${" is a literal "${". Other "$" are literal (as in HCL).
absl::StatusOr<std::string> ExpandVars(const std::string& s,
                                       const std::map<std::string, std::string>& vars,
                                       const std::string& where) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "$${") == 0) {
      out += "${";
      i += 2;
      continue;
    }
    if (s.compare(i, 2, "${") != 0) {
      out += s[i];
      continue;
    }
    size_t end = s.find('}', i + 2);
    if (end == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": unterminated \"${\" in \"", s, "\""));
    }
    std::string name(absl::StripAsciiWhitespace(s.substr(i + 2, end - i - 2)));
    auto it = vars.find(name);
    if (it == vars.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown variable \"", name,
                                                     "\" (declare it: \"variable\": {\"", name,
                                                     "\": {\"default\": \"\"}})"));
    }
    out += it->second;
    i = end;
  }
  return out;
}

// Reads one bake JSON document's groups and targets (variables already known).
class JsonReader {
 public:
  JsonReader(const std::string& filename, const std::map<std::string, std::string>& vars)
      : file_(filename), vars_(vars) {}

  absl::Status Read(const json& doc, Definition* into) {
    if (!doc.is_object()) return Err("", "a bake file is a JSON object");
    for (const auto& [key, value] : doc.items()) {
      if (key == "variable" || key == "function") continue;
      if (key != "group" && key != "target") {
        into->warnings.push_back(absl::StrCat(file_, ": ignoring unknown key \"", key, "\""));
        continue;
      }
      if (!value.is_object()) return Err(key, "expected an object of named blocks");
      for (const auto& [name, block] : value.items()) {
        std::string path = absl::StrCat(key, ".", name);
        if (!block.is_object()) return Err(path, "expected an object");
        if (key == "group") {
          Group g;
          for (const auto& [field, v] : block.items()) {
            if (field != "targets") {
              into->warnings.push_back(
                  absl::StrCat(file_, ": ", path, ": ignoring unknown field \"", field, "\""));
              continue;
            }
            ASSIGN_OR_RETURN(g.targets, Strings(v, path + ".targets"));
          }
          Group& have = into->groups[name];
          have.targets = g.targets;  // a later file's group replaces
        } else {
          Target t;
          t.name = name;
          t.origin = file_;
          RETURN_IF_ERROR(ReadTarget(block, path, &t, into));
          auto it = into->targets.find(name);
          if (it == into->targets.end()) {
            into->targets[name] = std::move(t);
          } else {
            MergeTarget(t, &it->second);
          }
        }
      }
    }
    return absl::OkStatus();
  }

 private:
  absl::Status Err(const std::string& path, absl::string_view msg) const {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, path.empty() ? "" : ": ", path, ": ", msg));
  }

  absl::StatusOr<std::string> String(const json& v, const std::string& path) const {
    if (v.is_string()) return ExpandVars(v.get<std::string>(), vars_, file_ + ": " + path);
    if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
    if (v.is_boolean()) return std::string(v.get<bool>() ? "true" : "false");
    return Err(path, "expected a string");
  }

  absl::StatusOr<std::vector<std::string>> Strings(const json& v, const std::string& path) const {
    if (!v.is_array()) return Err(path, "expected an array of strings");
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      ASSIGN_OR_RETURN(std::string s, String(v[i], absl::StrCat(path, "[", i, "]")));
      out.push_back(std::move(s));
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, std::string>> Map(const json& v,
                                                         const std::string& path) const {
    if (!v.is_object()) return Err(path, "expected an object of strings");
    std::map<std::string, std::string> out;
    for (const auto& [k, e] : v.items()) {
      if (e.is_null()) continue;  // buildx: a null arg is unset
      ASSIGN_OR_RETURN(out[k], String(e, absl::StrCat(path, ".", k)));
    }
    return out;
  }

  absl::StatusOr<bool> Bool(const json& v, const std::string& path) const {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_string()) {
      ASSIGN_OR_RETURN(std::string s, String(v, path));
      if (s == "true") return true;
      if (s == "false") return false;
    }
    return Err(path, "expected true or false");
  }

  // cache-from / output: strings, or buildx's --print objects ({"type": "registry", "ref": ...}).
  absl::StatusOr<std::vector<std::string>> Specs(const json& v, const std::string& path) const {
    if (!v.is_array()) return Err(path, "expected an array");
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
      std::string p = absl::StrCat(path, "[", i, "]");
      if (v[i].is_object()) {
        ASSIGN_OR_RETURN(auto m, Map(v[i], p));
        std::string spec;
        for (const auto& [k, e] : m) absl::StrAppend(&spec, spec.empty() ? "" : ",", k, "=", e);
        out.push_back(spec);
      } else {
        ASSIGN_OR_RETURN(std::string s, String(v[i], p));
        out.push_back(std::move(s));
      }
    }
    return out;
  }

  absl::Status ReadTarget(const json& block, const std::string& path, Target* t, Definition* into) {
    for (const auto& [field, v] : block.items()) {
      std::string p = absl::StrCat(path, ".", field);
      if (field == "inherits") {
        ASSIGN_OR_RETURN(t->inherits, Strings(v, p));
      } else if (field == "context") {
        ASSIGN_OR_RETURN(t->context, String(v, p));
      } else if (field == "dockerfile") {
        ASSIGN_OR_RETURN(t->dockerfile, String(v, p));
      } else if (field == "dockerfile-inline") {
        ASSIGN_OR_RETURN(t->dockerfile_inline, String(v, p));
      } else if (field == "target") {
        ASSIGN_OR_RETURN(t->target, String(v, p));
      } else if (field == "args") {
        ASSIGN_OR_RETURN(t->args, Map(v, p));
      } else if (field == "labels") {
        ASSIGN_OR_RETURN(t->labels, Map(v, p));
      } else if (field == "contexts") {
        ASSIGN_OR_RETURN(t->contexts, Map(v, p));
      } else if (field == "tags") {
        ASSIGN_OR_RETURN(t->tags, Strings(v, p));
      } else if (field == "platforms") {
        ASSIGN_OR_RETURN(t->platforms, Strings(v, p));
      } else if (field == "cache-from") {
        ASSIGN_OR_RETURN(t->cache_from, Specs(v, p));
      } else if (field == "output") {
        ASSIGN_OR_RETURN(t->output, Specs(v, p));
      } else if (field == "no-cache") {
        ASSIGN_OR_RETURN(t->no_cache, Bool(v, p));
      } else if (field == "pull") {
        ASSIGN_OR_RETURN(t->pull, Bool(v, p));
      } else {
        into->warnings.push_back(
            absl::StrCat(file_, ": ", path, ": field \"", field, "\" is not supported (ignored)"));
      }
    }
    return absl::OkStatus();
  }

  const std::string& file_;
  const std::map<std::string, std::string>& vars_;
};

// The "variable" blocks of `doc` into `defaults` (later files override earlier defaults).
absl::Status CollectVariables(const std::string& filename, const json& doc,
                              std::map<std::string, std::string>* defaults) {
  if (!doc.is_object() || !doc.contains("variable")) return absl::OkStatus();
  const json& vars = doc["variable"];
  if (!vars.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": variable: expected an object"));
  }
  for (const auto& [name, block] : vars.items()) {
    std::string value;
    if (block.is_object() && block.contains("default")) {
      const json& d = block["default"];
      if (d.is_string()) {
        value = d.get<std::string>();
      } else if (d.is_null()) {
        value = "";
      } else {
        value = d.dump();
      }
    } else if (!block.is_object() && !block.is_null()) {
      return absl::InvalidArgumentError(
          absl::StrCat(filename, ": variable.", name, ": expected an object"));
    }
    (*defaults)[name] = value;
  }
  return absl::OkStatus();
}

std::map<std::string, std::string> VariableValues(
    const std::map<std::string, std::string>& defaults, const Env& env) {
  std::map<std::string, std::string> out;
  for (const auto& [name, def] : defaults) {
    std::optional<std::string> e = env ? env(name) : std::nullopt;
    out[name] = e ? *e : def;
  }
  return out;
}

}  // namespace

Env ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = getenv(name.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

const std::vector<std::string>& DefaultFiles() {
  static const std::vector<std::string> kFiles = {
      "compose.yaml",
      "compose.yml",
      "docker-compose.yml",
      "docker-compose.yaml",
      "docker-bake.json",
      "docker-bake.hcl",
      "docker-bake.override.json",
      "docker-bake.override.hcl",
  };
  return kFiles;
}

absl::StatusOr<std::vector<std::string>> FindFiles(const std::string& dir,
                                                   const std::vector<std::string>& given) {
  std::vector<std::string> files;
  if (!given.empty()) {
    files = given;
  } else {
    for (const std::string& f : DefaultFiles()) {
      if (common::PathExists(common::JoinPath(dir, f))) {
        files.push_back(dir == "." ? f : common::JoinPath(dir, f));
      }
    }
    if (files.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "no bake file in ", dir == "." ? "the current directory" : dir, " (looked for ",
          absl::StrJoin(DefaultFiles(), ", "), "); name one with -f FILE"));
    }
  }
  for (const std::string& f : files) {
    if (IsHcl(f)) return absl::InvalidArgumentError(absl::StrCat(f, kHclHelp));
  }
  return files;
}

absl::Status ParseBakeJson(const std::string& filename, absl::string_view text, const Env& env,
                           Definition* into) {
  ASSIGN_OR_RETURN(json doc, ParseJson(filename, text));
  std::map<std::string, std::string> defaults;
  RETURN_IF_ERROR(CollectVariables(filename, doc, &defaults));
  return JsonReader(filename, VariableValues(defaults, env)).Read(doc, into);
}

absl::StatusOr<Definition> LoadFiles(const std::vector<std::string>& files, const Env& env) {
  Definition def;
  // Variables are global to the set (as in buildx): collect every JSON file's first.
  struct Read {
    std::string name;
    std::string text;
    std::optional<json> doc;
  };
  std::vector<Read> reads;
  std::map<std::string, std::string> defaults;
  for (const std::string& f : files) {
    if (IsHcl(f)) return absl::InvalidArgumentError(absl::StrCat(f, kHclHelp));
    absl::StatusOr<std::string> text = common::ReadFile(f);
    if (!text.ok()) {
      return absl::Status(text.status().code(),
                          absl::StrCat("reading bake file ", f, ": ", text.status().message()));
    }
    Read r{f, *std::move(text), std::nullopt};
    bool json_file = IsJson(f);
    if (!json_file && !absl::EndsWith(f, ".yml") && !absl::EndsWith(f, ".yaml")) {
      // Neither extension: JSON if it looks like it (buildx sniffs too).
      absl::string_view t = absl::StripLeadingAsciiWhitespace(r.text);
      json_file = !t.empty() && t[0] == '{';
    }
    if (json_file) {
      ASSIGN_OR_RETURN(r.doc, ParseJson(f, r.text));
      RETURN_IF_ERROR(CollectVariables(f, *r.doc, &defaults));
    }
    reads.push_back(std::move(r));
  }
  std::map<std::string, std::string> vars = VariableValues(defaults, env);
  for (const Read& r : reads) {
    if (r.doc) {
      RETURN_IF_ERROR(JsonReader(r.name, vars).Read(*r.doc, &def));
    } else {
      RETURN_IF_ERROR(ParseCompose(r.name, r.text, env, &def));
    }
    def.files.push_back(r.name);
  }
  return def;
}

}  // namespace farm::cli::bake
