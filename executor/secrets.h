// MapSecretProvider: secrets and ssh agents given up front (e.g. `farm build --secret
// id=npmrc,src=$HOME/.npmrc --ssh default`): the CLI reads the files and passes the bytes.
//
//   auto secrets = std::make_shared<executor::MapSecretProvider>(
//       std::map<std::string, std::string>{{"npmrc", bytes}},
//       std::map<std::string, std::string>{{"default", getenv("SSH_AUTH_SOCK")}});
#ifndef FARM_EXECUTOR_SECRETS_H_
#define FARM_EXECUTOR_SECRETS_H_

#include <map>
#include <string>

#include "executor/step_executor.h"

namespace farm::executor {

class MapSecretProvider : public SecretProvider {
 public:
  explicit MapSecretProvider(std::map<std::string, std::string> secrets,
                             std::map<std::string, std::string> ssh_agents = {})
      : secrets_(std::move(secrets)), ssh_agents_(std::move(ssh_agents)) {}

  absl::StatusOr<std::string> GetSecret(absl::string_view id) override {
    auto it = secrets_.find(std::string(id));
    if (it == secrets_.end())
      return absl::NotFoundError(absl::StrCat("secret \"", id, "\" not provided"));
    return it->second;
  }
  absl::StatusOr<std::string> GetSshAgentSocket(absl::string_view id) override {
    auto it = ssh_agents_.find(std::string(id));
    if (it == ssh_agents_.end() || it->second.empty()) {
      return absl::NotFoundError(absl::StrCat("ssh agent \"", id, "\" not provided"));
    }
    return it->second;
  }

 private:
  const std::map<std::string, std::string> secrets_;
  const std::map<std::string, std::string> ssh_agents_;
};

}  // namespace farm::executor

#endif  // FARM_EXECUTOR_SECRETS_H_
