// farm login / farm logout: registry credentials in ~/.docker/config.json, like docker's.
#include <termios.h>
#include <unistd.h>

#include <iostream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/commands.h"
#include "cli/format.h"
#include "cli/image_common.h"
#include "common/flags.h"
#include "scheduler/registry/auth.h"
#include "scheduler/registry/client.h"

namespace farm::cli {

namespace {

// "https://host:5000/v1/" → "host:5000"; Docker Hub's names → "docker.io".
std::string ServerDomain(absl::string_view server) {
  absl::ConsumePrefix(&server, "https://") || absl::ConsumePrefix(&server, "http://");
  server = server.substr(0, server.find('/'));
  if (server.empty() || server == "index.docker.io" || server == "registry-1.docker.io") {
    return "docker.io";
  }
  return std::string(server);
}

std::string ReadLine(bool echo) {
  struct termios old;
  bool restore = false;
  if (!echo && tcgetattr(0, &old) == 0) {
    struct termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    restore = tcsetattr(0, TCSANOW, &quiet) == 0;
  }
  std::string line;
  std::getline(std::cin, line);
  if (restore) {
    tcsetattr(0, TCSANOW, &old);
    std::cerr << "\n";
  }
  return std::string(absl::StripTrailingAsciiWhitespace(line));
}

}  // namespace

int RunLogin(const Args& args) {
  const std::string usage = "farm login [OPTIONS] [SERVER]";
  common::FlagSet fs(usage,
                     "Log in to a registry (credentials go to ~/.docker/config.json, "
                     "or $DOCKER_CONFIG/config.json, shared with docker).\n"
                     "If no server is specified, the default is Docker Hub.");
  std::string username, password;
  bool password_stdin = false;
  std::vector<std::string> insecure;
  fs.String("username", 'u', &username, "Username");
  fs.String("password", 'p', &password, "Password");
  fs.Bool("password-stdin", 0, &password_stdin, "Take the password from stdin");
  fs.Repeated("insecure-registry", 0, &insecure,
              "Registry (host:port) reachable over plain HTTP or unverified TLS", "host:port");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "login", &pos, &code)) return code;
  if (!CheckArgs(pos, 0, 1, "login", usage)) return 2;
  std::string domain = ServerDomain(pos.empty() ? "docker.io" : pos[0]);
  if (!password.empty()) {
    std::cerr << "WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n";
    if (password_stdin) {
      return Fail(
          absl::InvalidArgumentError("--password and --password-stdin are mutually "
                                     "exclusive"));
    }
  }
  if (password_stdin) {
    if (username.empty()) {
      return Fail(absl::InvalidArgumentError("Must provide --username with --password-stdin"));
    }
    std::string all((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    password = std::string(absl::StripTrailingAsciiWhitespace(all));
  }
  if (username.empty() || password.empty()) {
    if (!IsTerminal(0)) {
      return Fail(
          absl::InvalidArgumentError("Cannot perform an interactive login from a non TTY device"));
    }
    if (username.empty()) {
      std::cerr << "Username: " << std::flush;
      username = ReadLine(true);
    }
    if (password.empty()) {
      std::cerr << "Password: " << std::flush;
      password = ReadLine(false);
    }
  }
  if (username.empty()) return Fail(absl::InvalidArgumentError("Username is required"));
  if (password.empty()) return Fail(absl::InvalidArgumentError("Password is required"));

  scheduler::registry::RegistryOptions o = RegistryOptionsFrom(insecure);
  o.credentials = scheduler::registry::Credentials{username, password, ""};
  absl::StatusOr<std::unique_ptr<scheduler::registry::Client>> client =
      scheduler::registry::Client::Create(domain, o);
  if (!client.ok()) return Fail(client.status());
  absl::Status check = (*client)->CheckLogin();
  if (!check.ok()) return Fail(check);
  absl::StatusOr<scheduler::registry::DockerConfig> cfg =
      scheduler::registry::DockerConfig::Load("");
  if (!cfg.ok()) return Fail(cfg.status());
  absl::Status s = cfg->Set(domain, {username, password, ""});
  if (s.ok()) s = cfg->Save();
  if (!s.ok()) return Fail(s);
  std::cerr << "WARNING! Your password will be stored unencrypted in " << cfg->path()
            << " unless a credential helper is configured (credsStore/credHelpers).\n";
  std::cout << "Login Succeeded\n";
  return 0;
}

int RunLogout(const Args& args) {
  const std::string usage = "farm logout [SERVER]";
  common::FlagSet fs(usage,
                     "Log out from a registry.\nIf no server is specified, the default "
                     "is Docker Hub.");
  std::vector<std::string> pos;
  int code;
  if (!ParseFlags(fs, args, "logout", &pos, &code)) return code;
  if (!CheckArgs(pos, 0, 1, "logout", usage)) return 2;
  std::string domain = ServerDomain(pos.empty() ? "docker.io" : pos[0]);
  std::string shown = pos.empty() ? scheduler::registry::DockerConfig::ServerKey(domain) : pos[0];
  absl::StatusOr<scheduler::registry::DockerConfig> cfg =
      scheduler::registry::DockerConfig::Load("");
  if (!cfg.ok()) return Fail(cfg.status());
  absl::Status s = cfg->Remove(domain);
  if (absl::IsNotFound(s)) {
    std::cout << "Not logged in to " << shown << "\n";
    return 0;
  }
  if (!s.ok()) return Fail(s);
  std::cout << "Removing login credentials for " << shown << "\n";
  s = cfg->Save();
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace farm::cli
