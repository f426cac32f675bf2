// What every Farm server adds for operators (issue 16): the --metrics-listen and --log-format
// flags, the logger they configure, and the HTTP server with /metrics, /healthz and /readyz.
// The servers' wiring (cache/server, scheduler/server, worker/agent) calls these so that the
// three spell the flags and behave alike.
//
//   common::ops::OpsFlags ops;
//   common::ops::RegisterOpsFlags(&flag_set, &ops);   // --log-format checked while parsing
//   ... parse ...
//   common::logging::Logger log = common::ops::MakeLogger("farm-cache", ops);
//   metrics::Registry registry;  http::ReadinessChecks ready;
//   ASSIGN_OR_RETURN(std::unique_ptr<http::HttpServer> http,
//                    common::ops::StartMetricsServer(ops, &registry, &ready));  // null if off
//   if (http) log.Info("metrics", {{"address", http->address()}});
#ifndef FARM_COMMON_OPS_OPS_H_
#define FARM_COMMON_OPS_OPS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/flags.h"
#include "common/http/http_server.h"
#include "common/http/observability.h"
#include "common/logging/logging.h"
#include "common/metrics/metrics.h"

namespace farm::common::ops {

struct OpsFlags {
  // --metrics-listen HOST:PORT: where /metrics, /healthz and /readyz are served; "" = off.
  // Port 0 picks a free one (the bound address is logged).
  std::string metrics_listen;
  // --log-format text|json.
  logging::Format log_format = logging::Format::kText;
};

// Registers --metrics-listen and --log-format on `fs`; a --log-format other than text or json
// is a parse error naming the flag.
void RegisterOpsFlags(FlagSet* fs, OpsFlags* flags);

// The server's logger: stderr, `component` as its name, the flags' format.
logging::Logger MakeLogger(const std::string& component, const OpsFlags& flags);

// Starts the HTTP server on flags.metrics_listen with /metrics (`registry`), /healthz and
// /readyz (`ready`); nullptr when --metrics-listen was not given. FAILED_PRECONDITION (naming
// the address) when it cannot listen. CivetWeb's own messages go to `log` as warnings. Both
// pointers must outlive the server's Shutdown().
absl::StatusOr<std::unique_ptr<http::HttpServer>> StartMetricsServer(
    const OpsFlags& flags, const metrics::Registry* registry, const http::ReadinessChecks* ready,
    const logging::Logger& log);

}  // namespace farm::common::ops

#endif  // FARM_COMMON_OPS_OPS_H_
