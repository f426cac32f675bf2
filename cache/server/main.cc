// farm-cache: Farm's cache server. Flags and wiring only; see cache_server.h and ops.h.
#include <signal.h>

#include <iostream>

#include "absl/strings/str_cat.h"
#include "auth/flags.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/server/cache_server.h"
#include "cache/server/ops.h"
#include "common/flags.h"
#include "common/grpc_health/health.h"
#include "common/listen.h"
#include "common/logging/grpc_log.h"
#include "common/logging/line_fields.h"
#include "common/metrics/grpc_server_metrics.h"
#include "common/ops/ops.h"

namespace {

int Fail(const std::string& message, int code = 1) {
  std::cerr << "farm-cache: " << message << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  namespace ops = farm::common::ops;
  namespace logging = farm::common::logging;
  std::string listen = "127.0.0.1:9092";
  std::string dir;
  int64_t max_size = 0;
  std::vector<std::string> fallback_scopes, instance_names;
  farm::common::FlagSet fs(
      "farm-cache --dir DIR [--listen HOST:PORT] [--max-size SIZE]",
      "Serves Farm's cache (CAS + action cache) as REAPI v2 on one port: Bazel\n"
      "can use it with --remote_cache=grpc://HOST:PORT (grpcs:// with --tls-cert).\n"
      "Instance names are action-cache scopes; with --token-keys every call needs a\n"
      "token whose scopes allow it (README, Security). Stop it with SIGTERM or SIGINT.");
  fs.String("listen", 0, &listen,
            "Address to serve on (port 0 picks a free one; the bound address is printed)",
            "HOST:PORT");
  fs.String("dir", 0, &dir, "Cache directory (created if missing)", "DIR");
  fs.Size("max-size", 0, &max_size,
          "Hard ceiling on disk use, e.g. 100G (default: the size the directory was last "
          "opened with, or 10% of its file system)");
  fs.Repeated("fallback-scope", 0, &fallback_scopes,
              "Action-cache scope read after the instance's own (repeatable, in order)", "SCOPE");
  int64_t max_upload = int64_t{16} << 30;
  fs.Size("max-upload-per-client", 0, &max_upload,
          "Bytes one client's uploads in progress may claim (each reserves its size at start); "
          "0: unlimited");
  fs.Repeated("instance-name", 0, &instance_names,
              "Serve only these instance names (repeatable; default: any)", "NAME");
  farm::auth::ServerAuthOptions sec;
  farm::auth::RegisterServerFlags(&fs, &sec);
  ops::OpsFlags ops_flags;
  ops::RegisterOpsFlags(&fs, &ops_flags);
  auto positionals = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!positionals.ok()) return Fail(std::string(positionals.status().message()), 2);
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (!positionals->empty())
    return Fail(absl::StrCat("unexpected argument \"", (*positionals)[0], "\""), 2);
  if (dir.empty()) return Fail("--dir is required", 2);
  if (fs.WasSet("max-size") && max_size <= 0) return Fail("--max-size must be positive", 2);

  if (absl::Status s = farm::common::ProbeListenAddress(listen); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  logging::Logger log = ops::MakeLogger("farm-cache", ops_flags);
  sec.authorizer = farm::cache::server::CacheAuthRules();
  sec.log = logging::FieldedLineFunc(log);
  std::string auth_warning;
  auto auth = farm::auth::MakeServerAuth(std::move(sec), &auth_warning);
  if (!auth.ok()) return Fail(std::string(auth.status().message()));

  // Block the stop signals before any thread starts, so only sigwait below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  logging::InstallGrpcLogger(log);
  auto fatal = [&log](const absl::Status& s) {
    log.Error(s.message());
    return 1;
  };

  farm::cache::RocksDbStoreOptions store_options;
  store_options.dir = dir;
  store_options.max_size = max_size;
  auto store = farm::cache::RocksDbBlobStore::Create(store_options);
  if (!store.ok()) return fatal(store.status());
  std::shared_ptr<farm::cache::RocksDbBlobStore> cas = *std::move(store);
  auto ac = farm::cache::RocksDbActionCache::Create(cas);
  if (!ac.ok()) return fatal(ac.status());

  // Metrics, readiness and health (issue 16).
  farm::common::metrics::Registry registry;
  farm::common::http::ReadinessChecks ready;
  farm::cache::server::AddStoreReadiness(&ready, cas);
  const std::vector<std::string> services = {
      "build.bazel.remote.execution.v2.Capabilities",
      "build.bazel.remote.execution.v2.ContentAddressableStorage",
      "build.bazel.remote.execution.v2.ActionCache", "google.bytestream.ByteStream",
      "farm.v1.CacheAdmin"};
  farm::common::metrics::GrpcServerMetrics::Options mo;
  mo.services = services;
  mo.services.push_back("grpc.health.v1.Health");
  auto interceptor = farm::common::metrics::GrpcServerMetrics::Create(&registry, mo);
  if (!interceptor.ok()) return fatal(interceptor.status());

  farm::cache::server::CacheServerOptions options;
  options.listen = listen;
  options.cas = cas;
  options.action_cache = *std::move(ac);
  options.admin = cas;
  options.fallback_scopes = fallback_scopes;
  options.instance_names = instance_names;
  options.auth = *std::move(auth);
  options.max_upload_claims_per_client = max_upload;
  options.metrics = &registry;
  options.configure = [&interceptor](grpc::ServerBuilder& builder) {
    farm::common::grpc_health::EnableHealthService(builder);
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(*std::move(interceptor));
    builder.experimental().SetInterceptorCreators(std::move(creators));
  };
  auto server = farm::cache::server::CacheServer::Start(std::move(options));
  if (!server.ok()) return fatal(server.status());
  farm::cache::server::CacheMetricsOptions cmo;
  cmo.server_counters = [s = server->get()] { return s->counters(); };
  if (absl::Status s = farm::cache::server::RegisterCacheMetrics(&registry, cas, cmo); !s.ok())
    return fatal(s);
  farm::common::grpc_health::HealthPublisher::Options ho;
  ho.ready = [&ready] { return ready.Check(); };
  ho.services = services;
  ho.log = log.LineFunc(logging::Level::kWarning);
  auto health = farm::common::grpc_health::HealthPublisher::Create((*server)->grpc_server(), ho);
  if (!health.ok()) return fatal(health.status());
  auto http = ops::StartMetricsServer(ops_flags, &registry, &ready, log);
  if (!http.ok()) return fatal(http.status());

  std::cout << "farm-cache: listening on " << (*server)->address() << " (dir " << dir
            << ", max size " << farm::common::HumanSize(cas->max_size()) << ")" << std::endl;
  log.Info("listening",
           {{"address", (*server)->address()}, {"dir", dir}, {"max_size_bytes", cas->max_size()}});
  if (*http != nullptr) {
    std::cout << "farm-cache: metrics on " << (*http)->address() << std::endl;
    log.Info("serving /metrics, /healthz, /readyz", {{"address", (*http)->address()}});
  }
  if (!auth_warning.empty()) log.Warning(auth_warning);
  int sig = 0;
  sigwait(&stop, &sig);
  log.Info(absl::StrCat(sig == SIGINT ? "SIGINT" : "SIGTERM", ", shutting down"));
  (*health)->Drain();
  (*server)->Shutdown(absl::Seconds(5));
  health->reset();
  if (*http != nullptr) (*http)->Shutdown();
  return 0;
}
