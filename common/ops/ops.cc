#include "common/ops/ops.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace farm::common::ops {

void RegisterOpsFlags(FlagSet* fs, OpsFlags* flags) {
  fs->String("metrics-listen", 0, &flags->metrics_listen,
             "Serve Prometheus /metrics, /healthz and /readyz over HTTP here (port 0 picks a "
             "free one; default: off)",
             "HOST:PORT");
  fs->Custom("log-format", 0, "text|json", "Log lines as text (default) or one JSON object each",
             [flags](absl::string_view v) -> absl::Status {
               absl::StatusOr<logging::Format> f = logging::ParseFormat(v);
               if (!f.ok()) {
                 return absl::InvalidArgumentError(
                     absl::StrCat("--log-format ", v, ": want text or json"));
               }
               flags->log_format = *f;
               return absl::OkStatus();
             });
}

logging::Logger MakeLogger(const std::string& component, const OpsFlags& flags) {
  logging::Logger::Options o;
  o.component = component;
  o.format = flags.log_format;
  return logging::Logger(std::move(o));
}

absl::StatusOr<std::unique_ptr<http::HttpServer>> StartMetricsServer(
    const OpsFlags& flags, const metrics::Registry* registry, const http::ReadinessChecks* ready,
    const logging::Logger& log) {
  if (flags.metrics_listen.empty()) return std::unique_ptr<http::HttpServer>();
  http::HttpServer::Options o;
  o.listen = flags.metrics_listen;
  o.log = log.LineFunc(logging::Level::kWarning);
  absl::StatusOr<std::unique_ptr<http::HttpServer>> server = http::HttpServer::Create(o);
  if (!server.ok()) {
    return absl::Status(
        server.status().code(),
        absl::StrCat("--metrics-listen ", flags.metrics_listen, ": ", server.status().message()));
  }
  absl::Status s = http::ServeObservability(**server, registry, ready);
  if (!s.ok()) return s;
  return server;
}

}  // namespace farm::common::ops
