// The operational endpoints every Farm server serves on its --metrics-listen port:
//   /metrics  the Registry's text exposition (Prometheus scrapes it)
//   /healthz  liveness: 200 "ok" whenever the process can answer at all
//   /readyz   readiness: 200 "ok" when every registered check passes, else 503 with the first
//             failing check's name and message (Kubernetes stops routing to it)
//
//   metrics::Registry registry;
//   http::ReadinessChecks ready;
//   ready.Add("cache", [&] { return cache_up.load() ? absl::OkStatus()
//                                                  : absl::UnavailableError("unreachable"); });
//   ASSIGN_OR_RETURN(auto server, http::HttpServer::Create(metrics_listen));
//   RETURN_IF_ERROR(http::ServeObservability(*server, &registry, &ready));
#ifndef FARM_COMMON_HTTP_OBSERVABILITY_H_
#define FARM_COMMON_HTTP_OBSERVABILITY_H_

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/http/http_server.h"
#include "common/metrics/metrics.h"

namespace farm::common::http {

// Named readiness checks. Thread-safe. Checks run on every /readyz (and whatever else calls
// Check(), such as the gRPC health publisher), in the order added: each must be quick and
// non-blocking, typically reading a flag or an atomic that the component keeps up to date.
class ReadinessChecks {
 public:
  void Add(std::string name, std::function<absl::Status()> check);
  // OK if every check passes (or none is registered); else the first failure, its message
  // prefixed with the check's name, its code kept.
  absl::Status Check() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<std::pair<std::string, std::function<absl::Status()>>> checks_ ABSL_GUARDED_BY(mu_);
};

// Registers /metrics (if `registry` is set), /healthz and /readyz (if `readiness` is set: else
// /readyz answers like /healthz) on `server`. Both pointers must outlive the server's
// Shutdown(). Only GET and HEAD are accepted (405 otherwise).
absl::Status ServeObservability(HttpServer& server, const metrics::Registry* registry,
                                const ReadinessChecks* readiness);

}  // namespace farm::common::http

#endif  // FARM_COMMON_HTTP_OBSERVABILITY_H_
