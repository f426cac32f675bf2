// SshAgentProxy: RUN --mount=type=ssh. A Unix socket made for one RUN (owned by the mount's
// uid/gid, mode 0600 by default) that relays every connection to an ssh-agent socket on the
// host. The command sees only the proxy socket (bind-mounted at the target, SSH_AUTH_SOCK set),
// never the host agent's path or permissions, and the proxy dies with the step.
//
//   ASSIGN_OR_RETURN(auto proxy, worker::SshAgentProxy::Start(agent, run_dir + "/ssh0", attrs));
//   mount proxy->path() at /run/buildkit/ssh_agent.0 ...
#ifndef FARM_WORKER_SSH_PROXY_H_
#define FARM_WORKER_SSH_PROXY_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "worker/copy/layer_tree.h"

namespace farm::worker {

class SshAgentProxy {
 public:
  static absl::StatusOr<std::unique_ptr<SshAgentProxy>> Start(const std::string& agent_socket,
                                                              const std::string& socket_path,
                                                              const copy::Attrs& attrs);
  // Stops accepting, closes every relayed connection and waits for the threads.
  ~SshAgentProxy();

  const std::string& path() const { return path_; }

 private:
  SshAgentProxy(std::string agent, std::string path, int listen_fd, int stop_r, int stop_w)
      : agent_(std::move(agent)),
        path_(std::move(path)),
        listen_fd_(listen_fd),
        stop_r_(stop_r),
        stop_w_(stop_w) {}
  void AcceptLoop();
  void Relay(int client);

  std::string agent_;
  std::string path_;
  int listen_fd_;
  int stop_r_, stop_w_;  // a pipe: closing stop_w_ wakes every poll()
  std::thread acceptor_;
  absl::Mutex mu_;
  std::vector<std::thread> relays_ ABSL_GUARDED_BY(mu_);
};

// Connects to / binds a Unix socket at any path length (through /proc/self/fd when the path
// does not fit in sockaddr_un).
absl::StatusOr<int> ConnectUnix(const std::string& path);
absl::StatusOr<int> ListenUnix(const std::string& path);

}  // namespace farm::worker

#endif  // FARM_WORKER_SSH_PROXY_H_
