// What rootless steps cost: the same steps through the sandbox runner as root in their
// namespaces and rootless (a user namespace mapped to a subordinate range; the root overlay
// and bind sources as idmapped mounts, worker/sandbox/rootless.h): busybox `true` on one
// layer and on a stack of 20, and a step that writes and chowns 1000 files (what idmapping
// costs on the write path).
//
//   rootless_bench [--runs 30]
//
// Network "none" for every step (the network's own cost is step_network_bench's). Interleaved
// runs; prints the mean, median and 90th percentile of the wall-clock time per step and the
// difference to the rootful run of the same step. It measures and reports; it does not judge.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "worker/sandbox/sandbox.h"
#include "worker/testing/busybox.h"

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
  fprintf(stderr, "rootless_bench: %s\n", s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  farm::worker::sandbox::RunSandboxIfRequested(argc, argv);
  int64_t runs = 30;
  farm::common::FlagSet fs("rootless_bench [--runs N]", "The per-step cost of rootless steps.");
  fs.Int("runs", 0, &runs, "steps per mode");
  auto args = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!args.ok()) return Fail(args.status());
  if (fs.help_requested()) {
    printf("%s", fs.Help().c_str());
    return 0;
  }
  auto tmp = farm::common::TempDir::Create("rootless-bench");
  if (!tmp.ok()) return Fail(tmp.status());
  const std::string dir = tmp->path();
  if (absl::Status s = farm::worker::testing::MakeBusyboxRootfs(dir + "/layers/busybox"); !s.ok())
    return Fail(s);
  std::vector<std::string> deep;
  for (int i = 0; i < 19; ++i) {
    std::string l = absl::StrCat("l", i);
    if (absl::Status s = farm::common::MakeDirs(absl::StrCat(dir, "/layers/", l, "/etc")); !s.ok())
      return Fail(s);
    if (absl::Status s =
            farm::common::WriteFileAtomic(absl::StrCat(dir, "/layers/", l, "/etc/layer", i), "x\n");
        !s.ok()) {
      return Fail(s);
    }
    deep.push_back(l);
  }
  deep.push_back("busybox");

  int counter = 0;
  auto run_one = [&](bool rootless, const std::vector<std::string>& lowers,
                     const std::vector<std::string>& args) -> absl::StatusOr<double> {
    std::string run = absl::StrCat(dir, "/run", counter++);
    for (const char* d : {"upper", "work", "rootfs"}) {
      RETURN_IF_ERROR(farm::common::MakeDirs(absl::StrCat(run, "/", d)));
    }
    SandboxRequest r;
    r.set_layer_dir(dir + "/layers");
    for (const std::string& l : lowers) r.add_lower_dirs(l);
    r.set_upper_dir(run + "/upper");
    r.set_work_dir(run + "/work");
    r.set_rootfs_dir(run + "/rootfs");
    for (const std::string& a : args) r.add_args(a);
    r.set_network(SandboxRequest::NONE);
    if (rootless) {
      r.mutable_userns()->set_uid_start(460000);
      r.mutable_userns()->set_gid_start(460000);
      r.mutable_userns()->set_count(65536);
    }
    farm::worker::sandbox::SandboxIo io;
    io.on_line = [](absl::string_view, bool) {};
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
    std::string name;
    bool rootless;
    std::vector<std::string> lowers;
    std::vector<std::string> args;
  };
  const std::vector<std::string> one = {"busybox"};
  const std::vector<std::string> truth = {"/bin/true"};
  const std::vector<std::string> write = {
      "/bin/sh", "-c",
      "mkdir /w && cd /w && for i in $(seq 1000); do echo $i > f$i; done &&"
      " chown -R 1000:1000 /w"};
  std::vector<Mode> modes = {
      {"true, 1 layer", false, one, truth},    {"true, 1 layer, rootless", true, one, truth},
      {"true, 20 layers", false, deep, truth}, {"true, 20 layers, rootless", true, deep, truth},
      {"1000 files", false, one, write},       {"1000 files, rootless", true, one, write},
  };
  for (const Mode& m : modes) {
    auto w = run_one(m.rootless, m.lowers, m.args);
    if (!w.ok()) return Fail(w.status());
  }
  printf("# %lld steps per mode, interleaved\n", static_cast<long long>(runs));
  printf("%-26s %9s %9s %9s %14s\n", "mode", "mean ms", "p50 ms", "p90 ms", "vs rootful ms");
  std::vector<std::vector<double>> times(modes.size());
  for (int64_t i = 0; i < runs; ++i) {
    for (size_t m = 0; m < modes.size(); ++m) {
      auto ms = run_one(modes[m].rootless, modes[m].lowers, modes[m].args);
      if (!ms.ok()) return Fail(ms.status());
      times[m].push_back(*ms);
    }
  }
  for (size_t m = 0; m < modes.size(); ++m) {
    Stats s = Summarize(times[m]);
    double base = Summarize(times[m & ~size_t{1}]).mean;
    printf("%-26s %9.2f %9.2f %9.2f %+14.2f\n", modes[m].name.c_str(), s.mean, s.p50, s.p90,
           s.mean - base);
  }
  return 0;
}
