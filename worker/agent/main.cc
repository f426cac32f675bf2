// farm-worker: runs build steps for farm-scheduler on this host. Flags and wiring only; see
// worker/agent/agent.h.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "auth/flags.h"
#include "common/flags.h"
#include "common/logging/grpc_log.h"
#include "common/logging/line_fields.h"
#include "common/ops/ops.h"
#include "oci/platform.h"
#include "worker/agent/agent.h"
#include "worker/agent/ops.h"
#include "worker/emulation.h"
#include "worker/sandbox/sandbox.h"
#include "worker/sandbox_settings.h"

namespace {

int Fail(const std::string& message, int code = 1) {
  std::cerr << "farm-worker: " << message << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  // farm-worker is also its own sandbox runner (worker/sandbox/sandbox.h): must come first.
  farm::worker::sandbox::RunSandboxIfRequested(argc, argv);

  farm::worker::agent::Agent::Options o;
  int64_t slots = std::max(1u, std::thread::hardware_concurrency());
  farm::worker::SandboxSettings sandbox = farm::worker::WorkerSandboxDefaults();
  std::vector<std::string> labels;
  farm::common::FlagSet fs(
      "farm-worker --scheduler HOST:PORT --cache HOST:PORT --dir DIR [--slots N] [OPTIONS]",
      "Runs build steps for a farm-scheduler on this host. Connects out to the scheduler\n"
      "(which never dials workers), moves layers and build contexts through farm-cache, and\n"
      "reconnects with backoff whenever either is unreachable. Needs root. Several workers\n"
      "may run on one host, each with its own --dir. Stop it with SIGTERM or SIGINT: running\n"
      "steps are cancelled and reported before it exits.");
  fs.String("scheduler", 0, &o.scheduler, "farm-scheduler's address", "HOST:PORT");
  fs.String("cache", 0, &o.cache, "farm-cache's address", "HOST:PORT");
  fs.String("dir", 0, &o.state_dir,
            "State directory: layer store, cache mounts, worker id (created if missing; one "
            "worker per directory)",
            "DIR");
  fs.Int("slots", 0, &slots, "Steps run at once (default: the number of CPUs)");
  fs.Repeated("label", 0, &labels, "A label the scheduler can place by (repeatable)", "KEY=VALUE");
  o.context_cache_max_bytes = int64_t{1} << 30;
  fs.Size("context-cache-max", 0, &o.context_cache_max_bytes,
          "Disk kept for a local copy of build-context files read from farm-cache (a COPY of an "
          "unchanged source tree then reads nothing over the network), e.g. 4G; 0 turns it off "
          "(default 1G)");
  fs.Size("layer-store-max", 0, &o.layer_store_max_bytes,
          "Unpacked layers kept, e.g. 50G (least recently used are evicted; default: no limit)");
  // The sandbox: entitlements this worker permits, limits, no_new_privs (the same settings as
  // $FARM_HOME/sandbox.conf for farm build).
  farm::worker::RegisterSandboxFlags(&fs, &sandbox);
  fs.String("cache-instance", 0, &o.cache_instance,
            "Instance name for farm-cache CAS calls (the CAS is shared by all instances)", "NAME");
  fs.String("platform", 0, &o.platform,
            "Native platform to report (default: this host's). Another one runs under QEMU "
            "user emulation if binfmt_misc has it, or fails: for testing placement",
            "OS/ARCH");
  std::string emulate = "none";
  fs.String("emulate", 0, &emulate,
            "Also run these platforms under QEMU user emulation (binfmt_misc, e.g. Debian's "
            "qemu-user-static): a comma list, or auto for every one registered here, or none "
            "(default). The scheduler sends a platform's steps here only while no worker runs "
            "it natively (emulation is 5-10x slower)",
            "PLATFORMS");
  // --tls-ca, --tls-cert/--tls-key (the worker certificate: workers/ID.crt), --tls,
  // --token-file (unused by workers: they are their certificate), --insecure.
  farm::auth::RegisterClientFlags(&fs, "", &o.security);
  namespace ops = farm::common::ops;
  namespace logging = farm::common::logging;
  ops::OpsFlags ops_flags;
  ops::RegisterOpsFlags(&fs, &ops_flags);
  auto positionals = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!positionals.ok()) return Fail(std::string(positionals.status().message()), 2);
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (!positionals->empty()) {
    return Fail(absl::StrCat("unexpected argument \"", (*positionals)[0], "\""), 2);
  }
  if (o.scheduler.empty()) return Fail("--scheduler is required", 2);
  if (o.cache.empty()) return Fail("--cache is required", 2);
  if (o.state_dir.empty()) return Fail("--dir is required", 2);
  if (slots < 1 || slots > 1024) return Fail("--slots must be from 1 to 1024", 2);
  o.slots = static_cast<int>(slots);
  if (o.context_cache_max_bytes != 0 && o.context_cache_max_bytes < (int64_t{32} << 20)) {
    return Fail("--context-cache-max must be 0 (off) or at least 32M", 2);
  }
  if (fs.WasSet("layer-store-max") && o.layer_store_max_bytes <= 0) {
    return Fail("--layer-store-max must be positive", 2);
  }
  o.limits = sandbox.limits;
  o.policy = sandbox.policy;
  for (const std::string& l : labels) {
    size_t eq = l.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Fail(absl::StrCat("--label \"", l, "\": want KEY=VALUE"), 2);
    }
    o.labels[l.substr(0, eq)] = l.substr(eq + 1);
  }
  for (const auto& [what, address] :
       {std::pair<const char*, std::string>{"--scheduler", o.scheduler}, {"--cache", o.cache}}) {
    auto parsed = farm::worker::agent::ParsePeerAddress(what, address);
    if (!parsed.ok()) return Fail(std::string(parsed.status().message()), 2);
  }
  // Every platform asked for must run here: an error naming it, never a silent drop.
  auto emulated = farm::worker::ResolveEmulation(
      emulate, o.platform.empty() ? farm::oci::Platform::Host().String()
                                  : farm::oci::NormalizePlatform(o.platform));
  if (!emulated.ok()) {
    return Fail(std::string(emulated.status().message()),
                absl::IsInvalidArgument(emulated.status()) ? 2 : 1);
  }
  o.emulated_platforms = *std::move(emulated);
  if (geteuid() != 0) {
    return Fail("must run as root (steps run in Linux namespaces on overlayfs)");
  }

  // Block the stop signals before any thread starts, so only sigwait below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  const logging::Logger log = ops::MakeLogger("farm-worker", ops_flags);
  logging::InstallGrpcLogger(log);
  auto fatal = [&log](const absl::Status& s) {
    log.Error(s.message());
    return 1;
  };
  // The agent's lines carry the worker id (known once it has read its state directory) and
  // the task ids they name (line_fields.h). Its threads start in Start(), after the id is set.
  auto agent_log =
      std::make_shared<std::function<void(absl::string_view)>>(logging::FieldedLineFunc(log));
  o.log = [agent_log](const std::string& line) { (*agent_log)(line); };
  farm::common::metrics::Registry registry;
  auto worker_metrics = farm::worker::agent::WorkerMetrics::Create(&registry);
  if (!worker_metrics.ok()) return fatal(worker_metrics.status());
  o.on_step_done = (*worker_metrics)->StepObserver();
  const int slot_count = o.slots;

  auto agent = farm::worker::agent::Agent::Create(std::move(o));
  if (!agent.ok()) return fatal(agent.status());
  const logging::Logger worker_log = log.With({{"worker", (*agent)->worker_id()}});
  *agent_log = logging::FieldedLineFunc(worker_log);
  logging::InstallGrpcLogger(worker_log);
  if (absl::Status s = (*worker_metrics)->ObserveAgent(agent->get(), slot_count); !s.ok())
    return fatal(s);
  farm::common::http::ReadinessChecks ready;
  farm::worker::agent::AddSchedulerReadiness(&ready, agent->get());
  auto http = ops::StartMetricsServer(ops_flags, &registry, &ready, worker_log);
  if (!http.ok()) return fatal(http.status());
  if (*http != nullptr) {
    std::cout << "farm-worker: metrics on " << (*http)->address() << std::endl;
    worker_log.Info("serving /metrics, /healthz, /readyz", {{"address", (*http)->address()}});
  }
  (*agent)->Start();
  int sig = 0;
  sigwait(&stop, &sig);
  constexpr absl::Duration kGrace = absl::Seconds(10);
  // A step that cannot be killed (a hung mount, a stuck download) must not keep us forever.
  std::thread watchdog([] {
    absl::SleepFor(kGrace + absl::Seconds(20));
    fprintf(stderr, "farm-worker: shutdown is taking too long; exiting\n");  // no allocation
    _exit(1);
  });
  watchdog.detach();
  worker_log.Info(sig == SIGINT ? "SIGINT" : "SIGTERM");
  // The metrics read the agent: stop serving them before it goes.
  if (*http != nullptr) (*http)->Shutdown();
  (*agent)->Shutdown(kGrace);
  agent->reset();
  return 0;
}
