#include "worker/network/step_network.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

extern char** environ;

namespace farm::worker::network {
namespace {

std::string FindNft(const std::string& configured) {
  if (!configured.empty()) return configured;
  for (const char* p : {"/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft", "/bin/nft"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// Starts `argv` with `input` on stdin and stdout on /dev/null. Its stderr goes to a pipe
// whose read end is `*err` when `err` is not null, else to /dev/null; `keep_fd` >= 0 is
// passed on as its descriptor 3 (a lock the child then holds until it exits).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& input,
                            int keep_fd, int* err) {
  // dup2 of a descriptor onto itself clears close-on-exec only on glibc >= 2.29: a copy.
  common::UniqueFd moved;
  if (keep_fd == 3) {
    moved = common::UniqueFd(fcntl(keep_fd, F_DUPFD_CLOEXEC, 4));
    if (moved.get() < 0) return common::ErrnoToStatus(errno, "dup");
    keep_fd = moved.get();
  }
  int in[2], errp[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) != 0) return common::ErrnoToStatus(errno, "pipe");
  if (err != nullptr && pipe2(errp, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    return common::ErrnoToStatus(errno, "pipe");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (err != nullptr) {
    posix_spawn_file_actions_adddup2(&fa, errp[1], 2);
  } else {
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  }
  if (keep_fd >= 0) posix_spawn_file_actions_adddup2(&fa, keep_fd, 3);
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (std::string& a : copy) args.push_back(&a[0]);
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(in[0]);
  if (err != nullptr) close(errp[1]);
  if (rc != 0) {
    close(in[1]);
    if (err != nullptr) close(errp[0]);
    return common::ErrnoToStatus(rc, "running " + argv[0]);
  }
  // The input is a few hundred bytes: it fits the pipe, the child reads it when it runs.
  (void)!write(in[1], input.data(), input.size());
  close(in[1]);
  if (err != nullptr) *err = errp[0];
  return pid;
}

// Runs `argv` with `input` on stdin; returns its stderr on failure.
absl::Status RunTool(const std::vector<std::string>& argv, const std::string& input) {
  int err = -1;
  ASSIGN_OR_RETURN(pid_t pid, Spawn(argv, input, -1, &err));
  std::string errors;
  char buf[4096];
  ssize_t n;
  while ((n = read(err, buf, sizeof(buf))) > 0) errors.append(buf, static_cast<size_t>(n));
  close(err);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat(absl::StrJoin(argv, " "), " failed: ", absl::StripAsciiWhitespace(errors)));
}

// Takes the state directory's network lock: held by this network while it lives and by a
// removal left running behind a process that exited (teardown_behind), so a new table is
// never loaded while an old removal may still delete it.
absl::StatusOr<common::UniqueFd> LockNetwork(const std::string& dir, absl::Duration wait) {
  std::string path = common::JoinPath(dir, "lock");
  common::UniqueFd fd(open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) return common::ErrnoToStatus(errno, "open " + path);
  absl::Time deadline = absl::Now() + wait;
  while (flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      return common::ErrnoToStatus(errno, "lock " + path);
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "waited ", absl::FormatDuration(wait), " for ", path,
          ": another farm process with this state directory, or the removal of its firewall "
          "table, still holds it"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return fd;
}

std::string Elements(const std::vector<std::string>& items) {
  return items.empty() ? "" : absl::StrCat("elements = { ", absl::StrJoin(items, ", "), " }; ");
}

std::vector<std::string> V4(const std::vector<Cidr>& ranges) {
  std::vector<std::string> out;
  for (const Cidr& c : ranges) {
    if (!c.base.v6) out.push_back(c.ToString());
  }
  return out;
}

}  // namespace

std::vector<IpAddress> StepResolvers(const std::string& text, bool* loopback_seen) {
  std::vector<IpAddress> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    std::vector<absl::string_view> w =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (w.size() < 2 || w[0] != "nameserver") continue;
    absl::StatusOr<IpAddress> a = IpAddress::Parse(w[1]);
    if (!a.ok() || a->v6) continue;
    if ((a->v4_host_order() >> 24) == 127) {
      if (loopback_seen != nullptr) *loopback_seen = true;
      continue;
    }
    out.push_back(*a);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<StepNetwork>> StepNetwork::Create(StepNetworkOptions options,
                                                                 const std::string& state_dir) {
  std::unique_ptr<StepNetwork> net(new StepNetwork());
  // The tag names this worker's table and interfaces: from the state directory's real path,
  // the one thing no two workers of a host share.
  RETURN_IF_ERROR(common::MakeDirs(state_dir, 0700));
  char real[PATH_MAX];
  if (realpath(state_dir.c_str(), real) == nullptr) {
    return common::ErrnoToStatus(errno, "realpath " + state_dir);
  }
  std::string tag = common::Sha256Hex(real).substr(0, 6);
  net->table_ = "farm_" + tag;
  net->prefix_ = "fw" + tag + "-";
  net->nft_ = FindNft(options.nft);
  if (net->nft_.empty()) {
    return absl::FailedPreconditionError(
        "the isolated step network needs nftables (the nft command; apt-get install nftables)");
  }
  absl::StatusOr<Cidr> pool = Cidr::Parse(options.pool);
  if (!pool.ok() || pool->base.v6 || pool->prefix > 30 || pool->prefix < 16) {
    return absl::InvalidArgumentError(absl::StrCat("step network pool \"", options.pool,
                                                   "\": want an IPv4 range from /16 to /30"));
  }

  // Resolvers: the operator's, else the host's (systemd-resolved's upstreams for its stub).
  std::string host_resolv;
  if (common::PathExists(options.resolv_conf)) {
    ASSIGN_OR_RETURN(host_resolv, common::ReadFile(options.resolv_conf));
  }
  net->resolvers_ = options.dns;
  if (net->resolvers_.empty()) {
    bool loopback = false;
    net->resolvers_ = StepResolvers(host_resolv, &loopback);
    const char* resolved = "/run/systemd/resolve/resolv.conf";
    if (net->resolvers_.empty() && loopback && common::PathExists(resolved)) {
      absl::StatusOr<std::string> upstream = common::ReadFile(resolved);
      if (upstream.ok()) net->resolvers_ = StepResolvers(*upstream, nullptr);
    }
  }
  if (net->resolvers_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "no DNS resolver a build step can use: ", options.resolv_conf,
        " names none but loopback or IPv6 ones; set one (dns = ADDRESS in sandbox.conf, "
        "farm-worker --dns ADDRESS)"));
  }
  // The steps' resolv.conf: those resolvers, and the host's search and options lines.
  std::string resolv;
  for (const IpAddress& a : net->resolvers_)
    absl::StrAppend(&resolv, "nameserver ", a.ToString(), "\n");
  for (absl::string_view line : absl::StrSplit(host_resolv, '\n')) {
    absl::string_view t = absl::StripLeadingAsciiWhitespace(line);
    if (absl::StartsWith(t, "search ") || absl::StartsWith(t, "domain ") ||
        absl::StartsWith(t, "options ")) {
      absl::StrAppend(&resolv, t, "\n");
    }
  }
  std::string dir = common::JoinPath(state_dir, "network");
  RETURN_IF_ERROR(common::MakeDirs(dir, 0755));
  ASSIGN_OR_RETURN(net->lock_, LockNetwork(dir, absl::Seconds(30)));
  net->resolv_conf_ = common::JoinPath(dir, "resolv.conf");
  RETURN_IF_ERROR(common::WriteFileAtomic(net->resolv_conf_, resolv, 0644));

  net->options_ = std::move(options);
  net->policy_ = DestinationPolicy(net->options_.deny, net->options_.allow);
  // Forwarding is what routes a step's packets out (what Docker enables too). It is per
  // network namespace and left on: other software on the host may rely on it.
  {
    int fd = open("/proc/sys/net/ipv4/ip_forward", O_RDWR | O_CLOEXEC);
    char on = 0;
    if (fd < 0 || pread(fd, &on, 1, 0) != 1 || (on != '1' && write(fd, "1", 1) != 1)) {
      int e = errno;
      if (fd >= 0) close(fd);
      return common::ErrnoToStatus(e, "enabling IPv4 forwarding (/proc/sys/net/ipv4/ip_forward)");
    }
    close(fd);
  }
  RETURN_IF_ERROR(common::Annotate(RunTool({net->nft_, "-f", "-"}, net->Ruleset()),
                                   "loading the step network's firewall (nftables)"));
  return net;
}

StepNetwork::~StepNetwork() {
  if (nft_.empty() || lock_.get() < 0) return;  // never loaded
  std::string removal = absl::StrCat("table inet ", table_, "\ndelete table inet ", table_, "\n");
  if (options_.teardown_behind) {
    // nft holds the lock (its descriptor 3) until the table is gone; nobody waits for it here.
    Spawn({nft_, "-f", "-"}, removal, lock_.get(), nullptr).IgnoreError();
    return;
  }
  RunTool({nft_, "-f", "-"}, removal).IgnoreError();
}

std::string StepNetwork::Ruleset() const {
  const std::string in = absl::StrCat("iifname \"", prefix_, "*\"");
  const std::string out = absl::StrCat("oifname \"", prefix_, "*\"");
  std::vector<std::string> fixed = V4(AlwaysDenied());
  fixed.push_back(options_.pool);
  std::vector<std::string> dns;
  for (const IpAddress& a : resolvers_) dns.push_back(a.ToString());
  const std::string dns_rule = "meta l4proto { tcp, udp } th dport 53 ip daddr @resolvers accept";
  std::vector<std::string> lines = {
      // Create-then-delete makes the load replace any earlier table of this name in one go.
      absl::StrCat("table inet ", table_),
      absl::StrCat("delete table inet ", table_),
      absl::StrCat("table inet ", table_, " {"),
      absl::StrCat("  set always_denied { type ipv4_addr; flags interval; ", Elements(fixed), "}"),
      absl::StrCat("  set denied { type ipv4_addr; flags interval; ", Elements(V4(options_.deny)),
                   "}"),
      absl::StrCat("  set allowed { type ipv4_addr; flags interval; ", Elements(V4(options_.allow)),
                   "}"),
      absl::StrCat("  set resolvers { type ipv4_addr; ", Elements(dns), "}"),
      absl::StrCat("  set named_exceptions { type ipv4_addr; flags interval; ",
                   Elements(V4(policy_.ExplicitExceptions())), "}"),
      // A refused TCP connection gets a reset (ECONNREFUSED at once); anything else an ICMP
      // "administratively prohibited". Not ICMP for TCP too: the kernel rate-limits ICMP
      // errors per destination (about one a second), so a step's second refused connection
      // within a second would hang until its SYN is retried.
      "  chain refuse {",
      "    meta l4proto tcp reject with tcp reset",
      "    reject with icmpx type admin-prohibited",
      "  }",
      // To the host itself: only DNS to a resolver that is one of its addresses, and the
      // replies of connections the host opened to a step.
      "  chain input {",
      "    type filter hook input priority filter - 10; policy accept;",
      absl::StrCat("    ", in, " ct state established,related accept"),
      absl::StrCat("    ", in, " ", dns_rule),
      absl::StrCat("    ", in, " goto refuse"),
      "  }",
      "  chain forward {",
      "    type filter hook forward priority filter - 10; policy accept;",
      absl::StrCat("    ", in, " jump from_step"),
      absl::StrCat("    ", out, " ct state established,related accept"),
      absl::StrCat("    ", out, " drop"),
      "  }",
      "  chain from_step {",
      "    meta nfproto ipv6 goto refuse",
      absl::StrCat("    ", dns_rule),
      "    ip daddr @named_exceptions accept",
      "    ip daddr @always_denied goto refuse",
      absl::StrCat("    ", out, " goto refuse"),
      "    ip daddr @allowed accept",
      "    ip daddr @denied goto refuse",
      "    accept",
      "  }",
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      absl::StrCat("    ip saddr ", options_.pool, " ", out, " return"),
      absl::StrCat("    ip saddr ", options_.pool, " masquerade"),
      "  }",
      "}",
  };
  return absl::StrCat(absl::StrJoin(lines, "\n"), "\n");
}

void StepNetwork::Apply(farm::v1::SandboxRequest* req) const {
  req->set_network(farm::v1::SandboxRequest::ISOLATED);
  farm::v1::SandboxNetwork* n = req->mutable_isolated();
  n->set_host_if_prefix(prefix_);
  n->set_pool(options_.pool);
  n->set_lease_dir(options_.lease_dir);
  req->set_resolv_conf(resolv_conf_);
}

}  // namespace farm::worker::network
