#include "oci/config.h"

#include <ctime>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace farm::oci {

namespace {

using nlohmann::json;

// nlohmann::json throws; this adapter never lets an exception out. Every accessor checks
// the type first, so the only throwing calls left are parse (called without exceptions) and
// dump (which cannot fail on values we built from valid UTF-8... and is guarded anyway).

absl::Status TypeError(absl::string_view where, absl::string_view want) {
  return absl::InvalidArgumentError(absl::StrCat("image config: ", where, ": expected ", want));
}

absl::Status GetString(const json& obj, const char* key, std::string* out, const char* where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return TypeError(absl::StrCat(where, key), "a string");
  *out = it->get_ref<const std::string&>();
  return absl::OkStatus();
}

absl::Status GetStringList(const json& v, std::vector<std::string>* out, absl::string_view where) {
  if (!v.is_array()) return TypeError(where, "an array of strings");
  out->clear();
  for (const json& e : v) {
    if (!e.is_string()) return TypeError(where, "an array of strings");
    out->push_back(e.get_ref<const std::string&>());
  }
  return absl::OkStatus();
}

absl::Status GetOptList(const json& obj, const char* key,
                        std::optional<std::vector<std::string>>* out, const char* where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    out->reset();
    return absl::OkStatus();
  }
  std::vector<std::string> v;
  if (it->is_string()) {
    // Some old images store Cmd/Entrypoint as a string; Docker treats it as one element.
    v.push_back(it->get_ref<const std::string&>());
  } else {
    absl::Status s = GetStringList(*it, &v, absl::StrCat(where, key));
    if (!s.ok()) return s;
  }
  *out = std::move(v);
  return absl::OkStatus();
}

absl::Status GetKeySet(const json& obj, const char* key, std::set<std::string>* out,
                       const char* where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return TypeError(absl::StrCat(where, key), "an object");
  for (auto m = it->begin(); m != it->end(); ++m) out->insert(m.key());
  return absl::OkStatus();
}

absl::Status GetInt(const json& obj, const char* key, int64_t* out, const char* where) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return TypeError(absl::StrCat(where, key), "an integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status ParseContainerConfig(const json& c, ContainerConfig* out) {
  static const char* kWhere = "config.";
  if (!c.is_object()) return TypeError("config", "an object");
  RETURN_IF_ERROR(GetString(c, "User", &out->user, kWhere));
  RETURN_IF_ERROR(GetKeySet(c, "ExposedPorts", &out->exposed_ports, kWhere));
  auto env = c.find("Env");
  if (env != c.end() && !env->is_null()) {
    RETURN_IF_ERROR(GetStringList(*env, &out->env, "config.Env"));
  }
  RETURN_IF_ERROR(GetOptList(c, "Entrypoint", &out->entrypoint, kWhere));
  RETURN_IF_ERROR(GetOptList(c, "Cmd", &out->cmd, kWhere));
  RETURN_IF_ERROR(GetKeySet(c, "Volumes", &out->volumes, kWhere));
  RETURN_IF_ERROR(GetString(c, "WorkingDir", &out->working_dir, kWhere));
  auto labels = c.find("Labels");
  if (labels != c.end() && !labels->is_null()) {
    if (!labels->is_object()) return TypeError("config.Labels", "an object");
    for (auto m = labels->begin(); m != labels->end(); ++m) {
      if (!m->is_string()) return TypeError(absl::StrCat("config.Labels.", m.key()), "a string");
      out->labels[m.key()] = m->get_ref<const std::string&>();
    }
  }
  RETURN_IF_ERROR(GetString(c, "StopSignal", &out->stop_signal, kWhere));
  auto esc = c.find("ArgsEscaped");
  if (esc != c.end() && !esc->is_null()) {
    if (!esc->is_boolean()) return TypeError("config.ArgsEscaped", "a boolean");
    out->args_escaped = esc->get<bool>();
  }
  auto hc = c.find("Healthcheck");
  if (hc != c.end() && !hc->is_null()) {
    if (!hc->is_object()) return TypeError("config.Healthcheck", "an object");
    HealthConfig h;
    auto test = hc->find("Test");
    if (test != hc->end() && !test->is_null()) {
      RETURN_IF_ERROR(GetStringList(*test, &h.test, "config.Healthcheck.Test"));
    }
    const char* w = "config.Healthcheck.";
    RETURN_IF_ERROR(GetInt(*hc, "Interval", &h.interval_ns, w));
    RETURN_IF_ERROR(GetInt(*hc, "Timeout", &h.timeout_ns, w));
    RETURN_IF_ERROR(GetInt(*hc, "StartPeriod", &h.start_period_ns, w));
    RETURN_IF_ERROR(GetInt(*hc, "StartInterval", &h.start_interval_ns, w));
    int64_t retries = 0;
    RETURN_IF_ERROR(GetInt(*hc, "Retries", &retries, w));
    h.retries = static_cast<int32_t>(retries);
    out->healthcheck = std::move(h);
  }
  auto onbuild = c.find("OnBuild");
  if (onbuild != c.end() && !onbuild->is_null()) {
    RETURN_IF_ERROR(GetStringList(*onbuild, &out->on_build, "config.OnBuild"));
  }
  RETURN_IF_ERROR(GetOptList(c, "Shell", &out->shell, kWhere));
  static const std::set<std::string> kKnown = {
      "User",   "ExposedPorts", "Env",         "Entrypoint",  "Cmd",     "Volumes", "WorkingDir",
      "Labels", "StopSignal",   "ArgsEscaped", "Healthcheck", "OnBuild", "Shell"};
  for (auto m = c.begin(); m != c.end(); ++m) {
    if (kKnown.count(m.key()) == 0 && !m->is_null()) out->extra[m.key()] = m->dump();
  }
  return absl::OkStatus();
}

json KeySet(const std::set<std::string>& keys) {
  json o = json::object();
  for (const std::string& k : keys) o[k] = json::object();
  return o;
}

// Raw JSON text kept in `extra` was produced by dump() of a parsed value, so it parses.
json Raw(const std::string& text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? json() : v;
}

}  // namespace

std::optional<std::string> ContainerConfig::GetEnv(absl::string_view key) const {
  for (const std::string& kv : env) {
    if (kv.size() > key.size() && kv[key.size()] == '=' && absl::StartsWith(kv, key)) {
      return kv.substr(key.size() + 1);
    }
    if (kv == key) return std::string();
  }
  return std::nullopt;
}

void ContainerConfig::SetEnv(absl::string_view key, absl::string_view value) {
  std::string entry = absl::StrCat(key, "=", value);
  for (std::string& kv : env) {
    if ((kv.size() > key.size() && kv[key.size()] == '=' && absl::StartsWith(kv, key)) ||
        kv == key) {
      kv = std::move(entry);
      return;
    }
  }
  env.push_back(std::move(entry));
}

absl::StatusOr<ImageConfig> ImageConfig::FromJson(absl::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError("image config: not valid JSON");
  }
  if (!j.is_object()) return TypeError("image config", "a JSON object");
  ImageConfig out;
  const char* w = "";
  out.architecture.clear();
  out.os.clear();
  RETURN_IF_ERROR(GetString(j, "created", &out.created, w));
  RETURN_IF_ERROR(GetString(j, "author", &out.author, w));
  RETURN_IF_ERROR(GetString(j, "architecture", &out.architecture, w));
  RETURN_IF_ERROR(GetString(j, "os", &out.os, w));
  RETURN_IF_ERROR(GetString(j, "variant", &out.variant, w));
  RETURN_IF_ERROR(GetString(j, "os.version", &out.os_version, w));
  auto cfg = j.find("config");
  if (cfg != j.end() && !cfg->is_null()) {
    RETURN_IF_ERROR(ParseContainerConfig(*cfg, &out.config));
  }
  auto rootfs = j.find("rootfs");
  if (rootfs != j.end() && !rootfs->is_null()) {
    if (!rootfs->is_object()) return TypeError("rootfs", "an object");
    auto ids = rootfs->find("diff_ids");
    if (ids != rootfs->end() && !ids->is_null()) {
      RETURN_IF_ERROR(GetStringList(*ids, &out.diff_ids, "rootfs.diff_ids"));
    }
  }
  auto hist = j.find("history");
  if (hist != j.end() && !hist->is_null()) {
    if (!hist->is_array()) return TypeError("history", "an array");
    for (const json& h : *hist) {
      if (!h.is_object()) return TypeError("history[]", "an object");
      HistoryEntry e;
      const char* hw = "history[].";
      RETURN_IF_ERROR(GetString(h, "created", &e.created, hw));
      RETURN_IF_ERROR(GetString(h, "created_by", &e.created_by, hw));
      RETURN_IF_ERROR(GetString(h, "author", &e.author, hw));
      RETURN_IF_ERROR(GetString(h, "comment", &e.comment, hw));
      auto el = h.find("empty_layer");
      if (el != h.end() && !el->is_null()) {
        if (!el->is_boolean()) return TypeError("history[].empty_layer", "a boolean");
        e.empty_layer = el->get<bool>();
      }
      out.history.push_back(std::move(e));
    }
  }
  static const std::set<std::string> kKnown = {"created", "author",  "architecture",
                                               "os",      "variant", "os.version",
                                               "config",  "rootfs",  "history"};
  for (auto m = j.begin(); m != j.end(); ++m) {
    if (kKnown.count(m.key()) == 0 && !m->is_null()) out.extra[m.key()] = m->dump();
  }
  return out;
}

std::string ImageConfig::ToJson() const {
  json j = json::object();
  for (const auto& [k, v] : extra) j[k] = Raw(v);
  if (!created.empty()) j["created"] = created;
  if (!author.empty()) j["author"] = author;
  j["architecture"] = architecture;
  j["os"] = os;
  if (!variant.empty()) j["variant"] = variant;
  if (!os_version.empty()) j["os.version"] = os_version;

  const ContainerConfig& c = config;
  json cj = json::object();
  for (const auto& [k, v] : c.extra) cj[k] = Raw(v);
  if (!c.user.empty()) cj["User"] = c.user;
  if (!c.exposed_ports.empty()) cj["ExposedPorts"] = KeySet(c.exposed_ports);
  if (!c.env.empty()) cj["Env"] = c.env;
  if (c.entrypoint) cj["Entrypoint"] = *c.entrypoint;
  if (c.cmd) cj["Cmd"] = *c.cmd;
  if (!c.volumes.empty()) cj["Volumes"] = KeySet(c.volumes);
  if (!c.working_dir.empty()) cj["WorkingDir"] = c.working_dir;
  if (!c.labels.empty()) cj["Labels"] = c.labels;
  if (!c.stop_signal.empty()) cj["StopSignal"] = c.stop_signal;
  if (c.args_escaped) cj["ArgsEscaped"] = true;
  if (c.healthcheck) {
    const HealthConfig& h = *c.healthcheck;
    json hj = json::object();
    hj["Test"] = h.test;
    if (h.interval_ns) hj["Interval"] = h.interval_ns;
    if (h.timeout_ns) hj["Timeout"] = h.timeout_ns;
    if (h.start_period_ns) hj["StartPeriod"] = h.start_period_ns;
    if (h.start_interval_ns) hj["StartInterval"] = h.start_interval_ns;
    if (h.retries) hj["Retries"] = h.retries;
    cj["Healthcheck"] = std::move(hj);
  }
  if (!c.on_build.empty()) cj["OnBuild"] = c.on_build;
  if (c.shell) cj["Shell"] = *c.shell;
  j["config"] = std::move(cj);

  json rootfs = json::object();
  rootfs["type"] = "layers";
  rootfs["diff_ids"] = diff_ids;
  j["rootfs"] = std::move(rootfs);

  if (!history.empty()) {
    json hs = json::array();
    for (const HistoryEntry& e : history) {
      json hj = json::object();
      if (!e.created.empty()) hj["created"] = e.created;
      if (!e.created_by.empty()) hj["created_by"] = e.created_by;
      if (!e.author.empty()) hj["author"] = e.author;
      if (!e.comment.empty()) hj["comment"] = e.comment;
      if (e.empty_layer) hj["empty_layer"] = true;
      hs.push_back(std::move(hj));
    }
    j["history"] = std::move(hs);
  }
  // Invalid UTF-8 (possible in strings taken from a Dockerfile) is replaced, never thrown.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SetEntrypoint(ContainerConfig* config, std::vector<std::string> entrypoint,
                   bool cmd_set_in_stage) {
  config->entrypoint = std::move(entrypoint);
  if (!cmd_set_in_stage) config->cmd.reset();
}

std::string PlatformOf(const ImageConfig& config) {
  std::string p = absl::StrCat(config.os.empty() ? "linux" : config.os, "/",
                               config.architecture.empty() ? "amd64" : config.architecture);
  if (!config.variant.empty()) absl::StrAppend(&p, "/", config.variant);
  return p;
}

std::string FormatCreated(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace farm::oci
