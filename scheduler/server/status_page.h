// farm-scheduler's status page: a few HTML pages and the small JSON endpoints they read, on an
// embedded HttpServer (common/http; farm-scheduler serves them on --metrics-listen). What an
// operator or a developer looks at: active, queued and recent builds (filtered by tenant and
// state), one build's steps (cached or run, on which worker, how long, the live log, why a step
// missed the cache), the workers (platform, slots, held layers, last heartbeat, draining), the
// queue and the tenants' fair shares, and cache hit rates.
//
//   StatusSources src = StatusSourcesFor(manager.get(), dispatcher.get(), tenant_weights);
//   src.auth = server_auth;  // the API's: tokens required unless it allows all
//   RETURN_IF_ERROR(ServeStatusPages(*http_server, std::move(src)));
//
// Routes (every response is generated here; nothing is loaded from elsewhere, the farm may be
// offline):
//   GET /                           builds, tenants and their shares, cache hit rates
//   GET /builds/<id>                one build: its steps and live log
//   GET /workers                    workers and dispatch counters
//   GET /static/status.js, .css     the pages' script and style
//   GET /api/session                whether a token is needed, and whose it is
//   GET /api/overview               builds (?tenant=&state=&limit=), tenants, hit rates, queue
//   GET /api/builds/<id>            a build and its steps
//   GET /api/builds/<id>/log        ?after=SEQ: log lines after event SEQ (the live log)
//   GET /api/builds/<id>/why-miss   ?vertex=N: why that step missed the cache
//   GET /api/workers                workers and dispatch counters
//
// Trust: the HTML pages and static files carry no data. The JSON endpoints do: when `auth` is
// set and does not allow all, each needs "Authorization: Bearer <token>" (a farm token, as for
// the gRPC API; the pages keep it in sessionStorage and send it with their fetches). A token
// with the admin role sees every tenant; any other token sees only its tenant's builds,
// queue and hit rates (workers are listed for any valid token, like ListWorkers). Everything
// user-supplied (build names, tags, tenants, log text) reaches the browser only as JSON
// strings put into the page with textContent, or HTML-escaped by HtmlEscape; the
// Content-Security-Policy allows only this server's own script and style.
#ifndef FARM_SCHEDULER_SERVER_STATUS_PAGE_H_
#define FARM_SCHEDULER_SERVER_STATUS_PAGE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "auth/grpc_auth.h"
#include "common/http/http_server.h"
#include "farm/v1/scheduler.pb.h"

namespace farm::scheduler::dispatch {
class Dispatcher;
}

namespace farm::scheduler::server {

class BuildManager;

// Tasks waiting for a worker, per platform and tenant (the dispatcher's queue).
struct QueueRow {
  std::string platform;
  std::string tenant;
  int64_t queued = 0;
  absl::Duration oldest_wait;  // how long the longest-waiting of them has waited
};

// Dispatcher counters the pages show (a subset of dispatch::DispatchStats).
struct DispatchCounters {
  int64_t queued = 0;
  int64_t running = 0;
  int64_t workers_connected = 0;
  int64_t slots_total = 0;
  int64_t slots_busy = 0;
  int64_t dispatched = 0;
  int64_t deduplicated = 0;
  int64_t requeued = 0;
  int64_t aborted = 0;
};

// Where the pages get their data. Every function is called from the HTTP server's threads
// (concurrently) and must be thread-safe; null ones show as empty.
struct StatusSources {
  // BuildManager::List / Get.
  std::function<absl::StatusOr<std::vector<farm::v1::BuildInfo>>(
      const farm::v1::ListBuildsRequest&)>
      list_builds;
  std::function<absl::StatusOr<farm::v1::BuildInfo>(const std::string& build_id)> get_build;
  // Calls `visit` with the build's events after `after_seq`, in order, as far as they exist
  // now; stops early when `visit` returns false. NOT_FOUND for an unknown build.
  using EventVisitor = std::function<bool(const farm::v1::BuildStreamEvent&)>;
  std::function<absl::Status(const std::string& build_id, int64_t after_seq,
                             const EventVisitor& visit)>
      visit_events;
  std::function<std::vector<farm::v1::WorkerInfo>()> workers;
  std::function<DispatchCounters()> dispatch;
  // The queue per platform and tenant (may be null: the tenants table then shows builds
  // only).
  std::function<std::vector<QueueRow>()> queues;
  // Fair-share weights (--tenant-weight); tenants not listed weigh 1.
  std::map<std::string, double> tenant_weights;
  // The API's authentication: null or AllowAll() = the pages are open (loopback dev mode).
  std::shared_ptr<const auth::ServerAuth> auth;
  // Injected for tests.
  std::function<absl::Time()> now;
};

// The sources of a running farm-scheduler (auth left unset). `manager` and
// `dispatcher` must outlive the pages: shut ServeStatusPages' server down first.
StatusSources StatusSourcesFor(BuildManager* manager, dispatch::Dispatcher* dispatcher,
                               std::map<std::string, double> tenant_weights);

// Adds the routes above to `server`. INVALID_ARGUMENT if a route cannot be added.
absl::Status ServeStatusPages(common::http::HttpServer& server, StatusSources sources);

// ----- the pieces, exposed for tests

// &, <, >, " and ' as entities; bytes that are not valid UTF-8 become U+FFFD.
std::string HtmlEscape(absl::string_view text);

// One step of a build as its events tell it.
struct StepView {
  int32_t vertex = 0;
  std::string name;
  std::string state;  // "running", "cached", "done", "failed", "canceled"
  bool cached = false;
  std::string worker;
  int64_t duration_micros = 0;
  int64_t started_unix_micros = 0;
  std::string key;
  std::string error;
  int64_t log_lines = 0;
};

// Folds a build's events into its steps (ordered by vertex id).
class StepSummary {
 public:
  void Add(const farm::v1::BuildStreamEvent& event);
  std::vector<StepView> Steps() const;
  int64_t last_seq() const { return last_seq_; }
  // The build's outcome event, if it came.
  const farm::v1::BuildOutcome* outcome() const { return has_outcome_ ? &outcome_ : nullptr; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  std::map<int32_t, StepView> steps_;
  int64_t last_seq_ = 0;
  bool has_outcome_ = false;
  farm::v1::BuildOutcome outcome_;
  std::vector<std::string> warnings_;
};

// Explains why step `vertex` of `build` missed the cache, from the steps of earlier builds of
// the same Dockerfile (newest first): whether the step ran before and with which key, and if
// its key changed, the first step before it in its stage whose key changed too (a step's key
// includes its parent's, so a miss carries down the stage) or, if none did, that the step's
// own inputs changed. NOT_FOUND if the build has no such step; FAILED_PRECONDITION if it did
// not miss.
struct EarlierBuild {
  farm::v1::BuildInfo info;
  std::vector<StepView> steps;
};
absl::StatusOr<std::string> ExplainStepMiss(const farm::v1::BuildInfo& build,
                                            const std::vector<StepView>& steps, int32_t vertex,
                                            const std::vector<EarlierBuild>& earlier);

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_STATUS_PAGE_H_
