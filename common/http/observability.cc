#include "common/http/observability.h"

#include "absl/strings/str_cat.h"
#include "common/metrics/text_format.h"
#include "common/status_macros.h"

namespace farm::common::http {

void ReadinessChecks::Add(std::string name, std::function<absl::Status()> check) {
  absl::MutexLock l(&mu_);
  checks_.emplace_back(std::move(name), std::move(check));
}

absl::Status ReadinessChecks::Check() const {
  std::vector<std::pair<std::string, std::function<absl::Status()>>> checks;
  {
    absl::MutexLock l(&mu_);
    checks = checks_;
  }
  // Outside the lock: a check may take its component's locks.
  for (const auto& [name, check] : checks) {
    absl::Status s = check();
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(name, ": ", s.message()));
  }
  return absl::OkStatus();
}

namespace {

// Wraps `h` so that methods other than GET and HEAD get 405.
Handler GetOnly(Handler h) {
  return [h = std::move(h)](const Request& r) {
    if (r.method != "GET" && r.method != "HEAD") {
      Response resp = Response::Text(405, "method not allowed\n");
      resp.headers.emplace_back("Allow", "GET, HEAD");
      return resp;
    }
    return h(r);
  };
}

}  // namespace

absl::Status ServeObservability(HttpServer& server, const metrics::Registry* registry,
                                const ReadinessChecks* readiness) {
  if (registry != nullptr) {
    RETURN_IF_ERROR(server.Handle("/metrics", GetOnly([registry](const Request&) {
                                    Response r;
                                    r.content_type = std::string(metrics::kTextContentType);
                                    r.body = registry->TextExposition();
                                    return r;
                                  })));
  }
  RETURN_IF_ERROR(server.Handle(
      "/healthz", GetOnly([](const Request&) { return Response::Text(200, "ok\n"); })));
  RETURN_IF_ERROR(
      server.Handle("/readyz", GetOnly([readiness](const Request&) {
                      absl::Status s = readiness ? readiness->Check() : absl::OkStatus();
                      if (s.ok()) return Response::Text(200, "ok\n");
                      return Response::Text(503, absl::StrCat("not ready: ", s.message(), "\n"));
                    })));
  return absl::OkStatus();
}

}  // namespace farm::common::http
