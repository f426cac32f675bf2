// What a RUN step's network costs: the same trivial step (busybox `true`) run through the
// sandbox runner, one after another, on the host's network, with a network namespace of only
// `lo` (--network=none) and on the isolated default network (its own namespace, a veth pair,
// addresses and a route, the slot lease; the worker's nftables table made once). Also one step
// that opens a TCP connection to another host, through the firewall and NAT.
//
//   step_network_bench [--runs 100]
//
// Everything happens in network namespaces the benchmark makes (worker/testing/test_hosts.h):
// no packet leaves the machine and the host's firewall is untouched. Prints, per mode, the
// mean, median and 90th percentile of the wall-clock time per step and the difference to
// `host`. It measures and reports; it does not judge.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "worker/network/step_network.h"
#include "worker/sandbox/sandbox.h"
#include "worker/testing/busybox.h"
#include "worker/testing/test_hosts.h"

namespace {

using farm::v1::SandboxRequest;
using Clock = std::chrono::steady_clock;

struct Stats {
  double mean = 0, p50 = 0, p90 = 0;
};

Stats Summarize(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  Stats s;
  for (double m : ms) s.mean += m;
  s.mean /= static_cast<double>(ms.size());
  s.p50 = ms[ms.size() / 2];
  s.p90 = ms[ms.size() * 9 / 10];
  return s;
}

int Fail(const absl::Status& s) {
  fprintf(stderr, "step_network_bench: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  farm::worker::sandbox::RunSandboxIfRequested(argc, argv);
  int64_t runs = 100;
  farm::common::FlagSet fs("step_network_bench [--runs N]", "The per-step cost of the network.");
  fs.Int("runs", 0, &runs, "steps per mode");
  auto args = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) return Fail(args.status());
  if (fs.help_requested()) {
    printf("%s", fs.Help().c_str());
    return 0;
  }

  // The worker host: a namespace of our own, with another host beside it.
  auto hosts = farm::worker::testing::TestHosts::Create();
  if (!hosts.ok()) return Fail(hosts.status());
  std::unique_ptr<farm::worker::testing::GreetingServer> peer;
  if (absl::Status s = (*hosts)->InPeer([&] {
        peer = std::make_unique<farm::worker::testing::GreetingServer>("0.0.0.0", 0, "peer");
      });
      !s.ok()) {
    return Fail(s);
  }
  auto tmp = farm::common::TempDir::Create("step-network-bench");
  if (!tmp.ok()) return Fail(tmp.status());
  const std::string dir = tmp->path();
  if (absl::Status s = farm::worker::testing::MakeBusyboxRootfs(dir + "/layers/busybox"); !s.ok())
    return Fail(s);
  farm::common::WriteFileAtomic(dir + "/resolv.conf", "nameserver 10.77.0.2\n").IgnoreError();

  farm::worker::network::StepNetworkOptions o;
  o.deny = farm::worker::network::PrivateRanges();
  o.allow = {*farm::worker::network::Cidr::Parse("10.77.0.2")};
  o.resolv_conf = dir + "/resolv.conf";
  o.lease_dir = dir + "/leases";
  auto t0 = Clock::now();
  auto net = farm::worker::network::StepNetwork::Create(o, dir + "/state");
  double create_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!net.ok()) return Fail(net.status());

  int counter = 0;
  auto run_one = [&](SandboxRequest::Network mode, const std::vector<std::string>& args,
                     std::string* out) -> absl::StatusOr<double> {
    std::string run = absl::StrCat(dir, "/run", counter++);
    for (const char* d : {"upper", "work", "rootfs"}) {
      RETURN_IF_ERROR(farm::common::MakeDirs(absl::StrCat(run, "/", d)));
    }
    SandboxRequest r;
    r.set_layer_dir(dir + "/layers");
    r.add_lower_dirs("busybox");
    r.set_upper_dir(run + "/upper");
    r.set_work_dir(run + "/work");
    r.set_rootfs_dir(run + "/rootfs");
    for (const std::string& a : args) r.add_args(a);
    if (mode == SandboxRequest::ISOLATED) {
      (*net)->Apply(&r);
    } else {
      r.set_network(mode);
    }
    farm::worker::sandbox::SandboxIo io;
    io.on_line = [out](absl::string_view line, bool) {
      if (out != nullptr) absl::StrAppend(out, line);
    };
    auto start = Clock::now();
    auto result = farm::worker::sandbox::RunSandbox(r, io, nullptr);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (!result.ok()) return result.status();
    if (result->error_code() != 0 || result->exit_code() != 0) {
      return absl::InternalError(
          absl::StrCat("step failed: ", result->error_message(), " exit ", result->exit_code()));
    }
    farm::common::RemoveAll(run).IgnoreError();
    return ms;
  };

  struct Mode {
    const char* name;
    SandboxRequest::Network network;
    std::vector<std::string> args;
  };
  std::string connect = absl::StrCat("nc -w 3 ", farm::worker::testing::TestHosts::kPeerAddress,
                                     " ", peer->port(), " </dev/null");
  std::vector<Mode> modes = {
      {"host", SandboxRequest::HOST, {"/bin/true"}},
      {"none", SandboxRequest::NONE, {"/bin/true"}},
      {"isolated", SandboxRequest::ISOLATED, {"/bin/true"}},
      {"isolated+connect", SandboxRequest::ISOLATED, {"/bin/sh", "-c", connect}},
  };
  // Warm-up (page cache, the seccomp profile's first compile in each runner is per process).
  for (const Mode& m : modes) {
    std::string out;
    auto w = run_one(m.network, m.args, &out);
    if (!w.ok()) return Fail(w.status());
  }
  printf("# %lld steps per mode; the worker's nftables table: created in %.1f ms (once)\n",
         static_cast<long long>(runs), create_ms);
  printf("%-18s %9s %9s %9s %12s\n", "mode", "mean ms", "p50 ms", "p90 ms", "vs host ms");
  // Interleaved, so that drift (page cache, the kernel's namespace cleanup) hits all modes.
  std::vector<std::vector<double>> times(modes.size());
  for (int64_t i = 0; i < runs; ++i) {
    for (size_t m = 0; m < modes.size(); ++m) {
      auto ms = run_one(modes[m].network, modes[m].args, nullptr);
      if (!ms.ok()) return Fail(ms.status());
      times[m].push_back(*ms);
    }
  }
  double host_mean = Summarize(times[0]).mean;
  for (size_t m = 0; m < modes.size(); ++m) {
    Stats s = Summarize(times[m]);
    printf("%-18s %9.2f %9.2f %9.2f %+12.2f\n", modes[m].name, s.mean, s.p50, s.p90,
           s.mean - host_mean);
  }
  return 0;
}
