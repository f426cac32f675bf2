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

bool DestinationPolicy::NamedExplicitly(const IpAddress& address, const Cidr& fixed) const {
  for (const Cidr& a : allow_) {
    if (a.Contains(address) && a.base.v6 == fixed.base.v6 && a.prefix >= fixed.prefix &&
        fixed.Contains(a.base)) {
      return true;
    }
  }
  return false;
}

std::vector<Cidr> DestinationPolicy::ExplicitExceptions() const {
  std::vector<Cidr> out;
  for (const Cidr& a : allow_) {
    for (const Cidr& fixed : AlwaysDenied()) {
      if (a.base.v6 == fixed.base.v6 && a.prefix >= fixed.prefix && fixed.Contains(a.base)) {
        out.push_back(a);
        break;
      }
    }
  }
  return out;
}

absl::Status DestinationPolicy::Check(const IpAddress& address) const {
  auto denied = [&](absl::string_view why) {
    return absl::PermissionDeniedError(
        absl::StrCat(address.ToString(), " is not reachable from a build step (", why, ")"));
  };
  for (const Cidr& c : AlwaysDenied()) {
    if (c.Contains(address) && !NamedExplicitly(address, c)) {
      return denied(absl::StrCat("in ", c.ToString(), ", always denied"));
    }
  }
  bool named = false;
  for (const Cidr& c : AlwaysDenied())
    named = named || (c.Contains(address) && NamedExplicitly(address, c));
  for (const IpAddress& own : HostAddresses()) {
    if (own == address && !named) return denied("an address of the worker host itself");
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
