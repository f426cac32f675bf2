#include "scheduler/server/flags.h"

#include <cstdint>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "auth/flags.h"
#include "common/flags.h"
#include "executor/entitlements.h"

namespace farm::scheduler::server {

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view v) {
  double seconds;
  if (absl::SimpleAtod(v, &seconds) && seconds >= 0) return absl::Seconds(seconds);
  absl::Duration d;
  if (absl::ParseDuration(v, &d) && d >= absl::ZeroDuration()) return d;
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, " ", v, ": want a duration such as 30, 30s, 500ms or 2m"));
}

absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<std::string>& args) {
  ParsedFlags out;
  SchedulerOptions& o = out.options;
  const SchedulerOptions defaults;
  int64_t max_active = defaults.max_active_builds, max_queued = defaults.max_queued_builds,
          max_queued_tasks = defaults.max_queued_tasks, max_attempts = defaults.max_attempts;
  std::string heartbeat = "5s", lease_timeout = "30s", locality_wait = "500ms";
  std::string restart_grace = "10m";
  std::vector<std::string> tenant_weights;
  common::FlagSet fs(
      "farm-scheduler --cache HOST:PORT --dir DIR [--listen HOST:PORT] [OPTIONS]",
      "Farm's scheduler: accepts builds from `farm submit`, plans them, runs their steps on the\n"
      "farm-workers connected to it (they dial in; it never dials them), and keeps builds, the\n"
      "queue and leases in DIR so that a restart loses nothing. Stop it with SIGTERM or SIGINT.");
  fs.String("listen", 0, &o.listen,
            "Address for clients and workers (port 0 picks a free one; the bound address is "
            "printed)",
            "HOST:PORT");
  fs.String("cache", 0, &o.cache, "farm-cache: the action cache and CAS builds use", "HOST:PORT");
  fs.String("advertise-cache", 0, &o.advertise_cache,
            "The farm-cache address clients upload contexts to (default: --cache)", "HOST:PORT");
  fs.String("dir", 0, &o.dir, "State directory (created if missing)", "DIR");
  fs.Int("max-active-builds", 0, &max_active, "Builds planned and running at once");
  fs.Int("max-queued-builds", 0, &max_queued,
         "Builds waiting to start; more are refused with RESOURCE_EXHAUSTED");
  fs.Int("max-queued-tasks", 0, &max_queued_tasks, "Steps waiting for a worker");
  int64_t max_per_tenant = defaults.max_queued_builds_per_tenant;
  fs.Int("max-queued-builds-per-tenant", 0, &max_per_tenant,
         "Builds one tenant may have waiting; more are refused with RESOURCE_EXHAUSTED (0: only "
         "--max-queued-builds)");
  fs.Size("max-step-log", 0, &o.max_step_log_bytes,
          "Output kept per step (the rest is dropped after a notice, as BuildKit clips); 0: all");
  fs.Size("max-worker-send-queue", 0, &o.max_worker_send_queue_bytes,
          "Messages waiting to be written to one worker, in bytes; a worker that stops reading "
          "past it loses its stream with RESOURCE_EXHAUSTED and its steps run elsewhere; 0: no "
          "bound");
  fs.Int("max-worker-send-queue-messages", 0, &o.max_worker_send_queue_messages,
         "The same bound in messages; 0: no bound");
  std::string step_timeout = "6h";
  fs.String("step-timeout", 0, &step_timeout,
            "Timeout of RUN steps that set none (they are killed and the build fails); 0: none",
            "DURATION");
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
  fs.Repeated("insecure-registry", 0, &o.insecure_registries,
              "Registry (host:port) reachable over plain HTTP (repeatable)", "HOST:PORT");
  fs.String("docker-config", 0, &o.docker_config_dir,
            "Directory with config.json holding the farm's registry credentials (default: "
            "~/.docker): for pulls, and for pushes only with --shared-registry-push",
            "DIR");
  std::vector<std::string> tenant_docker_configs;
  fs.Repeated("tenant-docker-config", 0, &tenant_docker_configs,
              "A tenant's own registry credentials (config.json in DIR): its pulls and pushes "
              "use these and never --docker-config's (repeatable)",
              "TENANT=DIR");
  fs.Bool("shared-registry-push", 0, &o.shared_registry_push,
          "Let tenants without --tenant-docker-config push with --docker-config's credentials "
          "(default: they push anonymously; always allowed without authentication)");
  fs.Bool("queue-unserved-platforms", 0, &o.queue_unserved_platforms,
          "Queue builds for a platform none of the known workers runs, until one connects (a "
          "fleet that scales each platform's workers from zero); default: refuse them at once");
  std::vector<std::string> entitlements;
  fs.Repeated("allow-entitlement", 0, &entitlements,
              "Permit an entitlement to builds that ask for it (farm submit --allow NAME; "
              "repeatable): network.host, security.insecure. Workers must permit it too",
              "NAME");

  auth::RegisterServerFlags(&fs, &o.security);
  common::ops::RegisterOpsFlags(&fs, &o.ops);
  auth::RegisterClientFlags(&fs, "cache-", &o.cache_security, /*register_insecure=*/false);
  o.security.tls.client_certs = auth::TlsServerOptions::ClientCerts::kOptional;

  absl::StatusOr<std::vector<std::string>> positionals = fs.Parse(args);
  if (!positionals.ok()) return absl::InvalidArgumentError(positionals.status().message());
  if (fs.help_requested()) {
    out.help = fs.Help();
    return out;
  }
  if (!positionals->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected argument \"", (*positionals)[0], "\""));
  }
  if (o.cache.empty()) {
    return absl::InvalidArgumentError("--cache is required (farm-cache's HOST:PORT)");
  }
  if (o.dir.empty()) return absl::InvalidArgumentError("--dir is required");
  if (max_active < 1 || max_queued < 0 || max_queued_tasks < 1 || max_attempts < 1) {
    return absl::InvalidArgumentError(
        "--max-active-builds, --max-queued-tasks and --max-attempts must be at least 1, "
        "--max-queued-builds not negative");
  }
  for (auto [flag, text, duration] :
       {std::make_tuple("heartbeat-interval", &heartbeat, &o.heartbeat_interval),
        std::make_tuple("lease-timeout", &lease_timeout, &o.lease_timeout),
        std::make_tuple("locality-wait", &locality_wait, &o.locality_wait),
        std::make_tuple("restart-grace", &restart_grace, &o.restart_grace),
        std::make_tuple("step-timeout", &step_timeout, &o.default_step_timeout)}) {
    absl::StatusOr<absl::Duration> d = ParseDurationFlag(flag, *text);
    if (!d.ok()) return d.status();
    *duration = *d;
  }
  if (o.heartbeat_interval <= absl::ZeroDuration() || o.lease_timeout <= o.heartbeat_interval) {
    return absl::InvalidArgumentError(
        "--lease-timeout must be longer than --heartbeat-interval (and both positive)");
  }
  for (const std::string& tw : tenant_weights) {
    std::pair<std::string, std::string> kv = absl::StrSplit(tw, absl::MaxSplits('=', 1));
    double w;
    if (kv.first.empty() && kv.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenant-weight ", tw, ": want TENANT=WEIGHT"));
    }
    if (!absl::SimpleAtod(kv.second, &w) || w <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenant-weight ", tw, ": the weight must be a positive number"));
    }
    o.tenant_weights[kv.first] = w;
  }
  for (const std::string& tc : tenant_docker_configs) {
    std::pair<std::string, std::string> kv = absl::StrSplit(tc, absl::MaxSplits('=', 1));
    if (kv.first.empty() || kv.second.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenant-docker-config ", tc, ": want TENANT=DIR"));
    }
    if (!o.tenant_docker_config_dirs.emplace(kv.first, kv.second).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenant-docker-config: tenant ", kv.first, " is given twice"));
    }
  }
  for (const std::string& e : entitlements) {
    absl::Status s = executor::CheckEntitlementName(e, "--allow-entitlement");
    if (!s.ok()) return s;
    o.permitted_entitlements.insert(e);
  }
  o.max_active_builds = static_cast<int>(max_active);
  o.max_queued_builds = static_cast<int>(max_queued);
  o.max_queued_tasks = static_cast<int>(max_queued_tasks);
  o.max_attempts = static_cast<int>(max_attempts);
  if (max_per_tenant < 0 || o.max_step_log_bytes < 0 || o.max_worker_send_queue_bytes < 0 ||
      o.max_worker_send_queue_messages < 0) {
    return absl::InvalidArgumentError(
        "--max-queued-builds-per-tenant, --max-step-log, --max-worker-send-queue and "
        "--max-worker-send-queue-messages must not be negative");
  }
  o.max_queued_builds_per_tenant = static_cast<int>(max_per_tenant);
  if (o.advertise_cache.empty()) o.advertise_cache = o.cache;
  o.cache_security.insecure = o.security.insecure;
  return out;
}

}  // namespace farm::scheduler::server
