// farm-scheduler's command line: its flags, their defaults and their validation, giving the
// options main.cc wires into the dispatcher and the build manager. Parsing does no I/O (the
// listen address and the state directory are checked by main when it uses them).
//
//   absl::StatusOr<ParsedFlags> f = ParseFlags({argv + 1, argv + argc});
//   if (!f.ok()) { std::cerr << "farm-scheduler: " << f.status().message(); return 2; }
//   if (!f->help.empty()) { std::cout << f->help; return 0; }
//   const SchedulerOptions& o = f->options;  // o.cache, o.dir, o.lease_timeout, ...
#ifndef FARM_SCHEDULER_SERVER_FLAGS_H_
#define FARM_SCHEDULER_SERVER_FLAGS_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "auth/grpc_auth.h"
#include "common/ops/ops.h"

namespace farm::scheduler::server {

// What the flags say, validated. The defaults are the flags' defaults.
struct SchedulerOptions {
  std::string listen = "127.0.0.1:9091";    // --listen: clients and workers
  std::string cache;                        // --cache: farm-cache HOST:PORT (required)
  std::string advertise_cache;              // --advertise-cache, or --cache when not given
  std::string dir;                          // --dir: state directory (required)
  int max_active_builds = 32;               // >= 1
  int max_queued_builds = 10000;            // >= 0
  int max_queued_builds_per_tenant = 1000;  // >= 0; 0 = only the global limit
  int64_t max_step_log_bytes = 4 << 20;     // --max-step-log: output kept per step; 0 = all
  absl::Duration default_step_timeout = absl::Hours(6);  // --step-timeout; 0 = none
  int max_queued_tasks = 100000;                         // >= 1
  // --max-worker-send-queue, --max-worker-send-queue-messages: what may wait to be written to
  // one worker; past it the worker's stream ends with RESOURCE_EXHAUSTED. 0 = unbounded.
  int64_t max_worker_send_queue_bytes = int64_t{64} << 20;
  int64_t max_worker_send_queue_messages = 16384;
  int max_attempts = 3;                                  // >= 1
  absl::Duration heartbeat_interval = absl::Seconds(5);  // > 0
  absl::Duration lease_timeout = absl::Seconds(30);      // > heartbeat_interval
  absl::Duration locality_wait = absl::Milliseconds(500);
  absl::Duration restart_grace = absl::Minutes(10);
  std::map<std::string, double> tenant_weights;  // --tenant-weight TENANT=WEIGHT, each > 0
  std::vector<std::string> insecure_registries;  // --insecure-registry HOST:PORT
  std::string docker_config_dir;                 // --docker-config ("" = ~/.docker)
  // --tenant-docker-config TENANT=DIR: that tenant's registry credentials (only those).
  std::map<std::string, std::string> tenant_docker_config_dirs;
  // --shared-registry-push: tenants without their own credentials push with
  // --docker-config's (always so on a farm without authentication, where all are trusted).
  bool shared_registry_push = false;
  // --queue-unserved-platforms: accept builds for platforms no known worker runs (they wait).
  bool queue_unserved_platforms = false;
  std::set<std::string> permitted_entitlements;  // --allow-entitlement NAME (known names)
  // auth/flags.h: --tls-cert, --tls-key, --tls-client-ca (client certificates optional:
  // workers present them, clients carry tokens), --worker-ca, --token-keys, --insecure.
  auth::ServerAuthOptions security;
  // Dialing farm-cache: --cache-tls-ca, --cache-tls-cert/--cache-tls-key, --cache-token-file.
  auth::ClientAuthOptions cache_security;
  // --metrics-listen, --log-format (common/ops/ops.h).
  common::ops::OpsFlags ops;
};

struct ParsedFlags {
  std::string help;  // non-empty when -h/--help was given: print it, exit 0 (options unset)
  SchedulerOptions options;
};

// Parses the arguments after the program name. Errors are INVALID_ARGUMENT with a message
// that names the flag (farm-scheduler prints it and exits 2): an unknown flag or a bad value,
// a positional argument, a missing --cache or --dir, a limit below its minimum, a duration
// that is not one, --lease-timeout not longer than --heartbeat-interval, a tenant weight that
// is not a positive number.
absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>& args);

// A duration flag's value: seconds ("30", "1.5") or a Go-style duration ("500ms", "2m",
// "1h30m"); not negative. The error names `flag`.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view value);

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_FLAGS_H_
