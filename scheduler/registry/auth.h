// Registry credentials as Docker keeps them, and the WWW-Authenticate challenge parser.
//
// DockerConfig reads and writes $DOCKER_CONFIG/config.json (default ~/.docker/config.json):
//   {"auths": {"localhost:5000": {"auth": base64("user:pass")}},
//    "credHelpers": {"gcr.io": "gcloud"}, "credsStore": "desktop", ...}
// Lookup follows Docker: a credential helper for the host (credHelpers), else the default
// store (credsStore), else the "auths" entry (keys are compared as host names, so
// "https://host/v1/" matches "host"). Helpers are run as docker-credential-<name> with the
// get/store/erase protocol. Docker Hub's key is "https://index.docker.io/v1/". Members Farm
// does not know are kept on save.
//
//   ASSIGN_OR_RETURN(scheduler::registry::DockerConfig cfg,
//   scheduler::registry::DockerConfig::Load("")); ASSIGN_OR_RETURN(scheduler::registry::Credentials
//   c, cfg.Get("localhost:5000")); cfg.Set("localhost:5000", {"user", "pass"});
//   RETURN_IF_ERROR(cfg.Save());
#ifndef FARM_SCHEDULER_REGISTRY_AUTH_H_
#define FARM_SCHEDULER_REGISTRY_AUTH_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::scheduler::registry {

struct Credentials {
  std::string username;
  std::string password;
  std::string identity_token;  // an OAuth2 refresh token (username "<token>" in helpers)
  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

// One challenge of a WWW-Authenticate header: scheme lowercased ("bearer", "basic"),
// parameter names lowercased, values unquoted.
struct Challenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};
// Parses `Bearer realm="https://a/token",service="reg",scope="repository:x:pull"` (several
// challenges may be comma-separated). Malformed text yields the challenges parsed so far.
std::vector<Challenge> ParseWwwAuthenticate(absl::string_view header);

std::string Base64Encode(absl::string_view data);
absl::StatusOr<std::string> Base64Decode(absl::string_view data);

class DockerConfig {
 public:
  // $DOCKER_CONFIG if set, else $HOME/.docker.
  static std::string DefaultDir();
  // Reads `dir`/config.json ("" = DefaultDir()). A missing file is an empty config;
  // malformed JSON is INVALID_ARGUMENT naming the file.
  static absl::StatusOr<DockerConfig> Load(const std::string& dir);
  // The key Docker uses for a registry domain in "auths".
  static std::string ServerKey(absl::string_view domain);

  // Credentials for `domain` ("docker.io", "localhost:5000"); empty Credentials if none.
  absl::StatusOr<Credentials> Get(absl::string_view domain) const;
  // Stores credentials (through the helper when one is configured for the domain).
  absl::Status Set(absl::string_view domain, const Credentials& creds);
  // Removes them. NOT_FOUND if there were none ("Not logged in to X").
  absl::Status Remove(absl::string_view domain);
  // Writes config.json atomically (0600), keeping unknown members.
  absl::Status Save() const;

  const std::string& path() const { return path_; }

 private:
  std::string Helper(absl::string_view domain) const;
  std::string dir_;
  std::string path_;
  std::string json_;  // the whole document, re-parsed on use (keeps unknown members)
};

}  // namespace farm::scheduler::registry

#endif  // FARM_SCHEDULER_REGISTRY_AUTH_H_
