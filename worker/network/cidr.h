// IP address ranges (CIDR notation) for the step network's allow and deny lists.
//
//   ASSIGN_OR_RETURN(Cidr c, Cidr::Parse("10.0.0.0/8"));
//   c.Contains(addr);  // addr: an IpAddress
#ifndef FARM_WORKER_NETWORK_CIDR_H_
#define FARM_WORKER_NETWORK_CIDR_H_

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::worker::network {

struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // v4: the first 4

  // "192.0.2.1", "2001:db8::1"; INVALID_ARGUMENT otherwise.
  static absl::StatusOr<IpAddress> Parse(absl::string_view text);
  // From a socket address (AF_INET/AF_INET6; a v4-mapped v6 address becomes v4). False for
  // other families.
  static bool FromSockaddr(const struct sockaddr* sa, IpAddress* out);
  static IpAddress V4(uint32_t host_order);
  uint32_t v4_host_order() const;
  std::string ToString() const;
  bool operator==(const IpAddress& o) const { return v6 == o.v6 && bytes == o.bytes; }
};

struct Cidr {
  IpAddress base;
  int prefix = 0;

  // "10.0.0.0/8", "192.0.2.7" (a /32), "fc00::/7"; the base is masked to the prefix.
  static absl::StatusOr<Cidr> Parse(absl::string_view text);
  bool Contains(const IpAddress& a) const;
  std::string ToString() const;
};

// Private and shared ranges an operator usually keeps steps away from (denied by default on
// farm-workers): RFC 1918, carrier-grade NAT (RFC 6598), benchmarking (RFC 2544), unique local
// IPv6.
const std::vector<Cidr>& PrivateRanges();

// Never reachable from a step whatever the lists say: "this" network, loopback, link-local
// (cloud metadata endpoints), multicast and reserved ranges, IPv6 loopback, link-local and
// multicast.
const std::vector<Cidr>& AlwaysDenied();

}  // namespace farm::worker::network

#endif  // FARM_WORKER_NETWORK_CIDR_H_
