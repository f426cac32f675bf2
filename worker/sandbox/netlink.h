// A minimal rtnetlink client: what the sandbox runner needs to give a run its own network
// (a veth pair, addresses, a default route). Works in the network namespace the calling
// thread is in when the object is created. Not thread-safe; the runner is single-threaded.
//
//   ASSIGN_OR_RETURN(Netlink nl, Netlink::Open());
//   RETURN_IF_ERROR(nl.CreateVethPair("fwab12cd-3", "eth0", netns_fd));
//   RETURN_IF_ERROR(nl.AddAddress4("fwab12cd-3", 0xc6120001, 30));
//   RETURN_IF_ERROR(nl.SetUp("fwab12cd-3"));
#ifndef FARM_WORKER_SANDBOX_NETLINK_H_
#define FARM_WORKER_SANDBOX_NETLINK_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace farm::worker::sandbox {

class Netlink {
 public:
  static absl::StatusOr<Netlink> Open();
  Netlink(Netlink&& o) noexcept : fd_(o.fd_), seq_(o.seq_) { o.fd_ = -1; }
  Netlink& operator=(Netlink&&) = delete;
  ~Netlink();

  // A veth pair: `name` here, `peer` moved into the network namespace `peer_netns_fd`.
  // ALREADY_EXISTS when `name` exists.
  absl::Status CreateVethPair(const std::string& name, const std::string& peer, int peer_netns_fd);
  // Deletes link `name` (a veth's peer goes with it). NOT_FOUND when there is none.
  absl::Status DeleteLink(const std::string& name);
  absl::Status SetUp(const std::string& name);
  // addr (host order) / prefix on link `name`.
  absl::Status AddAddress4(const std::string& name, uint32_t addr, int prefix);
  // The default IPv4 route through `gateway` (host order) on link `name`.
  absl::Status AddDefaultRoute4(const std::string& name, uint32_t gateway);

 private:
  explicit Netlink(int fd) : fd_(fd) {}
  absl::Status Transact(std::string* msg, const std::string& what);
  int fd_ = -1;
  uint32_t seq_ = 0;
};

}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_NETLINK_H_
