// farm-scheduler: the farm's scheduler. Flags and wiring only: builds are BuildManager's
// (build_manager.h), steps the Dispatcher's (scheduler/dispatch/dispatcher.h); clients speak
// farm.v1.Scheduler and workers farm.v1.WorkerHub, both on --listen.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "auth/flags.h"
#include "cache/client/grpc_action_cache.h"
#include "cache/client/grpc_blob_store.h"
#include "common/fs.h"
#include "common/grpc_health/health.h"
#include "common/listen.h"
#include "common/logging/grpc_log.h"
#include "common/logging/line_fields.h"
#include "common/metrics/grpc_server_metrics.h"
#include "common/ops/ops.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/remote_step_executor.h"
#include "scheduler/server/build_manager.h"
#include "scheduler/server/cache_watch.h"
#include "scheduler/server/flags.h"
#include "scheduler/server/ops.h"
#include "scheduler/server/scheduler_service.h"
#include "scheduler/server/status_page.h"
#include "scheduler/server/verifying_executor.h"

namespace {

int Fail(const std::string& message, int code = 1) {
  std::cerr << "farm-scheduler: " << message << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<farm::scheduler::server::ParsedFlags> flags =
      farm::scheduler::server::ParseFlags(std::vector<std::string>(argv + 1, argv + argc));
  if (!flags.ok()) return Fail(std::string(flags.status().message()), 2);
  if (!flags->help.empty()) {
    std::cout << flags->help;
    return 0;
  }
  const farm::scheduler::server::SchedulerOptions& opt = flags->options;
  const std::string& listen = opt.listen;
  const std::string& cache = opt.cache;
  const std::string& dir = opt.dir;
  namespace logging = farm::common::logging;
  namespace metrics = farm::common::metrics;
  // Every line, the components' too, through one logger (--log-format); the ids a line names
  // (build, worker, task) become fields (line_fields.h).
  const logging::Logger log = farm::common::ops::MakeLogger("farm-scheduler", opt.ops);
  const std::function<void(absl::string_view)> log_line = logging::FieldedLineFunc(log);
  auto fatal = [&log](const absl::Status& s) {
    log.Error(s.message());
    return 1;
  };
  metrics::Registry registry;
  absl::StatusOr<std::unique_ptr<farm::scheduler::server::SchedulerMetrics>> sched_metrics =
      farm::scheduler::server::SchedulerMetrics::Create(&registry);
  if (!sched_metrics.ok()) return Fail(std::string(sched_metrics.status().message()));

  farm::scheduler::dispatch::Options dopt;
  dopt.heartbeat_interval = opt.heartbeat_interval;
  dopt.lease_timeout = opt.lease_timeout;
  dopt.locality_wait = opt.locality_wait;
  dopt.restart_grace = opt.restart_grace;
  dopt.tenant_weights = opt.tenant_weights;
  dopt.max_attempts = opt.max_attempts;
  dopt.max_queued_tasks = opt.max_queued_tasks;
  dopt.max_send_queue_bytes = opt.max_worker_send_queue_bytes;
  dopt.max_send_queue_messages = opt.max_worker_send_queue_messages;
  dopt.state_dir = farm::common::JoinPath(dir, "dispatch");
  dopt.event_log = log_line;
  dopt.on_dispatch = (*sched_metrics)->DispatchObserver();

  if (absl::Status s = farm::common::ProbeListenAddress(listen); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  farm::auth::ServerAuthOptions sec = opt.security;
  sec.authorizer = farm::scheduler::server::SchedulerAuthRules();
  sec.log = log_line;
  std::string auth_warning;
  absl::StatusOr<std::shared_ptr<const farm::auth::ServerAuth>> auth =
      farm::auth::MakeServerAuth(std::move(sec), &auth_warning);
  if (!auth.ok()) return Fail(std::string(auth.status().message()));
  std::shared_ptr<const farm::auth::ServerAuth> server_auth = *auth;
  dopt.worker_identity = [server_auth](const grpc::CallbackServerContext& ctx) {
    return farm::scheduler::server::WorkerIdentityOf(*server_auth, ctx);
  };
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds = server_auth->Credentials(listen);
  if (!creds.ok()) return Fail(std::string(creds.status().message()));
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  logging::InstallGrpcLogger(log);
  if (absl::Status s = farm::common::MakeDirs(dir, 0700); !s.ok()) return fatal(s);

  // farm-cache: one channel for the CAS and the action cache.
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      farm::cache::client::NewCacheChannel(cache, opt.cache_security);
  if (!channel.ok()) return Fail(std::string(channel.status().message()), 2);
  auto cas = std::make_shared<farm::cache::client::GrpcBlobStore>(
      *channel, farm::cache::client::GrpcBlobStore::Options());
  auto ac = std::make_shared<farm::cache::client::GrpcActionCache>(
      *channel, farm::cache::client::GrpcActionCache::Options());
  farm::scheduler::server::CacheWatch watch(
      cache, farm::scheduler::server::CacheWatch::ChannelProbe(*channel),
      [log_line](const std::string& line) { log_line(line); });

  absl::StatusOr<std::unique_ptr<farm::scheduler::dispatch::Dispatcher>> dispatcher =
      farm::scheduler::dispatch::Dispatcher::Create(dopt);
  if (!dispatcher.ok()) return fatal(dispatcher.status());
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
  mopt.max_active_builds = opt.max_active_builds;
  mopt.max_queued_builds = opt.max_queued_builds;
  mopt.max_queued_builds_per_tenant = opt.max_queued_builds_per_tenant;
  mopt.max_step_log_bytes = opt.max_step_log_bytes;
  mopt.default_step_timeout_seconds = absl::ToInt64Seconds(opt.default_step_timeout);
  mopt.insecure_registries = opt.insecure_registries;
  mopt.docker_config_dir = opt.docker_config_dir;
  mopt.tenant_docker_config_dirs = opt.tenant_docker_config_dirs;
  // Without authentication every caller is the same anonymous tenant and trusted anyway.
  mopt.shared_registry_push = opt.shared_registry_push || server_auth->allows_all();
  mopt.permitted_entitlements = opt.permitted_entitlements;
  // Secret values enter step keys only as HMACs under this key (every scheduler of a farm
  // that shares a cache should share the file).
  absl::StatusOr<std::unique_ptr<farm::auth::SecretKey>> secret_key =
      farm::auth::SecretKey::LoadOrCreate(farm::common::JoinPath(dir, "secret.key"));
  if (!secret_key.ok()) return fatal(secret_key.status());
  mopt.secret_key = *std::move(secret_key);
  mopt.cache_address = opt.advertise_cache;
  mopt.worker_count = [d] { return static_cast<int>(d->Stats().workers_connected); };
  if (!opt.queue_unserved_platforms) mopt.workers = [d] { return d->Workers(); };
  mopt.log = [log_line](const std::string& line) { log_line(line); };
  mopt.on_finished = (*sched_metrics)->BuildObserver();
  absl::StatusOr<std::unique_ptr<farm::scheduler::server::BuildManager>> manager =
      farm::scheduler::server::BuildManager::Create(std::move(mopt));
  if (!manager.ok()) return fatal(manager.status());

  // Metrics, readiness (farm-cache reachable) and health (issue 16).
  if (absl::Status s = (*sched_metrics)->ObserveDispatcher(d); !s.ok()) return fatal(s);
  farm::common::http::ReadinessChecks ready;
  farm::scheduler::server::AddCacheReadiness(&ready, &watch);
  const std::vector<std::string> services = {"farm.v1.Scheduler", "farm.v1.WorkerHub"};
  metrics::GrpcServerMetrics::Options gmo;
  gmo.services = services;
  gmo.services.push_back("grpc.health.v1.Health");

  farm::scheduler::server::SchedulerService service(
      manager->get(), [d] { return d->Workers(); }, server_auth);
  grpc::ServerBuilder builder;
  farm::common::grpc_health::EnableHealthService(builder);
  if (absl::Status s = metrics::GrpcServerMetrics::Install(builder, &registry, gmo); !s.ok())
    return fatal(s);
  int port = 0;
  builder.AddListeningPort(listen, *creds, &port);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(64 << 20);
  // Keep worker and client streams alive through idle NAT/firewall state.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.RegisterService(&service);
  builder.RegisterService(d->service());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0)
    return fatal(absl::UnavailableError(absl::StrCat("cannot listen on ", listen)));
  farm::common::grpc_health::HealthPublisher::Options ho;
  ho.ready = [&ready] { return ready.Check(); };
  ho.services = services;
  ho.log = log.LineFunc(logging::Level::kWarning);
  auto health = farm::common::grpc_health::HealthPublisher::Create(server.get(), ho);
  if (!health.ok()) return fatal(health.status());
  // The HTTP server stays here, in main, so that pages (the status page) can be added to it:
  // (*http)->Handle(path, handler) when --metrics-listen was given (*http non-null).
  auto http = farm::common::ops::StartMetricsServer(opt.ops, &registry, &ready, log);
  if (!http.ok()) return fatal(http.status());
  std::string bound = listen.substr(0, listen.rfind(':') + 1) + std::to_string(port);
  std::cout << "farm-scheduler: listening on " << bound << " (cache " << cache << ", dir " << dir
            << ")" << std::endl;
  log.Info("listening", {{"address", bound}, {"cache", cache}, {"dir", dir}});
  if (*http != nullptr) {
    // The status page (status_page.h), behind the API's authentication.
    farm::scheduler::server::StatusSources pages =
        farm::scheduler::server::StatusSourcesFor(manager->get(), d, opt.tenant_weights);
    pages.auth = server_auth;
    if (absl::Status s = farm::scheduler::server::ServeStatusPages(**http, std::move(pages));
        !s.ok()) {
      return fatal(s);
    }
    std::cout << "farm-scheduler: metrics on " << (*http)->address() << std::endl;
    log.Info("serving /metrics, /healthz, /readyz and the status page on /",
             {{"address", (*http)->address()}});
  }
  if (!auth_warning.empty()) log.Warning(auth_warning);

  int sig = 0;
  sigwait(&stop, &sig);
  log.Info(absl::StrCat(sig == SIGINT ? "SIGINT" : "SIGTERM",
                        ", shutting down (running builds resume at the next start)"));
  (*health)->Drain();
  // The metrics read the dispatcher: stop serving them before it goes.
  if (*http != nullptr) (*http)->Shutdown();
  // Builds first stop counting failures as theirs, then the dispatcher lets go of its callers
  // (their tasks stay persisted, workers keep running them), then the builds stop.
  (*manager)->StopAdmitting();
  d->Shutdown();
  (*manager)->Shutdown();
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  health->reset();
  server.reset();
  manager->reset();
  dispatcher->reset();
  return 0;
}
