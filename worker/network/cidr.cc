#include "worker/network/cidr.h"

#include <arpa/inet.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace farm::worker::network {

absl::StatusOr<IpAddress> IpAddress::Parse(absl::string_view text) {
  std::string s(text);
  IpAddress a;
  struct in_addr v4;
  if (inet_pton(AF_INET, s.c_str(), &v4) == 1) {
    std::memcpy(a.bytes.data(), &v4, 4);
    return a;
  }
  struct in6_addr v6;
  if (inet_pton(AF_INET6, s.c_str(), &v6) == 1) {
    a.v6 = true;
    std::memcpy(a.bytes.data(), &v6, 16);
    return a;
  }
  return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an IP address"));
}

bool IpAddress::FromSockaddr(const struct sockaddr* sa, IpAddress* out) {
  if (sa == nullptr) return false;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(sa);
    *out = IpAddress();
    std::memcpy(out->bytes.data(), &in->sin_addr, 4);
    return true;
  }
  if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const struct sockaddr_in6*>(sa);
    *out = IpAddress();
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      std::memcpy(out->bytes.data(), in6->sin6_addr.s6_addr + 12, 4);
    } else {
      out->v6 = true;
      std::memcpy(out->bytes.data(), &in6->sin6_addr, 16);
    }
    return true;
  }
  return false;
}

IpAddress IpAddress::V4(uint32_t host_order) {
  IpAddress a;
  uint32_t n = htonl(host_order);
  std::memcpy(a.bytes.data(), &n, 4);
  return a;
}

uint32_t IpAddress::v4_host_order() const {
  uint32_t n;
  std::memcpy(&n, bytes.data(), 4);
  return ntohl(n);
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), buf, sizeof(buf));
  return buf;
}

absl::StatusOr<Cidr> Cidr::Parse(absl::string_view text) {
  size_t slash = text.find('/');
  absl::StatusOr<IpAddress> a = IpAddress::Parse(text.substr(0, slash));
  if (!a.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\" is not an address range"));
  }
  Cidr c{*a, a->v6 ? 128 : 32};
  if (slash != absl::string_view::npos) {
    int p = -1;
    if (!absl::SimpleAtoi(text.substr(slash + 1), &p) || p < 0 || p > (a->v6 ? 128 : 32)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": bad prefix length"));
    }
    c.prefix = p;
  }
  for (int i = 0; i < 16; ++i) {
    int bits = c.prefix - 8 * i;
    uint8_t mask = bits >= 8 ? 0xff : bits <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - bits));
    c.base.bytes[i] &= mask;
  }
  return c;
}

bool Cidr::Contains(const IpAddress& a) const {
  if (a.v6 != base.v6) return false;
  for (int i = 0; i < 16; ++i) {
    int bits = prefix - 8 * i;
    if (bits <= 0) break;
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((a.bytes[i] & mask) != base.bytes[i]) return false;
  }
  return true;
}

std::string Cidr::ToString() const { return absl::StrCat(base.ToString(), "/", prefix); }

namespace {
std::vector<Cidr>* ParseAll(std::initializer_list<const char*> texts) {
  auto* out = new std::vector<Cidr>;
  for (const char* t : texts) out->push_back(*Cidr::Parse(t));
  return out;
}
}  // namespace

const std::vector<Cidr>& PrivateRanges() {
  static const std::vector<Cidr>* r = ParseAll({"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                "100.64.0.0/10", "198.18.0.0/15", "fc00::/7"});
  return *r;
}

const std::vector<Cidr>& AlwaysDenied() {
  static const std::vector<Cidr>* r =
      ParseAll({"0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3", "::/128", "::1/128",
                "fe80::/10", "ff00::/8"});
  return *r;
}

}  // namespace farm::worker::network
