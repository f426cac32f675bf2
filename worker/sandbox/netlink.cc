#include "worker/sandbox/netlink.h"

#include <arpa/inet.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace farm::worker::sandbox {
namespace {

// Appends netlink messages and (nested) attributes to a byte string, 4-byte aligned.
class Builder {
 public:
  Builder(uint16_t type, uint16_t flags) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = static_cast<uint16_t>(flags | NLM_F_REQUEST | NLM_F_ACK);
    Append(&h, sizeof(h));
  }
  template <typename T>
  void Struct(const T& t) {
    Append(&t, sizeof(t));
  }
  void Attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    Append(&a, sizeof(a));
    Append(data, len);
  }
  void AttrString(uint16_t type, const std::string& s) { Attr(type, s.c_str(), s.size() + 1); }
  void AttrU32(uint16_t type, uint32_t v) { Attr(type, &v, sizeof(v)); }
  // Starts a nested attribute; End() closes the innermost.
  void Begin(uint16_t type) {
    open_.push_back(buf_.size());
    rtattr a{};
    a.rta_type = type;
    Append(&a, sizeof(a));
  }
  void End() {
    size_t at = open_.back();
    open_.pop_back();
    rtattr a;
    std::memcpy(&a, buf_.data() + at, sizeof(a));
    a.rta_len = static_cast<uint16_t>(buf_.size() - at);
    std::memcpy(&buf_[at], &a, sizeof(a));
  }
  std::string Finish() {
    nlmsghdr h;
    std::memcpy(&h, buf_.data(), sizeof(h));
    h.nlmsg_len = static_cast<uint32_t>(buf_.size());
    std::memcpy(&buf_[0], &h, sizeof(h));
    return buf_;
  }

 private:
  void Append(const void* p, size_t n) {
    buf_.append(static_cast<const char*>(p), n);
    buf_.append((4 - buf_.size() % 4) % 4, '\0');
  }
  std::string buf_;
  std::vector<size_t> open_;
};

absl::StatusOr<int> IfIndex(const std::string& name) {
  unsigned idx = if_nametoindex(name.c_str());
  if (idx == 0) return common::ErrnoToStatus(errno, "no network interface " + name);
  return static_cast<int>(idx);
}

}  // namespace

absl::StatusOr<Netlink> Netlink::Open() {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return common::ErrnoToStatus(errno, "netlink socket");
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    int e = errno;
    close(fd);
    return common::ErrnoToStatus(e, "netlink bind");
  }
  return Netlink(fd);
}

Netlink::~Netlink() {
  if (fd_ >= 0) close(fd_);
}

absl::Status Netlink::Transact(std::string* msg, const std::string& what) {
  nlmsghdr h;
  std::memcpy(&h, msg->data(), sizeof(h));
  h.nlmsg_seq = ++seq_;
  std::memcpy(&(*msg)[0], &h, sizeof(h));
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  if (sendto(fd_, msg->data(), msg->size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) < 0) {
    return common::ErrnoToStatus(errno, "netlink: " + what);
  }
  char buf[8192];
  while (true) {
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return common::ErrnoToStatus(errno, "netlink: " + what);
    for (nlmsghdr* r = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(r, static_cast<unsigned>(n));
         r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_seq != seq_ || r->nlmsg_type != NLMSG_ERROR) continue;
      const nlmsgerr* e = static_cast<const nlmsgerr*>(NLMSG_DATA(r));
      if (e->error == 0) return absl::OkStatus();
      return common::ErrnoToStatus(-e->error, "netlink: " + what);
    }
  }
}

absl::Status Netlink::CreateVethPair(const std::string& name, const std::string& peer,
                                     int peer_netns_fd) {
  Builder b(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  b.Struct(ifi);
  b.AttrString(IFLA_IFNAME, name);
  b.Begin(IFLA_LINKINFO);
  b.AttrString(IFLA_INFO_KIND, "veth");
  b.Begin(IFLA_INFO_DATA);
  b.Begin(VETH_INFO_PEER);
  b.Struct(ifi);
  b.AttrString(IFLA_IFNAME, peer);
  b.AttrU32(IFLA_NET_NS_FD, static_cast<uint32_t>(peer_netns_fd));
  b.End();
  b.End();
  b.End();
  std::string msg = b.Finish();
  return Transact(&msg, absl::StrCat("creating veth ", name, " (peer ", peer, ")"));
}

absl::Status Netlink::DeleteLink(const std::string& name) {
  absl::StatusOr<int> idx = IfIndex(name);
  if (!idx.ok()) return absl::NotFoundError(idx.status().message());
  Builder b(RTM_DELLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = *idx;
  b.Struct(ifi);
  std::string msg = b.Finish();
  return Transact(&msg, "deleting link " + name);
}

absl::Status Netlink::SetUp(const std::string& name) {
  absl::StatusOr<int> idx = IfIndex(name);
  if (!idx.ok()) return idx.status();
  Builder b(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = *idx;
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  b.Struct(ifi);
  std::string msg = b.Finish();
  return Transact(&msg, "bringing up " + name);
}

absl::Status Netlink::AddAddress4(const std::string& name, uint32_t addr, int prefix) {
  absl::StatusOr<int> idx = IfIndex(name);
  if (!idx.ok()) return idx.status();
  Builder b(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa.ifa_index = static_cast<unsigned>(*idx);
  b.Struct(ifa);
  uint32_t n = htonl(addr);
  b.Attr(IFA_LOCAL, &n, 4);
  b.Attr(IFA_ADDRESS, &n, 4);
  std::string msg = b.Finish();
  return Transact(&msg, "adding an address to " + name);
}

absl::Status Netlink::AddDefaultRoute4(const std::string& name, uint32_t gateway) {
  absl::StatusOr<int> idx = IfIndex(name);
  if (!idx.ok()) return idx.status();
  Builder b(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  rtmsg rt{};
  rt.rtm_family = AF_INET;
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_BOOT;
  rt.rtm_scope = RT_SCOPE_UNIVERSE;
  rt.rtm_type = RTN_UNICAST;
  b.Struct(rt);
  uint32_t gw = htonl(gateway);
  b.Attr(RTA_GATEWAY, &gw, 4);
  b.AttrU32(RTA_OIF, static_cast<uint32_t>(*idx));
  std::string msg = b.Finish();
  return Transact(&msg, "adding the default route on " + name);
}

}  // namespace farm::worker::sandbox
