// LocalRegistry: a real Distribution registry (Debian's docker-registry, /usr/bin/docker-registry)
// started on a free 127.0.0.1 port for a test, optionally with htpasswd basic auth, and stopped
// (by its pid) when the object is destroyed. Test-only.
//
//   ASSIGN_OR_RETURN(auto reg, scheduler::registry::testing::LocalRegistry::Start(tmp + "/reg"));
//   reg->domain();   // "127.0.0.1:40123"
//   ASSIGN_OR_RETURN(auto secured, LocalRegistry::Start(dir, {"user", "secret"}));
#ifndef FARM_SCHEDULER_REGISTRY_TESTING_LOCAL_REGISTRY_H_
#define FARM_SCHEDULER_REGISTRY_TESTING_LOCAL_REGISTRY_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace farm::scheduler::registry::testing {

class LocalRegistry {
 public:
  struct Auth {
    std::string username;  // empty: no authentication
    std::string password;
  };
  // Starts the registry with its storage and config under `dir` and waits (up to 20 s) until
  // it answers GET /v2/. FAILED_PRECONDITION with the registry's log if it does not.
  static absl::StatusOr<std::unique_ptr<LocalRegistry>> Start(const std::string& dir,
                                                              Auth auth = {});
  ~LocalRegistry();

  std::string domain() const;  // "127.0.0.1:PORT"
  int port() const { return port_; }
  // Where the registry keeps a blob's bytes ("sha256:…" → .../blobs/sha256/ab/abcd…/data).
  std::string BlobDataPath(const std::string& digest) const;
  const std::string& dir() const { return dir_; }

 private:
  LocalRegistry(std::string dir, int port, pid_t pid)
      : dir_(std::move(dir)), port_(port), pid_(pid) {}
  std::string dir_;
  int port_;
  pid_t pid_;
};

// A free TCP port on 127.0.0.1 (bound and released; the caller uses it at once).
absl::StatusOr<int> FreeLoopbackPort();

}  // namespace farm::scheduler::registry::testing

#endif  // FARM_SCHEDULER_REGISTRY_TESTING_LOCAL_REGISTRY_H_
