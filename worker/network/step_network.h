// StepNetwork: the worker's half of the isolated network every RUN step gets by default (the
// runner's half, a veth pair per step, is worker/sandbox/step_net.h).
//
// Each step has its own network namespace whose eth0 is one end of a veth pair; the other end
// (named "fw<6 hex>-<slot>", the hex naming this worker) is routed by the host. One nftables
// table per worker (`inet farm_<6 hex>`) decides what steps reach:
//   - nothing on the host itself: every packet from a step to one of the host's addresses
//     (the gateway, 127.0.0.1 through it, the host's LAN address, ...) is rejected in the input
//     hook (DNS to a resolver that is a host address excepted, and replies to connections the
//     host opened to a step);
//   - the DNS resolvers, port 53 only, whatever the lists say (the host's resolvers are often
//     private addresses);
//   - never the always-denied ranges (loopback, link-local 169.254/16 with the cloud metadata
//     endpoints, multicast), nor another step;
//   - the operator's `allow` ranges, then not the `deny` ranges (private ranges by default on
//     farm-workers), then anything else, masqueraded behind the host's address;
//   - IPv4 only (the steps have no IPv6 address).
// Refusals are answered, so a step fails at once instead of timing out: a TCP reset
// (ECONNREFUSED), else ICMP "administratively prohibited" (EHOSTUNREACH). The same policy
// (DestinationPolicy) checks the worker's own downloads for ADD <url>.
//
// Lifetime: Create replaces the table of a previous worker with the same state directory (what
// a crash left behind) and removes it again in the destructor; the veth pairs go with their
// steps' namespaces (the runner deletes its host end; a killed runner's namespace takes it).
// `<state>/network/lock` is held meanwhile (and by a removal left running behind an exiting
// process), so two tables of one state directory never overlap.
//
//   StepNetworkOptions o;
//   o.deny = PrivateRanges();
//   ASSIGN_OR_RETURN(std::unique_ptr<StepNetwork> net, StepNetwork::Create(o, state_dir));
//   net->Apply(&sandbox_request);  // network ISOLATED, the generated resolv.conf
#ifndef FARM_WORKER_NETWORK_STEP_NETWORK_H_
#define FARM_WORKER_NETWORK_STEP_NETWORK_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/fs.h"
#include "farm/v1/sandbox.pb.h"
#include "worker/network/cidr.h"
#include "worker/network/destination_policy.h"

namespace farm::worker::network {

struct StepNetworkOptions {
  std::vector<Cidr> deny;   // refused destinations (after `allow`)
  std::vector<Cidr> allow;  // exceptions to `deny` (never to the always-denied ranges)
  // Resolvers the steps use (and may reach on port 53); empty: the host's, from `resolv_conf`
  // (loopback ones replaced by systemd-resolved's upstream servers when it runs).
  std::vector<IpAddress> dns;
  std::string resolv_conf = "/etc/resolv.conf";
  // Addresses for the steps: a /30 per running step. Not routed anywhere, rarely used on LANs
  // (RFC 2544's benchmarking range), unlike the RFC 1918 ranges an operator may deny or use.
  std::string pool = "198.18.0.0/20";
  // Slot leases, shared by every worker of the host using the same pool.
  std::string lease_dir = "/run/farm/step-net";
  // The nft command; "" = found in /usr/sbin, /sbin or PATH.
  std::string nft;
  // The destructor starts the table's removal and returns without waiting for it (10-20 ms):
  // for a process about to exit (farm build). The removal holds the state directory's network
  // lock until it is done, so the next Create there waits for it; the child is left to the
  // process's parent to reap.
  bool teardown_behind = false;
};

class StepNetwork {
 public:
  // Sets up this worker's table (replacing one a crashed predecessor left), enables IPv4
  // forwarding, and writes the steps' resolv.conf under `state_dir`. FAILED_PRECONDITION
  // when nftables is missing or refuses the rules, or no resolver is usable from a step.
  static absl::StatusOr<std::unique_ptr<StepNetwork>> Create(StepNetworkOptions options,
                                                             const std::string& state_dir);
  ~StepNetwork();  // removes the table

  // Makes `req` a step on the isolated network with this host's settings.
  void Apply(farm::v1::SandboxRequest* req) const;

  const std::string& table() const { return table_; }
  const std::string& interface_prefix() const { return prefix_; }
  const std::vector<IpAddress>& resolvers() const { return resolvers_; }
  const DestinationPolicy& policy() const { return policy_; }
  // The nftables ruleset (what Create loaded), for tests and `--help`-style dumps.
  std::string Ruleset() const;

 private:
  StepNetwork() = default;
  StepNetworkOptions options_;
  std::string table_, prefix_, resolv_conf_, nft_;
  std::vector<IpAddress> resolvers_;
  DestinationPolicy policy_;
  common::UniqueFd lock_;  // <state>/network/lock, held while the table is loaded
};

// The step-usable resolvers in resolv.conf text: IPv4 nameservers that are not loopback.
// `loopback_seen` says whether loopback ones were skipped (systemd-resolved's stub).
std::vector<IpAddress> StepResolvers(const std::string& resolv_conf_text, bool* loopback_seen);

}  // namespace farm::worker::network

#endif  // FARM_WORKER_NETWORK_STEP_NETWORK_H_
