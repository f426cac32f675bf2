// Network "hosts" for tests that need more than loopback, made of network namespaces on this
// machine so that no packet ever leaves it:
//
//   the calling process, moved into a namespace of its own: "this host" (the worker host)
//     lo up; up0 10.77.0.1/24
//     └─ veth ── eth0 of a peer namespace: "another host", 10.77.0.2/24, default route back
//
// More addresses can be put on the peer (routed from this host through it), and sockets
// opened in it (InPeer). Needs root. Create() must run before the process starts threads (a
// thread started earlier would stay in the old namespace); the peer dies with the process.
//
//   absl::StatusOr<std::unique_ptr<TestHosts>> hosts = TestHosts::Create();
//   ASSERT_OK(hosts);
//   ASSERT_OK((*hosts)->AddPeerAddress("169.254.169.254"));
//   GreetingServer* s;
//   (*hosts)->InPeer([&] { s = new GreetingServer("10.77.0.2", 80, "peer"); });
#ifndef FARM_WORKER_TESTING_TEST_HOSTS_H_
#define FARM_WORKER_TESTING_TEST_HOSTS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace farm::worker::testing {

class TestHosts {
 public:
  static constexpr char kHostAddress[] = "10.77.0.1";
  static constexpr char kPeerAddress[] = "10.77.0.2";

  static absl::StatusOr<std::unique_ptr<TestHosts>> Create();
  ~TestHosts();  // kills the peer (this process stays in its namespace)

  // Adds `addr` (IPv4) to the peer's loopback and routes it from this host through the peer.
  absl::Status AddPeerAddress(const std::string& addr);
  // Runs `f` on the calling thread in the peer's network namespace, then returns to this
  // host's. Sockets made in `f` stay in the peer.
  absl::Status InPeer(const std::function<void()>& f);
  pid_t peer_pid() const { return peer_; }

 private:
  TestHosts() = default;
  pid_t peer_ = -1;
};

// Runs `command` with /bin/sh; INTERNAL with its exit status when it fails.
absl::Status Shell(const std::string& command);

// A TCP server writing `greeting` and a newline to every connection, on addr:port in the
// network namespace of the thread that creates it (port 0: any; see port()).
class GreetingServer {
 public:
  GreetingServer(const std::string& addr, int port, std::string greeting);
  ~GreetingServer();
  bool ok() const { return ok_; }
  int port() const { return port_; }

 private:
  std::string greeting_;
  int fd_ = -1;
  int port_ = 0;
  bool ok_ = false;
  std::thread thread_;
};

// Connects to addr:port from the calling thread's namespace: what the server wrote (without
// the final newline), or "" when the connection failed.
std::string ReadGreeting(const std::string& addr, int port);

}  // namespace farm::worker::testing

#endif  // FARM_WORKER_TESTING_TEST_HOSTS_H_
