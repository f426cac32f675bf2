#include "worker/sandbox/step_net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/sandbox/netlink.h"

namespace farm::worker::sandbox {
namespace {

struct Pool {
  uint32_t base = 0;  // host order
  uint32_t slots = 0;
};

absl::StatusOr<Pool> ParsePool(const std::string& cidr) {
  size_t slash = cidr.find('/');
  int prefix = -1;
  struct in_addr a;
  if (slash == std::string::npos || inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1 ||
      !absl::SimpleAtoi(cidr.substr(slash + 1), &prefix) || prefix < 16 || prefix > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("step network pool \"", cidr, "\": want an IPv4 range from /16 to /30"));
  }
  Pool p;
  uint32_t mask = prefix == 0 ? 0 : ~0u << (32 - prefix);
  p.base = ntohl(a.s_addr) & mask;
  p.slots = 1u << (30 - prefix);
  return p;
}

// Runs `f` in the network namespace `ns_fd`, then returns to `home_fd`'s.
absl::Status InNamespace(int ns_fd, int home_fd, const std::function<absl::Status()>& f) {
  if (setns(ns_fd, CLONE_NEWNET) != 0) return common::ErrnoToStatus(errno, "setns (run's netns)");
  absl::Status s = f();
  if (setns(home_fd, CLONE_NEWNET) != 0) {
    // Staying in the run's namespace would configure the wrong one next: give up on the run.
    return common::ErrnoToStatus(errno, "setns back to the host's network namespace");
  }
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StepNet>> StepNet::Create(const farm::v1::SandboxNetwork& config,
                                                         pid_t pid) {
  ASSIGN_OR_RETURN(Pool pool, ParsePool(config.pool()));
  if (config.host_if_prefix().empty() || config.host_if_prefix().size() > 9) {
    return absl::InvalidArgumentError("step network: bad host interface prefix");
  }
  RETURN_IF_ERROR(common::MakeDirs(config.lease_dir(), 0700));
  std::unique_ptr<StepNet> net(new StepNet());
  // A slot: a lock file held for the run's lifetime (released by the kernel if we die), named
  // for the slot's first address, so that workers with overlapping pools never share a /30.
  std::random_device rd;
  uint32_t start = rd() % pool.slots, slot = 0;
  for (uint32_t i = 0; i < pool.slots && net->lease_fd_ < 0; ++i) {
    slot = (start + i) % pool.slots;
    struct in_addr first;
    first.s_addr = htonl(pool.base + 4 * slot);
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &first, text, sizeof(text));
    std::string path = absl::StrCat(config.lease_dir(), "/", text);
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return common::ErrnoToStatus(errno, "open " + path);
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
      net->lease_fd_ = fd;
    } else {
      close(fd);
    }
  }
  if (net->lease_fd_ < 0) {
    return absl::UnavailableError(
        absl::StrCat("step network: all ", pool.slots, " slots of ", config.pool(), " are in use"));
  }
  net->host_if_ = absl::StrCat(config.host_if_prefix(), slot);
  net->gateway_ = pool.base + 4 * slot + 1;
  net->address_ = pool.base + 4 * slot + 2;

  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) return common::ErrnoToStatus(errno, "open /proc/self/ns/net");
  std::string ns_path = absl::StrCat("/proc/", pid, "/ns/net");
  int ns = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) {
    int e = errno;
    close(home);
    return common::ErrnoToStatus(e, "open " + ns_path);
  }
  auto setup = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(Netlink nl, Netlink::Open());
    absl::Status made = nl.CreateVethPair(net->host_if_, "eth0", ns);
    if (absl::IsAlreadyExists(made)) {
      // Left by a run whose runner died before deleting it (its lease was freed with it).
      nl.DeleteLink(net->host_if_).IgnoreError();
      made = nl.CreateVethPair(net->host_if_, "eth0", ns);
    }
    RETURN_IF_ERROR(made);
    RETURN_IF_ERROR(nl.AddAddress4(net->host_if_, net->gateway_, 30));
    RETURN_IF_ERROR(nl.SetUp(net->host_if_));
    return InNamespace(ns, home, [&]() -> absl::Status {
      ASSIGN_OR_RETURN(Netlink inner, Netlink::Open());
      RETURN_IF_ERROR(inner.SetUp("lo"));
      // IPv4 only: no link-local IPv6 chatter (router solicitations) on eth0.
      int fd = open("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        (void)!write(fd, "1", 1);
        close(fd);
      }
      RETURN_IF_ERROR(inner.AddAddress4("eth0", net->address_, 30));
      RETURN_IF_ERROR(inner.SetUp("eth0"));
      return inner.AddDefaultRoute4("eth0", net->gateway_);
    });
  };
  absl::Status s = setup();
  close(ns);
  close(home);
  if (!s.ok()) return common::Annotate(s, "setting up the step's network");
  return net;
}

StepNet::~StepNet() {
  // The host end is not deleted here: the kernel deletes the pair when the run's namespace goes
  // away (its last process has exited), in the background. Deleting it ourselves costs an RCU
  // grace period, ~20 ms a step, for nothing. A new run that leases this slot before the
  // kernel is done finds the name taken and deletes the old pair then (Create).
  if (lease_fd_ >= 0) close(lease_fd_);
}

}  // namespace farm::worker::sandbox
