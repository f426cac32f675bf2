#include "scheduler/registry/auth.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"

extern char** environ;

namespace farm::scheduler::registry {

namespace {

using nlohmann::json;

constexpr char kDockerHubKey[] = "https://index.docker.io/v1/";

// "https://host:port/v1/" → "host:port" (Docker's ConvertToHostname).
std::string ConvertToHostname(absl::string_view url) {
  absl::ConsumePrefix(&url, "http://") || absl::ConsumePrefix(&url, "https://");
  return std::string(url.substr(0, url.find('/')));
}

bool IsDockerHub(absl::string_view domain) {
  return domain == "docker.io" || domain == "index.docker.io" || domain == "registry-1.docker.io";
}

// Runs `program arg` with `input` on stdin; returns stdout. Non-zero exit is an error whose
// message is the program's output.
absl::StatusOr<std::string> RunHelper(const std::string& program, const std::string& arg,
                                      const std::string& input) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    return common::ErrnoToStatus(errno, "pipe");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> argv = {const_cast<char*>(program.c_str()), const_cast<char*>(arg.c_str()),
                             nullptr};
  pid_t pid;
  int rc = posix_spawnp(&pid, program.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  close(out[1]);
  if (rc != 0) {
    close(in[1]);
    close(out[0]);
    return common::ErrnoToStatus(rc, absl::StrCat("running credential helper ", program));
  }
  size_t off = 0;
  while (off < input.size()) {
    ssize_t n = write(in[1], input.data() + off, input.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    off += static_cast<size_t>(n);
  }
  close(in[1]);
  std::string output;
  char buf[4096];
  while (true) {
    ssize_t n = read(out[0], buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::UnavailableError(
        absl::StrCat(program, " ", arg, " failed: ", absl::StripAsciiWhitespace(output)));
  }
  return output;
}

json ParseOrEmpty(const std::string& text) {
  if (text.empty()) return json::object();
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

}  // namespace

std::string Base64Encode(absl::string_view data) {
  static const char* kChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  while (i + 2 < data.size()) {
    uint32_t v = (static_cast<uint8_t>(data[i]) << 16) | (static_cast<uint8_t>(data[i + 1]) << 8) |
                 static_cast<uint8_t>(data[i + 2]);
    out += kChars[v >> 18];
    out += kChars[(v >> 12) & 63];
    out += kChars[(v >> 6) & 63];
    out += kChars[v & 63];
    i += 3;
  }
  if (i + 1 == data.size()) {
    uint32_t v = static_cast<uint8_t>(data[i]) << 16;
    out += kChars[v >> 18];
    out += kChars[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == data.size()) {
    uint32_t v = (static_cast<uint8_t>(data[i]) << 16) | (static_cast<uint8_t>(data[i + 1]) << 8);
    out += kChars[v >> 18];
    out += kChars[(v >> 12) & 63];
    out += kChars[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

absl::StatusOr<std::string> Base64Decode(absl::string_view data) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : data) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    int v = val(c);
    if (v < 0) return absl::InvalidArgumentError("invalid base64");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

std::vector<Challenge> ParseWwwAuthenticate(absl::string_view h) {
  std::vector<Challenge> out;
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < h.size() && (h[i] == ' ' || h[i] == '\t' || h[i] == ',')) ++i;
  };
  auto token = [&] {
    size_t start = i;
    while (i < h.size() && h[i] != ' ' && h[i] != '\t' && h[i] != '=' && h[i] != ',') ++i;
    return std::string(h.substr(start, i - start));
  };
  while (true) {
    skip_ws();
    if (i >= h.size()) break;
    std::string scheme = token();
    if (scheme.empty()) break;
    Challenge c;
    c.scheme = absl::AsciiStrToLower(scheme);
    // Parameters: name=value or name="quoted value", comma separated, until the next scheme.
    while (true) {
      size_t save = i;
      skip_ws();
      std::string name = token();
      if (name.empty() || i >= h.size() || h[i] != '=') {
        i = save;
        break;
      }
      ++i;  // '='
      std::string value;
      if (i < h.size() && h[i] == '"') {
        ++i;
        while (i < h.size() && h[i] != '"') {
          if (h[i] == '\\' && i + 1 < h.size()) ++i;
          value += h[i++];
        }
        if (i < h.size()) ++i;  // closing quote
      } else {
        value = token();
      }
      c.params[absl::AsciiStrToLower(name)] = value;
    }
    out.push_back(std::move(c));
  }
  return out;
}

std::string DockerConfig::DefaultDir() {
  const char* env = getenv("DOCKER_CONFIG");
  if (env != nullptr && *env != '\0') return env;
  const char* home = getenv("HOME");
  return common::JoinPath(home != nullptr ? home : "/root", ".docker");
}

absl::StatusOr<DockerConfig> DockerConfig::Load(const std::string& dir) {
  DockerConfig c;
  c.dir_ = dir.empty() ? DefaultDir() : dir;
  c.path_ = common::JoinPath(c.dir_, "config.json");
  absl::StatusOr<std::string> text = common::ReadFile(c.path_);
  if (!text.ok()) {
    if (text.status().code() == absl::StatusCode::kNotFound) return c;
    return text.status();
  }
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(c.path_, ": not a valid JSON object"));
  }
  c.json_ = *text;
  return c;
}

std::string DockerConfig::ServerKey(absl::string_view domain) {
  if (IsDockerHub(domain)) return kDockerHubKey;
  return std::string(domain);
}

std::string DockerConfig::Helper(absl::string_view domain) const {
  json j = ParseOrEmpty(json_);
  std::string host = IsDockerHub(domain) ? kDockerHubKey : std::string(domain);
  auto helpers = j.find("credHelpers");
  if (helpers != j.end() && helpers->is_object()) {
    for (auto it = helpers->begin(); it != helpers->end(); ++it) {
      if ((it.key() == host || ConvertToHostname(it.key()) == domain) && it->is_string()) {
        return it->get<std::string>();
      }
    }
  }
  auto store = j.find("credsStore");
  if (store != j.end() && store->is_string()) return store->get<std::string>();
  return "";
}

absl::StatusOr<Credentials> DockerConfig::Get(absl::string_view domain) const {
  std::string key = ServerKey(domain);
  std::string helper = Helper(domain);
  if (!helper.empty()) {
    absl::StatusOr<std::string> out = RunHelper("docker-credential-" + helper, "get", key);
    if (!out.ok()) {
      if (absl::StrContains(out.status().message(), "credentials not found")) return Credentials{};
      return out.status();
    }
    json r = json::parse(*out, nullptr, /*allow_exceptions=*/false);
    if (!r.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("docker-credential-", helper, " get: output is not a JSON object"));
    }
    Credentials c;
    std::string user = r.value("Username", "");
    std::string secret = r.value("Secret", "");
    if (user == "<token>") {
      c.identity_token = secret;
    } else {
      c.username = user;
      c.password = secret;
    }
    return c;
  }
  json j = ParseOrEmpty(json_);
  auto auths = j.find("auths");
  if (auths == j.end() || !auths->is_object()) return Credentials{};
  const json* entry = nullptr;
  auto exact = auths->find(key);
  if (exact != auths->end()) {
    entry = &*exact;
  } else {
    for (auto it = auths->begin(); it != auths->end(); ++it) {
      std::string h = ConvertToHostname(it.key());
      if (h == domain || (IsDockerHub(domain) && IsDockerHub(h))) {
        entry = &*it;
        break;
      }
    }
  }
  if (entry == nullptr || !entry->is_object()) return Credentials{};
  Credentials c;
  auto auth = entry->find("auth");
  if (auth != entry->end() && auth->is_string() && !auth->get<std::string>().empty()) {
    absl::StatusOr<std::string> decoded = Base64Decode(auth->get<std::string>());
    if (!decoded.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": auths[\"", key, "\"].auth is not valid base64"));
    }
    size_t colon = decoded->find(':');
    if (colon == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": auths[\"", key, "\"].auth is not base64 of user:password"));
    }
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  } else {
    c.username = entry->value("username", "");
    c.password = entry->value("password", "");
  }
  c.identity_token = entry->value("identitytoken", "");
  return c;
}

absl::Status DockerConfig::Set(absl::string_view domain, const Credentials& creds) {
  std::string key = ServerKey(domain);
  std::string helper = Helper(domain);
  if (!helper.empty()) {
    json in = {{"ServerURL", key},
               {"Username", creds.identity_token.empty() ? creds.username : "<token>"},
               {"Secret", creds.identity_token.empty() ? creds.password : creds.identity_token}};
    return RunHelper("docker-credential-" + helper, "store", in.dump()).status();
  }
  json j = ParseOrEmpty(json_);
  if (!j.contains("auths") || !j["auths"].is_object()) j["auths"] = json::object();
  json entry = json::object();
  entry["auth"] = Base64Encode(absl::StrCat(creds.username, ":", creds.password));
  if (!creds.identity_token.empty()) entry["identitytoken"] = creds.identity_token;
  j["auths"][key] = std::move(entry);
  json_ = j.dump(1, '\t');
  return absl::OkStatus();
}

absl::Status DockerConfig::Remove(absl::string_view domain) {
  std::string key = ServerKey(domain);
  std::string helper = Helper(domain);
  if (!helper.empty()) {
    return RunHelper("docker-credential-" + helper, "erase", key).status();
  }
  json j = ParseOrEmpty(json_);
  bool removed = false;
  if (j.contains("auths") && j["auths"].is_object()) {
    json& auths = j["auths"];
    std::vector<std::string> keys;
    for (auto it = auths.begin(); it != auths.end(); ++it) {
      if (it.key() == key || ConvertToHostname(it.key()) == domain) keys.push_back(it.key());
    }
    for (const std::string& k : keys) auths.erase(k);
    removed = !keys.empty();
  }
  if (!removed) return absl::NotFoundError(absl::StrCat("Not logged in to ", domain));
  json_ = j.dump(1, '\t');
  return absl::OkStatus();
}

absl::Status DockerConfig::Save() const {
  RETURN_IF_ERROR(common::MakeDirs(dir_, 0700));
  std::string text = json_.empty() ? "{}" : json_;
  if (text.back() != '\n') text += '\n';
  return common::WriteFileAtomic(path_, text, 0600);
}

}  // namespace farm::scheduler::registry
