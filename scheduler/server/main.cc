// farm-scheduler: the farm's scheduler. Flags and wiring only: builds are BuildManager's
// (build_manager.h), steps the Dispatcher's (scheduler/dispatch/dispatcher.h); clients speak
// farm.v1.Scheduler and workers farm.v1.WorkerHub, both on --listen.
#include <grpc/support/log.h>
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
#include "common/listen.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/remote_step_executor.h"
#include "scheduler/server/build_manager.h"
#include "scheduler/server/cache_watch.h"
#include "scheduler/server/flags.h"
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
  dopt.event_log = [](absl::string_view line) { LogLine(line); };

  if (absl::Status s = farm::common::ProbeListenAddress(listen); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  farm::auth::ServerAuthOptions sec = opt.security;
  sec.authorizer = farm::scheduler::server::SchedulerAuthRules();
  sec.log = [](absl::string_view line) { LogLine(line); };
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
  gpr_set_log_function(GrpcLog);
  if (absl::Status s = farm::common::MakeDirs(dir, 0700); !s.ok())
    return Fail(std::string(s.message()));

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
      [](const std::string& line) { LogLine(line); });

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
  if (!secret_key.ok()) return Fail(std::string(secret_key.status().message()));
  mopt.secret_key = *std::move(secret_key);
  mopt.cache_address = opt.advertise_cache;
  mopt.worker_count = [d] { return static_cast<int>(d->Stats().workers_connected); };
  mopt.log = [](const std::string& line) { LogLine(line); };
  absl::StatusOr<std::unique_ptr<farm::scheduler::server::BuildManager>> manager =
      farm::scheduler::server::BuildManager::Create(std::move(mopt));
  if (!manager.ok()) return Fail(std::string(manager.status().message()));

  farm::scheduler::server::SchedulerService service(
      manager->get(), [d] { return d->Workers(); }, server_auth);
  grpc::ServerBuilder builder;
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
  if (!server || port == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  std::string bound = listen.substr(0, listen.rfind(':') + 1) + std::to_string(port);
  std::cout << "farm-scheduler: listening on " << bound << " (cache " << cache << ", dir " << dir
            << ")" << std::endl;
  if (!auth_warning.empty()) LogLine(absl::StrCat("WARNING: ", auth_warning));

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
