#include "scheduler/registry/testing/local_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "scheduler/registry/http.h"

extern char** environ;

namespace farm::scheduler::registry::testing {

absl::StatusOr<int> FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return common::ErrnoToStatus(errno, "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int e = errno;
    close(fd);
    return common::ErrnoToStatus(e, "bind 127.0.0.1:0");
  }
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

absl::StatusOr<std::unique_ptr<LocalRegistry>> LocalRegistry::Start(const std::string& dir,
                                                                    Auth auth) {
  RETURN_IF_ERROR(common::MakeDirs(dir + "/data"));
  std::string auth_yaml;
  if (!auth.username.empty()) {
    std::string cmd = absl::StrCat("htpasswd -Bbn '", auth.username, "' '", auth.password, "' > '",
                                   dir, "/htpasswd'");
    if (system(cmd.c_str()) != 0) {
      return absl::FailedPreconditionError("htpasswd failed (apt-get install apache2-utils)");
    }
    auth_yaml =
        absl::StrCat("auth:\n  htpasswd:\n    realm: farm-test\n    path: ", dir, "/htpasswd\n");
  }
  absl::Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSIGN_OR_RETURN(int port, FreeLoopbackPort());
    std::string config = absl::StrCat(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n  filesystem:\n    rootdirectory: ",
        dir,
        "/data\n  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        "http:\n  addr: 127.0.0.1:",
        port, "\n  secret: farm-test-secret\n", auth_yaml);
    RETURN_IF_ERROR(common::WriteFileAtomic(dir + "/config.yml", config));
    std::string log = dir + "/registry.log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::string bin = "/usr/bin/docker-registry", serve = "serve", cfg = dir + "/config.yml";
    char* argv[] = {&bin[0], &serve[0], &cfg[0], nullptr};
    pid_t pid;
    int rc = posix_spawn(&pid, bin.c_str(), &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      return common::ErrnoToStatus(rc,
                                   "starting /usr/bin/docker-registry "
                                   "(apt-get install docker-registry)");
    }
    std::unique_ptr<LocalRegistry> reg(new LocalRegistry(dir, port, pid));
    auto http = CurlTransport::Create();
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    bool exited = false;
    while (absl::Now() < deadline) {
      int status;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        exited = true;
        reg->pid_ = -1;
        break;
      }
      HttpRequest req;
      req.url = absl::StrCat("http://127.0.0.1:", port, "/v2/");
      req.connect_timeout = absl::Seconds(1);
      absl::StatusOr<HttpResponse> resp = http->Do(req, nullptr);
      if (resp.ok() && (resp->status == 200 || resp->status == 401)) return reg;
      absl::SleepFor(absl::Milliseconds(20));  // polling a condition, with a deadline
    }
    std::string log_text = common::ReadFile(log).value_or("");
    last = absl::FailedPreconditionError(absl::StrCat(
        "docker-registry on 127.0.0.1:", port, exited ? " exited" : " did not answer in 20 s", ": ",
        log_text.substr(log_text.size() > 2000 ? log_text.size() - 2000 : 0)));
  }
  return last;
}

LocalRegistry::~LocalRegistry() {
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
  }
}

std::string LocalRegistry::domain() const { return absl::StrCat("127.0.0.1:", port_); }

std::string LocalRegistry::BlobDataPath(const std::string& digest) const {
  std::string hex = digest.substr(digest.find(':') + 1);
  return absl::StrCat(dir_, "/data/docker/registry/v2/blobs/sha256/", hex.substr(0, 2), "/", hex,
                      "/data");
}

}  // namespace farm::scheduler::registry::testing
