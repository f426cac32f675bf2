#include "worker/network/destination_policy.h"

#include <ifaddrs.h>

#include "absl/strings/str_cat.h"

namespace farm::worker::network {

std::vector<IpAddress> HostAddresses() {
  std::vector<IpAddress> out;
  struct ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (struct ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
    IpAddress a;
    if (IpAddress::FromSockaddr(i->ifa_addr, &a)) out.push_back(a);
  }
  freeifaddrs(list);
  return out;
}

absl::Status DestinationPolicy::Check(const IpAddress& address) const {
  auto denied = [&](absl::string_view why) {
    return absl::PermissionDeniedError(
        absl::StrCat(address.ToString(), " is not reachable from a build step (", why, ")"));
  };
  for (const Cidr& c : AlwaysDenied()) {
    if (c.Contains(address)) return denied(absl::StrCat("in ", c.ToString(), ", always denied"));
  }
  for (const IpAddress& own : HostAddresses()) {
    if (own == address) return denied("an address of the worker host itself");
  }
  for (const Cidr& c : allow_) {
    if (c.Contains(address)) return absl::OkStatus();
  }
  for (const Cidr& c : deny_) {
    if (c.Contains(address)) {
      return denied(absl::StrCat("in ", c.ToString(), ", denied by the operator"));
    }
  }
  return absl::OkStatus();
}

}  // namespace farm::worker::network
