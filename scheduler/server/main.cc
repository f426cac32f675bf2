// farm-scheduler: the farm's scheduler. Flags and wiring only: builds are BuildManager's
// (build_manager.h), steps the Dispatcher's (scheduler/dispatch/dispatcher.h); clients speak
// farm.v1.Scheduler and workers farm.v1.WorkerHub, both on --listen.
#include <grpc/support/log.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "cache/client/grpc_action_cache.h"
#include "cache/client/grpc_blob_store.h"
#include "common/flags.h"
#include "common/fs.h"
#include "common/listen.h"
#include "executor/entitlements.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/remote_step_executor.h"
#include "scheduler/server/build_manager.h"
#include "scheduler/server/scheduler_service.h"
#include "scheduler/server/verifying_executor.h"

namespace {

absl::Mutex g_log_mu;

void LogLine(absl::string_view line) {
  absl::MutexLock l(&g_log_mu);
  std::cerr << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
            << " farm-scheduler: " << line << std::endl;
}

int Fail(const std::string& message, int code = 1) {
  std::cerr << "farm-scheduler: " << message << std::endl;
  return code;
}

void GrpcLog(gpr_log_func_args* args) {
  if (args->severity < GPR_LOG_SEVERITY_ERROR) return;
  LogLine(absl::StrCat("grpc: ", args->message));
}

// "30" (seconds), "500ms", "2s", "1m".
absl::StatusOr<absl::Duration> ParseDurationFlag(const std::string& flag, const std::string& v) {
  double seconds;
  if (absl::SimpleAtod(v, &seconds) && seconds >= 0) return absl::Seconds(seconds);
  absl::Duration d;
  if (absl::ParseDuration(v, &d) && d >= absl::ZeroDuration()) return d;
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " ", v, ": want a duration such as 30, 30s, 500ms or 2m"));
}

// Reports farm-cache becoming unreachable and reachable again (the scheduler keeps running
// either way: builds fail their cache calls while it is down, after the clients' retries).
class CacheWatch {
 public:
  CacheWatch(std::string address, std::shared_ptr<grpc::Channel> channel)
      : address_(std::move(address)), channel_(std::move(channel)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~CacheWatch() {
    stop_.Notify();
    thread_.join();
  }

 private:
  void Run() {
    bool up = true;
    bool first = true;
    while (!stop_.HasBeenNotified()) {
      // Up to 5 s to connect, in short waits so that shutdown is not held up.
      bool now = false;
      absl::Time deadline = absl::Now() + absl::Seconds(5);
      while (!now && !stop_.HasBeenNotified() && absl::Now() < deadline) {
        now = channel_->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Milliseconds(200)));
      }
      if (stop_.HasBeenNotified()) break;
      if (now != up || (first && !now)) {
        LogLine(now ? absl::StrCat("farm-cache at ", address_, " is reachable")
                    : absl::StrCat("farm-cache at ", address_,
                                   " is unreachable; builds wait for it (retrying)"));
      }
      up = now;
      first = false;
      stop_.WaitForNotificationWithTimeout(absl::Seconds(up ? 10 : 2));
    }
  }
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:9091";
  std::string cache, advertise_cache, dir;
  int64_t max_active = 32, max_queued = 10000, max_queued_tasks = 100000, max_attempts = 3;
  std::string heartbeat = "5s", lease_timeout = "30s", locality_wait = "500ms";
  std::string restart_grace = "10m";
  std::vector<std::string> tenant_weights, insecure;
  std::string docker_config;
  std::vector<std::string> entitlements;
  farm::common::FlagSet fs(
      "farm-scheduler --cache HOST:PORT --dir DIR [--listen HOST:PORT] [OPTIONS]",
      "Farm's scheduler: accepts builds from `farm submit`, plans them, runs their steps on the\n"
      "farm-workers connected to it (they dial in; it never dials them), and keeps builds, the\n"
      "queue and leases in DIR so that a restart loses nothing. Stop it with SIGTERM or SIGINT.");
  fs.String("listen", 0, &listen,
            "Address for clients and workers (port 0 picks a free one; the bound address is "
            "printed)",
            "HOST:PORT");
  fs.String("cache", 0, &cache, "farm-cache: the action cache and CAS builds use", "HOST:PORT");
  fs.String("advertise-cache", 0, &advertise_cache,
            "The farm-cache address clients upload contexts to (default: --cache)", "HOST:PORT");
  fs.String("dir", 0, &dir, "State directory (created if missing)", "DIR");
  fs.Int("max-active-builds", 0, &max_active, "Builds planned and running at once");
  fs.Int("max-queued-builds", 0, &max_queued,
         "Builds waiting to start; more are refused with RESOURCE_EXHAUSTED");
  fs.Int("max-queued-tasks", 0, &max_queued_tasks, "Steps waiting for a worker");
  fs.Int("max-attempts", 0, &max_attempts,
         "Leases a step may lose (its worker died or went silent) before its build fails");
  fs.String("heartbeat-interval", 0, &heartbeat, "How often workers heartbeat", "DURATION");
  fs.String("lease-timeout", 0, &lease_timeout,
            "A worker silent this long loses its steps (they run elsewhere)", "DURATION");
  fs.String("locality-wait", 0, &locality_wait,
            "How long a step may wait for a busy worker that holds its parent layers", "DURATION");
  fs.String("restart-grace", 0, &restart_grace,
            "After a restart, how long running steps wait for their builds to resume", "DURATION");
  fs.Repeated("tenant-weight", 0, &tenant_weights,
              "A tenant's fair-share weight (default 1; repeatable)", "TENANT=WEIGHT");
  fs.Repeated("insecure-registry", 0, &insecure,
              "Registry (host:port) reachable over plain HTTP (repeatable)", "HOST:PORT");
  fs.String("docker-config", 0, &docker_config,
            "Directory with config.json holding registry credentials (default: ~/.docker)", "DIR");
  fs.Repeated("allow-entitlement", 0, &entitlements,
              "Permit an entitlement to builds that ask for it (farm submit --allow NAME; "
              "repeatable): network.host, security.insecure. Workers must permit it too",
              "NAME");
  auto positionals = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!positionals.ok()) return Fail(std::string(positionals.status().message()), 2);
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (!positionals->empty()) {
    return Fail(absl::StrCat("unexpected argument \"", (*positionals)[0], "\""), 2);
  }
  if (cache.empty()) return Fail("--cache is required (farm-cache's HOST:PORT)", 2);
  if (dir.empty()) return Fail("--dir is required", 2);
  if (max_active < 1 || max_queued < 0 || max_queued_tasks < 1 || max_attempts < 1) {
    return Fail(
        "--max-active-builds, --max-queued-tasks and --max-attempts must be at least 1, "
        "--max-queued-builds not negative",
        2);
  }
  farm::scheduler::dispatch::Options dopt;
  for (auto [flag, text, out] :
       {std::make_tuple("heartbeat-interval", &heartbeat, &dopt.heartbeat_interval),
        std::make_tuple("lease-timeout", &lease_timeout, &dopt.lease_timeout),
        std::make_tuple("locality-wait", &locality_wait, &dopt.locality_wait),
        std::make_tuple("restart-grace", &restart_grace, &dopt.restart_grace)}) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(flag, *text);
    if (!d.ok()) return Fail(std::string(d.status().message()), 2);
    *out = *d;
  }
  if (dopt.heartbeat_interval <= absl::ZeroDuration() ||
      dopt.lease_timeout <= dopt.heartbeat_interval) {
    return Fail("--lease-timeout must be longer than --heartbeat-interval (and both positive)", 2);
  }
  for (const std::string& tw : tenant_weights) {
    std::pair<std::string, std::string> kv = absl::StrSplit(tw, absl::MaxSplits('=', 1));
    double w;
    if (kv.first.empty() && kv.second.empty()) {
      return Fail(absl::StrCat("--tenant-weight ", tw, ": want TENANT=WEIGHT"), 2);
    }
    if (!absl::SimpleAtod(kv.second, &w) || w <= 0) {
      return Fail(absl::StrCat("--tenant-weight ", tw, ": the weight must be a positive number"),
                  2);
    }
    dopt.tenant_weights[kv.first] = w;
  }
  dopt.max_attempts = static_cast<int>(max_attempts);
  dopt.max_queued_tasks = static_cast<int>(max_queued_tasks);
  dopt.state_dir = farm::common::JoinPath(dir, "dispatch");
  dopt.event_log = [](absl::string_view line) { LogLine(line); };

  if (absl::Status s = farm::common::ProbeListenAddress(listen); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  gpr_set_log_function(GrpcLog);
  if (absl::Status s = farm::common::MakeDirs(dir, 0700); !s.ok())
    return Fail(std::string(s.message()));

  // farm-cache: one channel for the CAS and the action cache.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      farm::cache::client::NewCacheChannel(cache);
  if (!channel.ok()) return Fail(std::string(channel.status().message()), 2);
  auto cas = std::make_shared<farm::cache::client::GrpcBlobStore>(
      *channel, farm::cache::client::GrpcBlobStore::Options());
  auto ac = std::make_shared<farm::cache::client::GrpcActionCache>(
      *channel, farm::cache::client::GrpcActionCache::Options());
  CacheWatch watch(cache, *channel);

  absl::StatusOr<std::unique_ptr<farm::scheduler::dispatch::Dispatcher>> dispatcher =
      farm::scheduler::dispatch::Dispatcher::Create(dopt);
  if (!dispatcher.ok()) return Fail(std::string(dispatcher.status().message()));
  farm::scheduler::dispatch::Dispatcher* d = dispatcher->get();

  farm::scheduler::server::BuildManager::Options mopt;
  mopt.state_dir = dir;
  mopt.cas = cas;
  mopt.ac = ac;
  mopt.executors = [d, cas](const farm::scheduler::server::BuildSpec& spec) {
    farm::scheduler::dispatch::RemoteBuild rb;
    rb.build_id = spec.build_id;
    rb.tenant = spec.tenant;
    rb.priority = spec.priority;
    rb.secrets = spec.secrets;
    rb.cache_instance = spec.cache_instance;
    return std::make_shared<farm::scheduler::server::VerifyingExecutor>(
        std::make_shared<farm::scheduler::dispatch::RemoteStepExecutor>(d, std::move(rb)), cas);
  };
  mopt.max_active_builds = static_cast<int>(max_active);
  mopt.max_queued_builds = static_cast<int>(max_queued);
  mopt.insecure_registries = insecure;
  for (const std::string& e : entitlements) {
    if (absl::Status s = farm::executor::CheckEntitlementName(e, "--allow-entitlement"); !s.ok()) {
      return Fail(std::string(s.message()), 2);
    }
    mopt.permitted_entitlements.insert(e);
  }
  mopt.docker_config_dir = docker_config;
  mopt.cache_address = advertise_cache.empty() ? cache : advertise_cache;
  mopt.worker_count = [d] { return static_cast<int>(d->Stats().workers_connected); };
  mopt.log = [](const std::string& line) { LogLine(line); };
  absl::StatusOr<std::unique_ptr<farm::scheduler::server::BuildManager>> manager =
      farm::scheduler::server::BuildManager::Create(std::move(mopt));
  if (!manager.ok()) return Fail(std::string(manager.status().message()));

  farm::scheduler::server::SchedulerService service(manager->get(), [d] { return d->Workers(); });
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(64 << 20);
  // Keep worker and client streams alive through idle NAT/firewall state.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.RegisterService(&service);
  builder.RegisterService(d->service());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  std::string bound = listen.substr(0, listen.rfind(':') + 1) + std::to_string(port);
  std::cout << "farm-scheduler: listening on " << bound << " (cache " << cache << ", dir " << dir
            << ")" << std::endl;

  int sig = 0;
  sigwait(&stop, &sig);
  LogLine(absl::StrCat(sig == SIGINT ? "SIGINT" : "SIGTERM",
                       ", shutting down (running builds resume at the next start)"));
  // Builds first stop counting failures as theirs, then the dispatcher lets go of its callers
  // (their tasks stay persisted, workers keep running them), then the builds stop.
  (*manager)->StopAdmitting();
  d->Shutdown();
  (*manager)->Shutdown();
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  server.reset();
  manager->reset();
  dispatcher->reset();
  return 0;
}
