#include "scheduler/server/status_page.h"

#include <algorithm>
#include <climits>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/server/build_manager.h"
#include "scheduler/server/status_assets.h"

namespace farm::scheduler::server {

namespace {

using common::http::Request;
using common::http::Response;
using Json = nlohmann::json;

constexpr int kDefaultBuildLimit = 50;
constexpr int kMaxBuildLimit = 500;
constexpr int kLogLinesPerCall = 2000;
// Earlier builds of the same Dockerfile that why-miss reads the events of.
constexpr int kWhyMissBuilds = 20;
// Recent builds the hit rates are computed over.
constexpr int kHitRateBuilds = 500;

// Length of the valid UTF-8 sequence at s[i], or 0.
size_t Utf8Length(absl::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t min;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    unsigned char cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// `s` with invalid UTF-8 replaced by U+FFFD (JSON strings must be valid UTF-8).
std::string ValidUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t n = Utf8Length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  return out;
}

std::string StateName(farm::v1::BuildInfo::State s) {
  switch (s) {
    case farm::v1::BuildInfo::QUEUED:
      return "queued";
    case farm::v1::BuildInfo::RUNNING:
      return "running";
    case farm::v1::BuildInfo::SUCCEEDED:
      return "succeeded";
    case farm::v1::BuildInfo::FAILED:
      return "failed";
    case farm::v1::BuildInfo::CANCELED:
      return "canceled";
    default:
      return "unknown";
  }
}

bool IsActive(const farm::v1::BuildInfo& b) {
  return b.state() == farm::v1::BuildInfo::QUEUED || b.state() == farm::v1::BuildInfo::RUNNING;
}

// Whether `b` passes the ?state= filter: a state name, "active" or "finished"; "" = all.
bool StateMatches(const farm::v1::BuildInfo& b, absl::string_view filter) {
  if (filter.empty() || filter == "all") return true;
  if (filter == "active") return IsActive(b);
  if (filter == "finished") return !IsActive(b);
  return StateName(b.state()) == filter;
}

// ---------------------------------------------------------------------------------------------
// Who is asking.

struct Viewer {
  bool all_tenants = false;  // admin, or no authentication
  std::string tenant;        // otherwise: the one tenant it sees
  std::string subject;
  bool authenticated = false;

  bool Sees(const std::string& t) const { return all_tenants || (!tenant.empty() && t == tenant); }
};

absl::StatusOr<Viewer> Authenticate(const StatusSources& src, const Request& r) {
  Viewer v;
  if (src.auth == nullptr || src.auth->allows_all()) {
    v.all_tenants = true;
    return v;
  }
  std::string header = r.Header("authorization");
  constexpr absl::string_view kBearer = "bearer ";
  if (header.size() <= kBearer.size() ||
      !absl::EqualsIgnoreCase(absl::string_view(header).substr(0, kBearer.size()), kBearer)) {
    return absl::UnauthenticatedError("a token is needed: Authorization: Bearer <farm token>");
  }
  const auth::TokenVerifier* verifier = src.auth->token_verifier();
  if (verifier == nullptr) {
    return absl::UnauthenticatedError(
        "this farm-scheduler accepts no tokens (--token-keys): the status page is closed");
  }
  absl::StatusOr<auth::Identity> who = verifier->Verify(
      absl::StripAsciiWhitespace(absl::string_view(header).substr(kBearer.size())));
  if (!who.ok()) return absl::UnauthenticatedError(who.status().message());
  v.authenticated = true;
  v.subject = who->subject;
  v.tenant = who->tenant;
  v.all_tenants = who->HasRole(auth::kRoleAdmin);
  return v;
}

// ---------------------------------------------------------------------------------------------
// Responses.

void AddCommonHeaders(Response* r) {
  r->headers.emplace_back("X-Content-Type-Options", "nosniff");
  r->headers.emplace_back("Referrer-Policy", "no-referrer");
  r->headers.emplace_back("X-Frame-Options", "DENY");
}

Response JsonResponse(int status, const Json& body) {
  Response r;
  r.status = status;
  r.content_type = "application/json; charset=utf-8";
  // Strings are valid UTF-8 already (ValidUtf8); "replace" only guards against a slip, so that
  // dump() cannot throw.
  r.body = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  r.headers.emplace_back("Cache-Control", "no-store");
  AddCommonHeaders(&r);
  return r;
}

Response ErrorResponse(const absl::Status& s) {
  int code = 500;
  switch (s.code()) {
    case absl::StatusCode::kNotFound:
      code = 404;
      break;
    case absl::StatusCode::kInvalidArgument:
      code = 400;
      break;
    case absl::StatusCode::kUnauthenticated:
      code = 401;
      break;
    case absl::StatusCode::kPermissionDenied:
      code = 403;
      break;
    case absl::StatusCode::kFailedPrecondition:
      code = 409;
      break;
    case absl::StatusCode::kUnavailable:
      code = 503;
      break;
    default:
      break;
  }
  Response r = JsonResponse(code, Json{{"error", ValidUtf8(s.message())}});
  if (code == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer");
  return r;
}

Response Asset(const char* content_type, absl::string_view body) {
  Response r;
  r.content_type = content_type;
  r.body = std::string(body);
  r.headers.emplace_back("Cache-Control", "no-cache");
  AddCommonHeaders(&r);
  return r;
}

// A page: the frame every page shares, with `main` (already escaped HTML) inside. The data
// comes later, from the JSON endpoints, through status.js.
Response Page(absl::string_view page, absl::string_view title, absl::string_view main,
              absl::string_view data_attributes = "") {
  Response r;
  r.content_type = "text/html; charset=utf-8";
  r.body = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>",
      HtmlEscape(title),
      " · farm</title>\n<link rel=\"stylesheet\" href=\"/static/status.css\">\n"
      "<script src=\"/static/status.js\" defer></script>\n</head>\n<body data-page=\"",
      HtmlEscape(page), "\"", data_attributes,
      ">\n<header><a class=\"brand\" href=\"/\">farm</a>\n<nav><a href=\"/\">Builds</a> "
      "<a href=\"/workers\">Workers</a></nav>\n<span id=\"who\"></span>\n"
      "<span id=\"updated\" class=\"muted\"></span></header>\n"
      "<form id=\"login\" hidden>\n<p>This farm needs a token to show its status.</p>\n"
      "<label>Token <input id=\"token\" type=\"password\" autocomplete=\"off\" "
      "placeholder=\"farm token\"></label>\n<button type=\"submit\">Sign in</button>\n"
      "<p class=\"muted\">Kept in this tab's sessionStorage and sent as "
      "<code>Authorization: Bearer</code> to this server only.</p>\n"
      "<p id=\"login-error\" class=\"error\"></p>\n</form>\n"
      "<p id=\"error\" class=\"error\" hidden></p>\n<main id=\"content\">\n",
      main, "</main>\n</body>\n</html>\n");
  r.headers.emplace_back(
      "Content-Security-Policy",
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
      "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'");
  r.headers.emplace_back("Cache-Control", "no-cache");
  AddCommonHeaders(&r);
  return r;
}

constexpr absl::string_view kOverviewMain = R"(<section id="summary" class="cards"></section>
<section>
<h2>Builds</h2>
<form id="filters" class="filters">
<label>Tenant <input id="f-tenant" name="tenant" placeholder="all"></label>
<label>State <select id="f-state" name="state">
<option value="">all</option><option value="active">active</option>
<option value="queued">queued</option><option value="running">running</option>
<option value="finished">finished</option><option value="succeeded">succeeded</option>
<option value="failed">failed</option><option value="canceled">canceled</option>
</select></label>
<button type="submit">Filter</button>
</form>
<table id="builds"><thead><tr><th>Build</th><th>State</th><th>Tenant</th><th>Dockerfile</th>
<th>Tags</th><th>Steps</th><th>Cached</th><th>Submitted</th><th>Duration</th></tr></thead>
<tbody></tbody></table>
</section>
<section>
<h2>Tenants and fair shares</h2>
<table id="tenants"><thead><tr><th>Tenant</th><th>Weight</th><th>Fair share</th>
<th>Queued builds</th><th>Running builds</th><th>Queued steps</th><th>Oldest wait</th>
<th>Cache hit rate</th></tr></thead><tbody></tbody></table>
</section>
<section>
<h2>Step queue by platform</h2>
<table id="queues"><thead><tr><th>Platform</th><th>Tenant</th><th>Queued steps</th>
<th>Oldest wait</th></tr></thead><tbody></tbody></table>
</section>
)";

constexpr absl::string_view kWorkersMain = R"(<section id="summary" class="cards"></section>
<section>
<h2>Workers</h2>
<table id="workers"><thead><tr><th>Worker</th><th>State</th><th>Platform</th><th>Slots</th>
<th>Busy</th><th>Held layers</th><th>Tasks done</th><th>Last heartbeat</th><th>Address</th>
<th>Labels</th></tr></thead><tbody></tbody></table>
</section>
)";

std::string BuildMain(absl::string_view id) {
  return absl::StrCat("<h1>Build <code id=\"build-id\">", HtmlEscape(id), "</code></h1>\n",
                      R"(<section id="build-info" class="cards"></section>
<section>
<h2>Steps</h2>
<table id="steps"><thead><tr><th>#</th><th>Step</th><th>Result</th><th>Worker</th>
<th>Duration</th><th>Log lines</th><th></th></tr></thead><tbody></tbody></table>
<div id="why-miss" hidden><h3>Why it missed the cache</h3><pre id="why-miss-text"></pre></div>
</section>
<section>
<h2>Log</h2>
<pre id="log" class="log"></pre>
</section>
)");
}

// ---------------------------------------------------------------------------------------------
// JSON.

Json BuildJson(const farm::v1::BuildInfo& b) {
  Json tags = Json::array();
  for (const std::string& t : b.tags()) tags.push_back(ValidUtf8(t));
  Json j = {
      {"id", ValidUtf8(b.build_id())},
      {"state", StateName(b.state())},
      {"tenant", ValidUtf8(b.tenant())},
      {"priority", b.priority()},
      {"client", ValidUtf8(b.client())},
      {"dockerfile", ValidUtf8(b.dockerfile_name())},
      {"tags", tags},
      {"submitted_unix_micros", b.submitted_unix_micros()},
      {"started_unix_micros", b.started_unix_micros()},
      {"finished_unix_micros", b.finished_unix_micros()},
      {"steps_total", b.steps_total()},
      {"steps_done", b.steps_done()},
      {"steps_cached", b.steps_cached()},
      {"last_seq", b.last_seq()},
  };
  if (b.has_outcome()) {
    j["outcome"] = {{"ok", b.outcome().ok()},
                    {"error", ValidUtf8(b.outcome().error())},
                    {"image_id", ValidUtf8(b.outcome().image_id())},
                    {"manifest_digest", ValidUtf8(b.outcome().manifest_digest())}};
  }
  return j;
}

Json StepJson(const StepView& s) {
  return {{"vertex", s.vertex},
          {"name", ValidUtf8(s.name)},
          {"state", s.state},
          {"cached", s.cached},
          {"worker", ValidUtf8(s.worker)},
          {"duration_micros", s.duration_micros},
          {"started_unix_micros", s.started_unix_micros},
          {"key", ValidUtf8(s.key)},
          {"error", ValidUtf8(s.error)},
          {"log_lines", s.log_lines},
          // A step with a key that ran (or is running) missed the cache: why-miss applies.
          {"missed", !s.key.empty() && !s.cached}};
}

Json WorkerJson(const farm::v1::WorkerInfo& w) {
  Json labels = Json::object();
  for (const auto& [k, v] : w.labels()) labels[ValidUtf8(k)] = ValidUtf8(v);
  Json emulated = Json::array();
  for (const std::string& p : w.emulated_platforms()) emulated.push_back(ValidUtf8(p));
  return {{"id", ValidUtf8(w.id())},
          {"platform", ValidUtf8(w.platform())},
          {"emulated_platforms", emulated},
          {"slots", w.slots()},
          {"busy", w.busy()},
          {"layers", w.layers()},
          {"tasks_done", w.tasks_done()},
          {"address", ValidUtf8(w.address())},
          {"connected", w.connected()},
          {"draining", w.draining()},
          {"connected_unix_micros", w.connected_unix_micros()},
          {"last_heartbeat_unix_micros", w.last_heartbeat_unix_micros()},
          {"labels", labels}};
}

Json DispatchJson(const DispatchCounters& d) {
  return {{"queued", d.queued},
          {"running", d.running},
          {"workers_connected", d.workers_connected},
          {"slots_total", d.slots_total},
          {"slots_busy", d.slots_busy},
          {"dispatched", d.dispatched},
          {"deduplicated", d.deduplicated},
          {"requeued", d.requeued},
          {"aborted", d.aborted}};
}

Json ViewerJson(const StatusSources& src, const Viewer& v) {
  bool open = src.auth == nullptr || src.auth->allows_all();
  return {{"auth", !open},
          {"subject", ValidUtf8(v.subject)},
          {"tenant", ValidUtf8(v.tenant)},
          {"all_tenants", v.all_tenants}};
}

double Rate(int64_t part, int64_t whole) {
  return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

// ---------------------------------------------------------------------------------------------
// The handlers.

class StatusPages {
 public:
  explicit StatusPages(StatusSources src) : src_(std::move(src)) {
    if (!src_.now) src_.now = [] { return absl::Now(); };
  }

  Response Session(const Request& r) const {
    absl::StatusOr<Viewer> v = Authenticate(src_, r);
    if (!v.ok()) return ErrorResponse(v.status());
    return JsonResponse(200, ViewerJson(src_, *v));
  }

  Response Overview(const Request& r) const {
    absl::StatusOr<Viewer> v = Authenticate(src_, r);
    if (!v.ok()) return ErrorResponse(v.status());
    std::string tenant = r.QueryValue("tenant");
    std::string state = absl::AsciiStrToLower(r.QueryValue("state"));
    static const std::set<std::string> kStates = {
        "", "all", "active", "finished", "queued", "running", "succeeded", "failed", "canceled"};
    if (kStates.count(state) == 0) {
      return ErrorResponse(absl::InvalidArgumentError(absl::StrCat(
          "state \"", state,
          "\": one of active, finished, queued, running, succeeded, failed, canceled")));
    }
    int limit = kDefaultBuildLimit;
    if (std::string l = r.QueryValue("limit"); !l.empty()) {
      if (!absl::SimpleAtoi(l, &limit) || limit < 1 || limit > kMaxBuildLimit) {
        return ErrorResponse(absl::InvalidArgumentError(
            absl::StrCat("limit \"", l, "\": a number from 1 to ", kMaxBuildLimit)));
      }
    }
    if (!tenant.empty() && !v->Sees(tenant)) {
      return ErrorResponse(absl::PermissionDeniedError(
          absl::StrCat("this token sees only tenant \"", v->tenant, "\"'s builds")));
    }
    Json out;
    out["viewer"] = ViewerJson(src_, *v);
    // Everything visible, newest first: the table (filtered) and the per-tenant numbers.
    std::vector<farm::v1::BuildInfo> all;
    if (src_.list_builds && (v->all_tenants || !v->tenant.empty())) {
      farm::v1::ListBuildsRequest req;
      req.set_limit(kHitRateBuilds);
      if (!v->all_tenants) req.set_tenant(v->tenant);
      absl::StatusOr<std::vector<farm::v1::BuildInfo>> listed = src_.list_builds(req);
      if (!listed.ok()) return ErrorResponse(listed.status());
      all = *std::move(listed);
      // Active builds beyond the newest kHitRateBuilds still count in the queue.
      req.set_active_only(true);
      req.set_limit(100000);
      absl::StatusOr<std::vector<farm::v1::BuildInfo>> active = src_.list_builds(req);
      if (!active.ok()) return ErrorResponse(active.status());
      std::set<std::string> seen;
      for (const auto& b : all) seen.insert(b.build_id());
      for (auto& b : *active) {
        if (seen.insert(b.build_id()).second) all.push_back(std::move(b));
      }
      std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
        return a.submitted_unix_micros() > b.submitted_unix_micros();
      });
    }
    Json builds = Json::array();
    struct TenantRow {
      int64_t queued_builds = 0, running_builds = 0, steps = 0, cached = 0;
      int64_t queued_tasks = 0;
      absl::Duration oldest_wait;
    };
    std::map<std::string, TenantRow> tenants;
    int64_t steps = 0, cached = 0, queued = 0, running = 0;
    for (const farm::v1::BuildInfo& b : all) {
      if (!v->Sees(b.tenant())) continue;  // the manager filtered already; be sure
      TenantRow& t = tenants[b.tenant()];
      if (b.state() == farm::v1::BuildInfo::QUEUED) ++t.queued_builds, ++queued;
      if (b.state() == farm::v1::BuildInfo::RUNNING) ++t.running_builds, ++running;
      t.steps += b.steps_done();
      t.cached += b.steps_cached();
      steps += b.steps_done();
      cached += b.steps_cached();
      if ((tenant.empty() || b.tenant() == tenant) && StateMatches(b, state) &&
          static_cast<int>(builds.size()) < limit) {
        builds.push_back(BuildJson(b));
      }
    }
    out["builds"] = std::move(builds);
    out["counts"] = {{"queued", queued}, {"running", running}};
    out["cache"] = {{"builds", all.size()},
                    {"steps", steps},
                    {"cached", cached},
                    {"hit_rate", Rate(cached, steps)}};
    Json queues = Json::array();
    if (src_.queues) {
      for (const QueueRow& q : src_.queues()) {
        if (!v->Sees(q.tenant)) continue;
        TenantRow& t = tenants[q.tenant];
        t.queued_tasks += q.queued;
        t.oldest_wait = std::max(t.oldest_wait, q.oldest_wait);
        queues.push_back({{"platform", ValidUtf8(q.platform)},
                          {"tenant", ValidUtf8(q.tenant)},
                          {"queued", q.queued},
                          {"oldest_wait_seconds", absl::ToDoubleSeconds(q.oldest_wait)}});
      }
    }
    out["queues"] = std::move(queues);
    out["queues_known"] = static_cast<bool>(src_.queues);
    // Fair share: a tenant with work gets weight / (sum of the weights of tenants with work)
    // of the slots (dispatch/fair_queue.h). Shares are over every tenant with work, including
    // those this viewer does not see.
    double weight_sum = 0;
    auto weight = [this](const std::string& t) {
      auto it = src_.tenant_weights.find(t);
      return it == src_.tenant_weights.end() ? 1.0 : it->second;
    };
    for (const auto& [name, t] : tenants) {
      if (t.queued_builds + t.running_builds + t.queued_tasks > 0) weight_sum += weight(name);
    }
    if (!v->all_tenants) weight_sum = 0;  // others' work is not this viewer's to know
    Json trows = Json::array();
    for (const auto& [name, t] : tenants) {
      bool busy = t.queued_builds + t.running_builds + t.queued_tasks > 0;
      double w = weight(name);
      Json share = nullptr;
      if (busy && weight_sum > 0) share = w / weight_sum;
      trows.push_back({{"tenant", ValidUtf8(name)},
                       {"weight", w},
                       {"share", share},
                       {"queued_builds", t.queued_builds},
                       {"running_builds", t.running_builds},
                       {"queued_tasks", t.queued_tasks},
                       {"oldest_wait_seconds", absl::ToDoubleSeconds(t.oldest_wait)},
                       {"steps", t.steps},
                       {"cached", t.cached},
                       {"hit_rate", Rate(t.cached, t.steps)}});
    }
    out["tenants"] = std::move(trows);
    if (src_.dispatch) out["dispatch"] = DispatchJson(src_.dispatch());
    out["now_unix_micros"] = absl::ToUnixMicros(src_.now());
    return JsonResponse(200, out);
  }

  Response Workers(const Request& r) const {
    absl::StatusOr<Viewer> v = Authenticate(src_, r);
    if (!v.ok()) return ErrorResponse(v.status());
    Json out;
    out["viewer"] = ViewerJson(src_, *v);
    Json workers = Json::array();
    if (src_.workers) {
      for (const farm::v1::WorkerInfo& w : src_.workers()) workers.push_back(WorkerJson(w));
    }
    out["workers"] = std::move(workers);
    if (src_.dispatch) out["dispatch"] = DispatchJson(src_.dispatch());
    out["now_unix_micros"] = absl::ToUnixMicros(src_.now());
    return JsonResponse(200, out);
  }

  // /api/builds/<id>[/log|/why-miss]
  Response BuildApi(const Request& r) const {
    absl::StatusOr<Viewer> v = Authenticate(src_, r);
    if (!v.ok()) return ErrorResponse(v.status());
    absl::string_view rest = absl::string_view(r.path).substr(sizeof("/api/builds/") - 1);
    std::vector<std::string> parts = absl::StrSplit(rest, '/');
    if (parts.empty() || parts[0].empty() || parts.size() > 2) {
      return ErrorResponse(absl::NotFoundError(absl::StrCat("no such page: ", r.path)));
    }
    absl::StatusOr<farm::v1::BuildInfo> info = VisibleBuild(*v, parts[0]);
    if (!info.ok()) return ErrorResponse(info.status());
    if (parts.size() == 1) return Build(*v, *info);
    if (parts[1] == "log") return Log(*info, r);
    if (parts[1] == "why-miss") return WhyMiss(*v, *info, r);
    return ErrorResponse(absl::NotFoundError(absl::StrCat("no such page: ", r.path)));
  }

  Response OverviewPage(const Request&) const { return Page("overview", "Builds", kOverviewMain); }
  Response WorkersPage(const Request&) const { return Page("workers", "Workers", kWorkersMain); }
  Response BuildPage(const Request& r) const {
    std::string id = r.path.substr(sizeof("/builds/") - 1);
    if (id.empty() || id.find('/') != std::string::npos) {
      Response nf = Page("missing", "Not found", "<p>No such page.</p>\n");
      nf.status = 404;
      return nf;
    }
    return Page("build", absl::StrCat("Build ", id), BuildMain(id),
                absl::StrCat(" data-build-id=\"", HtmlEscape(id), "\""));
  }

 private:
  // The build, if it exists and the viewer may see it (NOT_FOUND otherwise: another tenant's
  // build ids are not confirmed either).
  absl::StatusOr<farm::v1::BuildInfo> VisibleBuild(const Viewer& v, const std::string& id) const {
    if (!src_.get_build) return absl::NotFoundError(absl::StrCat("no build ", id));
    absl::StatusOr<farm::v1::BuildInfo> info = src_.get_build(id);
    if (!info.ok()) return info.status();
    if (!v.Sees(info->tenant())) return absl::NotFoundError(absl::StrCat("no build ", id));
    return info;
  }

  absl::StatusOr<StepSummary> Summarize(const std::string& id) const {
    StepSummary summary;
    if (!src_.visit_events) return summary;
    absl::Status s = src_.visit_events(id, 0, [&summary](const farm::v1::BuildStreamEvent& e) {
      summary.Add(e);
      return true;
    });
    if (!s.ok()) return s;
    return summary;
  }

  Response Build(const Viewer& v, const farm::v1::BuildInfo& info) const {
    absl::StatusOr<StepSummary> summary = Summarize(info.build_id());
    if (!summary.ok()) return ErrorResponse(summary.status());
    Json steps = Json::array();
    for (const StepView& s : summary->Steps()) steps.push_back(StepJson(s));
    Json warnings = Json::array();
    for (const std::string& w : summary->warnings()) warnings.push_back(ValidUtf8(w));
    return JsonResponse(200, {{"viewer", ViewerJson(src_, v)},
                              {"build", BuildJson(info)},
                              {"steps", std::move(steps)},
                              {"warnings", std::move(warnings)},
                              {"active", IsActive(info)},
                              {"now_unix_micros", absl::ToUnixMicros(src_.now())}});
  }

  Response Log(const farm::v1::BuildInfo& info, const Request& r) const {
    int64_t after = 0;
    if (std::string a = r.QueryValue("after"); !a.empty()) {
      if (!absl::SimpleAtoi(a, &after) || after < 0) {
        return ErrorResponse(
            absl::InvalidArgumentError(absl::StrCat("after \"", a, "\": an event number")));
      }
    }
    Json lines = Json::array();
    int64_t next = after;
    bool more = false;
    std::map<int32_t, std::string> names;  // vertex → name, for lines' prefixes
    if (src_.visit_events) {
      absl::Status s =
          src_.visit_events(info.build_id(), after, [&](const farm::v1::BuildStreamEvent& e) {
            if (lines.size() >= kLogLinesPerCall) {
              more = true;
              return false;
            }
            next = std::max(next, e.seq());
            const farm::v1::BuildEvent& be = e.event();
            if (be.has_log()) {
              lines.push_back({{"seq", e.seq()},
                               {"vertex", be.log().id()},
                               {"stderr", be.log().stderr()},
                               {"text", ValidUtf8(be.log().data())}});
            } else if (be.has_warning()) {
              lines.push_back({{"seq", e.seq()},
                               {"vertex", 0},
                               {"stderr", true},
                               {"text", ValidUtf8(absl::StrCat("WARNING: ", be.warning()))}});
            }
            return true;
          });
      if (!s.ok()) return ErrorResponse(s);
    }
    // Finished and read to the end: the page stops polling.
    bool done = !IsActive(info) && !more;
    return JsonResponse(200, {{"lines", std::move(lines)}, {"next", next}, {"done", done}});
  }

  Response WhyMiss(const Viewer& v, const farm::v1::BuildInfo& info, const Request& r) const {
    int32_t vertex = 0;
    if (!absl::SimpleAtoi(r.QueryValue("vertex"), &vertex)) {
      return ErrorResponse(absl::InvalidArgumentError("?vertex=N: the step's number"));
    }
    absl::StatusOr<StepSummary> summary = Summarize(info.build_id());
    if (!summary.ok()) return ErrorResponse(summary.status());
    std::vector<EarlierBuild> earlier;
    if (src_.list_builds) {
      farm::v1::ListBuildsRequest req;
      req.set_tenant(info.tenant());
      req.set_limit(kHitRateBuilds);
      absl::StatusOr<std::vector<farm::v1::BuildInfo>> listed = src_.list_builds(req);
      if (!listed.ok()) return ErrorResponse(listed.status());
      for (const farm::v1::BuildInfo& b : *listed) {
        if (static_cast<int>(earlier.size()) >= kWhyMissBuilds) break;
        if (b.build_id() == info.build_id() || !v.Sees(b.tenant()) ||
            b.dockerfile_name() != info.dockerfile_name() ||
            b.submitted_unix_micros() > info.submitted_unix_micros()) {
          continue;
        }
        absl::StatusOr<StepSummary> s = Summarize(b.build_id());
        if (!s.ok()) continue;  // gone meanwhile
        earlier.push_back(EarlierBuild{b, s->Steps()});
      }
    }
    absl::StatusOr<std::string> why = ExplainStepMiss(info, summary->Steps(), vertex, earlier);
    if (!why.ok()) return ErrorResponse(why.status());
    return JsonResponse(200, {{"vertex", vertex}, {"text", ValidUtf8(*why)}});
  }

  StatusSources src_;
};

// "[build 2/5] RUN make" → stage "build", position 2, instruction "RUN make"; "[2/5] RUN x" →
// stage "". position 0 when the name has no "N/M".
struct ParsedName {
  std::string stage;
  int position = 0;
  std::string instruction;
};

ParsedName ParseVertexName(absl::string_view name) {
  ParsedName p;
  p.instruction = std::string(name);
  if (!absl::StartsWith(name, "[")) return p;
  size_t close = name.find(']');
  if (close == absl::string_view::npos) return p;
  std::vector<absl::string_view> inside =
      absl::StrSplit(name.substr(1, close - 1), ' ', absl::SkipEmpty());
  p.instruction = std::string(absl::StripAsciiWhitespace(name.substr(close + 1)));
  if (inside.empty()) return p;
  absl::string_view pos = inside.back();
  size_t slash = pos.find('/');
  if (slash != absl::string_view::npos && absl::SimpleAtoi(pos.substr(0, slash), &p.position)) {
    inside.pop_back();
  }
  for (absl::string_view s : inside) {
    if (!p.stage.empty()) p.stage += " ";
    p.stage += std::string(s);
  }
  return p;
}

std::string Short(const std::string& key) {
  return key.substr(0, std::min<size_t>(12, key.size()));
}

std::string When(int64_t micros) {
  if (micros <= 0) return "";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

const StepView* FindSame(const std::vector<StepView>& steps, const ParsedName& want) {
  const StepView* any = nullptr;
  for (const StepView& s : steps) {
    ParsedName p = ParseVertexName(s.name);
    if (p.stage != want.stage || p.instruction != want.instruction || s.key.empty()) continue;
    if (p.position == want.position) return &s;
    if (any == nullptr) any = &s;
  }
  return any;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string HtmlEscape(absl::string_view text) {
  std::string valid = ValidUtf8(text);
  std::string out;
  out.reserve(valid.size());
  for (char c : valid) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

void StepSummary::Add(const farm::v1::BuildStreamEvent& event) {
  last_seq_ = std::max(last_seq_, event.seq());
  const farm::v1::BuildEvent& e = event.event();
  if (e.has_vertex()) {
    const farm::v1::VertexUpdate& u = e.vertex();
    StepView& s = steps_[u.id()];
    s.vertex = u.id();
    if (!u.name().empty()) s.name = u.name();
    if (!u.key().empty()) s.key = u.key();
    if (!u.worker().empty()) s.worker = u.worker();
    switch (u.state()) {
      case farm::v1::VertexUpdate::STARTED:
        s.state = "running";
        s.started_unix_micros = e.time_unix_micros();
        // A resumed build starts its steps again.
        s.cached = false;
        s.error.clear();
        break;
      case farm::v1::VertexUpdate::CACHED:
        s.state = "cached";
        s.cached = true;
        break;
      case farm::v1::VertexUpdate::DONE:
        s.state = "done";
        s.duration_micros = u.duration_micros();
        break;
      case farm::v1::VertexUpdate::FAILED:
        s.state = "failed";
        s.duration_micros = u.duration_micros();
        s.error = u.error();
        break;
      case farm::v1::VertexUpdate::CANCELED:
        s.state = "canceled";
        s.duration_micros = u.duration_micros();
        break;
      default:
        break;
    }
  } else if (e.has_log()) {
    StepView& s = steps_[e.log().id()];
    s.vertex = e.log().id();
    ++s.log_lines;
  } else if (e.has_warning()) {
    warnings_.push_back(e.warning());
  } else if (e.has_outcome()) {
    has_outcome_ = true;
    outcome_ = e.outcome();
  }
}

std::vector<StepView> StepSummary::Steps() const {
  std::vector<StepView> out;
  out.reserve(steps_.size());
  for (const auto& [id, s] : steps_) out.push_back(s);
  return out;
}

absl::StatusOr<std::string> ExplainStepMiss(const farm::v1::BuildInfo& build,
                                            const std::vector<StepView>& steps, int32_t vertex,
                                            const std::vector<EarlierBuild>& earlier) {
  const StepView* target = nullptr;
  for (const StepView& s : steps) {
    if (s.vertex == vertex) target = &s;
  }
  if (target == nullptr) {
    return absl::NotFoundError(absl::StrCat("build ", build.build_id(), " has no step #", vertex));
  }
  if (target->key.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("#", vertex, " ", target->name, " has no cache key (it is not cached)"));
  }
  if (target->cached) {
    return absl::FailedPreconditionError(
        absl::StrCat("#", vertex, " ", target->name, " was a cache hit"));
  }
  ParsedName want = ParseVertexName(target->name);
  std::string stage = want.stage.empty() ? "the build" : absl::StrCat("stage ", want.stage);
  const EarlierBuild* prev_build = nullptr;
  const StepView* prev = nullptr;
  for (const EarlierBuild& b : earlier) {
    prev = FindSame(b.steps, want);
    if (prev != nullptr) {
      prev_build = &b;
      break;
    }
  }
  std::string out = absl::StrCat("#", vertex, " ", target->name, " missed the cache (key ",
                                 Short(target->key), ").\n");
  if (prev == nullptr) {
    absl::StrAppend(&out, "No earlier build of ", build.dockerfile_name(), " (tenant \"",
                    build.tenant(), "\", the last ", earlier.size(),
                    " whose events are kept) has the step `", want.instruction, "` in ", stage,
                    ": this is its first run here, or its instruction changed (the name shows it "
                    "after ARG and ENV expansion).\n");
    return out;
  }
  std::string where = prev->cached
                          ? "a cache hit"
                          : (prev->worker.empty() ? std::string("run")
                                                  : absl::StrCat("run on worker ", prev->worker));
  absl::StrAppend(&out, "The closest earlier run: build ", prev_build->info.build_id(), " (",
                  When(prev_build->info.submitted_unix_micros()), "), step #", prev->vertex,
                  ", key ", Short(prev->key), ", ", where, ".\n");
  if (prev->key == target->key) {
    absl::StrAppend(&out,
                    "The key is the same, so the step's inputs did not change: its action-cache "
                    "entry was not found. It was evicted, or written under a cache scope this "
                    "build does not read, or this build ran with --no-cache.\n");
    return out;
  }
  // Keys chain: a step's key includes its parent's. The first earlier step of the same stage
  // whose key changed is where the misses start.
  std::vector<const StepView*> before;
  for (const StepView& s : steps) {
    if (s.key.empty() || s.vertex == target->vertex) continue;
    ParsedName p = ParseVertexName(s.name);
    if (p.stage == want.stage && p.position > 0 && p.position < want.position) {
      before.push_back(&s);
    }
  }
  std::sort(before.begin(), before.end(), [](const StepView* a, const StepView* b) {
    return ParseVertexName(a->name).position < ParseVertexName(b->name).position;
  });
  for (const StepView* s : before) {
    const StepView* old = FindSame(prev_build->steps, ParseVertexName(s->name));
    if (old != nullptr && old->key == s->key) continue;
    absl::StrAppend(&out, "Its key changed because an earlier step of ", stage, " changed: #",
                    s->vertex, " ", s->name,
                    old == nullptr
                        ? " did not run in that build"
                        : absl::StrCat(" has key ", Short(s->key), " (was ", Short(old->key), ")"),
                    ". A step's key includes its parent's, so every step after a changed one "
                    "misses too: ask why #",
                    s->vertex, " missed.\n");
    return out;
  }
  absl::StrAppend(&out, "Every earlier step of ", stage,
                  " has the same key as then, so this step's own inputs changed: the "
                  "instruction after ARG/ENV expansion, the build args and environment it sees, "
                  "its user, workdir or platform, or (COPY/ADD) the content or mode of the files "
                  "it reads.\n");
  return out;
}

StatusSources StatusSourcesFor(BuildManager* manager, dispatch::Dispatcher* dispatcher,
                               std::map<std::string, double> tenant_weights) {
  StatusSources s;
  s.list_builds = [manager](const farm::v1::ListBuildsRequest& r) { return manager->List(r); };
  s.get_build = [manager](const std::string& id) { return manager->Get(id); };
  s.visit_events = [manager](const std::string& id, int64_t after,
                             const StatusSources::EventVisitor& visit) -> absl::Status {
    // A subscription replays what is persisted from inside Subscribe; dropping it right away
    // leaves a snapshot. Its callbacks run under the build's lock: only collect there.
    absl::Mutex mu;
    bool stopped = false;
    absl::StatusOr<std::unique_ptr<BuildManager::Subscription>> sub = manager->Subscribe(
        id, after,
        [&](const farm::v1::BuildStreamEvent& e) {
          absl::MutexLock l(&mu);
          if (!stopped && !visit(e)) stopped = true;
        },
        nullptr);
    if (!sub.ok()) return sub.status();
    sub->reset();  // waits for a callback in progress; none after
    return absl::OkStatus();
  };
  if (dispatcher != nullptr) {
    s.workers = [dispatcher] { return dispatcher->Workers(); };
    s.queues = [dispatcher] {
      std::vector<QueueRow> out;
      absl::Time now = absl::Now();
      for (const dispatch::QueueSummary& q : dispatcher->Queues()) {
        out.push_back(QueueRow{q.platform, q.tenant, q.queued,
                               std::max(absl::ZeroDuration(), now - q.oldest_queued_at)});
      }
      return out;
    };
    s.dispatch = [dispatcher] {
      dispatch::DispatchStats st = dispatcher->Stats();
      DispatchCounters c;
      c.queued = st.queued;
      c.running = st.running;
      c.workers_connected = st.workers_connected;
      c.slots_total = st.slots_total;
      c.slots_busy = st.slots_busy;
      c.dispatched = st.dispatched;
      c.deduplicated = st.deduplicated;
      c.requeued = st.requeued;
      c.aborted = st.aborted;
      return c;
    };
  }
  s.tenant_weights = std::move(tenant_weights);
  return s;
}

absl::Status ServeStatusPages(common::http::HttpServer& server, StatusSources sources) {
  auto pages = std::make_shared<const StatusPages>(std::move(sources));
  auto route = [&server, pages](absl::string_view path,
                                Response (StatusPages::*fn)(const Request&) const) {
    return server.Handle(path, [pages, fn](const Request& r) {
      if (r.method != "GET" && r.method != "HEAD") {
        Response no = Response::Text(405, "only GET\n");
        no.headers.emplace_back("Allow", "GET, HEAD");
        return no;
      }
      return ((*pages).*fn)(r);
    });
  };
  struct Route {
    const char* path;
    Response (StatusPages::*fn)(const Request&) const;
  };
  const Route routes[] = {
      {"/", &StatusPages::OverviewPage},         {"/workers", &StatusPages::WorkersPage},
      {"/builds/*", &StatusPages::BuildPage},    {"/api/session", &StatusPages::Session},
      {"/api/overview", &StatusPages::Overview}, {"/api/workers", &StatusPages::Workers},
      {"/api/builds/*", &StatusPages::BuildApi},
  };
  for (const Route& r : routes) {
    if (absl::Status s = route(r.path, r.fn); !s.ok()) return s;
  }
  if (absl::Status s = server.Handle(
          "/static/status.js",
          [](const Request&) { return Asset("text/javascript; charset=utf-8", StatusScript()); });
      !s.ok()) {
    return s;
  }
  return server.Handle("/static/status.css", [](const Request&) {
    return Asset("text/css; charset=utf-8", StatusStyle());
  });
}

}  // namespace farm::scheduler::server
