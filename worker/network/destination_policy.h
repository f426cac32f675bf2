// DestinationPolicy: which addresses a step may reach, as one decision used in two places:
// the worker's firewall for a RUN's isolated network (step_network.h writes it as nftables
// sets) and the worker's own connections on a step's behalf (ADD <url>, checked on every
// address libcurl connects to, redirects included).
//
// In order: the always-denied ranges (loopback, link-local, multicast, ...: cidr.h) are
// refused, unless an `allow` range lies entirely inside one of them (the operator named that
// address, e.g. 127.0.0.1/32 for a file server on the host's loopback; a broader range such as
// 0.0.0.0/0 never opens them); the host's own addresses are refused whatever the lists say
// (but for loopback ones so named);
// then an address in `allow` is allowed; then one in `deny` is refused; anything else is
// allowed.
//
//   DestinationPolicy p({PrivateRanges()}, {*Cidr::Parse("10.1.2.0/24")});
//   RETURN_IF_ERROR(p.Check(address));  // PERMISSION_DENIED saying why
#ifndef FARM_WORKER_NETWORK_DESTINATION_POLICY_H_
#define FARM_WORKER_NETWORK_DESTINATION_POLICY_H_

#include <vector>

#include "absl/status/status.h"
#include "worker/network/cidr.h"

namespace farm::worker::network {

class DestinationPolicy {
 public:
  DestinationPolicy() = default;
  DestinationPolicy(std::vector<Cidr> deny, std::vector<Cidr> allow)
      : deny_(std::move(deny)), allow_(std::move(allow)) {}

  // OK, or PERMISSION_DENIED naming the address and the rule that refuses it. The host's own
  // addresses are read (getifaddrs) on each call: interfaces come and go.
  absl::Status Check(const IpAddress& address) const;

  // The `allow` ranges that lie inside an always-denied range (see above).
  std::vector<Cidr> ExplicitExceptions() const;

  const std::vector<Cidr>& deny() const { return deny_; }
  const std::vector<Cidr>& allow() const { return allow_; }

 private:
  bool NamedExplicitly(const IpAddress& address, const Cidr& fixed) const;
  std::vector<Cidr> deny_;
  std::vector<Cidr> allow_;
};

// The addresses of this host's interfaces (in the calling thread's network namespace).
std::vector<IpAddress> HostAddresses();

}  // namespace farm::worker::network

#endif  // FARM_WORKER_NETWORK_DESTINATION_POLICY_H_
