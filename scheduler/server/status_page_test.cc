#include "scheduler/server/status_page.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "auth/authorizer.h"
#include "auth/grpc_auth.h"
#include "auth/jwk.h"
#include "auth/jwt.h"
#include "common/fs.h"
#include "common/http/http_server.h"
#include "common/http/test_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace farm::scheduler::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

farm::v1::BuildStreamEvent Vertex(int64_t seq, int32_t id, const std::string& name,
                                  farm::v1::VertexUpdate::State state, const std::string& key = "",
                                  const std::string& worker = "", int64_t micros = 0) {
  farm::v1::BuildStreamEvent e;
  e.set_seq(seq);
  e.mutable_event()->set_time_unix_micros(1000 + seq);
  farm::v1::VertexUpdate* u = e.mutable_event()->mutable_vertex();
  u->set_id(id);
  u->set_name(name);
  u->set_state(state);
  u->set_key(key);
  u->set_worker(worker);
  u->set_duration_micros(micros);
  return e;
}

farm::v1::BuildStreamEvent LogLine(int64_t seq, int32_t id, const std::string& text) {
  farm::v1::BuildStreamEvent e;
  e.set_seq(seq);
  e.mutable_event()->mutable_log()->set_id(id);
  e.mutable_event()->mutable_log()->set_data(text);
  return e;
}

farm::v1::BuildInfo Info(const std::string& id, const std::string& tenant,
                         farm::v1::BuildInfo::State state, int64_t submitted) {
  farm::v1::BuildInfo b;
  b.set_build_id(id);
  b.set_tenant(tenant);
  b.set_state(state);
  b.set_dockerfile_name("Dockerfile");
  b.set_submitted_unix_micros(submitted);
  return b;
}

// ---------------------------------------------------------------------------------------------
// Pure pieces.

TEST(HtmlEscapeTest, EscapesMarkupAndQuotes) {
  EXPECT_EQ(HtmlEscape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;");
  EXPECT_EQ(HtmlEscape("plain b-1"), "plain b-1");
}

TEST(HtmlEscapeTest, ReplacesInvalidUtf8) {
  EXPECT_EQ(HtmlEscape("a\xff"
                       "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(HtmlEscape("caf\xC3\xA9"), "caf\xC3\xA9");  // valid UTF-8 stays
  EXPECT_EQ(HtmlEscape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST(StepSummaryTest, FoldsEventsIntoSteps) {
  StepSummary s;
  s.Add(Vertex(1, 1, "[1/3] FROM debian", farm::v1::VertexUpdate::STARTED));
  s.Add(Vertex(2, 1, "[1/3] FROM debian", farm::v1::VertexUpdate::CACHED, "k1"));
  s.Add(Vertex(3, 2, "[2/3] RUN make", farm::v1::VertexUpdate::STARTED));
  s.Add(LogLine(4, 2, "compiling"));
  s.Add(LogLine(5, 2, "linking"));
  s.Add(Vertex(6, 2, "[2/3] RUN make", farm::v1::VertexUpdate::DONE, "k2", "w-1", 2500000));
  s.Add(Vertex(7, 3, "[3/3] RUN test", farm::v1::VertexUpdate::STARTED));
  farm::v1::BuildStreamEvent failed =
      Vertex(8, 3, "[3/3] RUN test", farm::v1::VertexUpdate::FAILED, "k3", "w-2", 10);
  failed.mutable_event()->mutable_vertex()->set_error("exit code: 1");
  s.Add(failed);
  std::vector<StepView> steps = s.Steps();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_TRUE(steps[0].cached);
  EXPECT_EQ(steps[0].state, "cached");
  EXPECT_EQ(steps[1].state, "done");
  EXPECT_FALSE(steps[1].cached);
  EXPECT_EQ(steps[1].worker, "w-1");
  EXPECT_EQ(steps[1].duration_micros, 2500000);
  EXPECT_EQ(steps[1].log_lines, 2);
  EXPECT_EQ(steps[1].started_unix_micros, 1003);
  EXPECT_EQ(steps[2].state, "failed");
  EXPECT_EQ(steps[2].error, "exit code: 1");
  EXPECT_EQ(s.last_seq(), 8);
}

std::vector<StepView> Steps(const std::vector<farm::v1::BuildStreamEvent>& events) {
  StepSummary s;
  for (const auto& e : events) s.Add(e);
  return s.Steps();
}

TEST(ExplainStepMissTest, SameKeyMeansTheEntryWasMissing) {
  auto now = Steps({Vertex(1, 2, "[2/2] RUN make", farm::v1::VertexUpdate::DONE, "aaaa")});
  EarlierBuild prev{
      Info("b-old", "t", farm::v1::BuildInfo::SUCCEEDED, 1),
      Steps({Vertex(1, 5, "[2/2] RUN make", farm::v1::VertexUpdate::DONE, "aaaa", "w-9")})};
  absl::StatusOr<std::string> why =
      ExplainStepMiss(Info("b-new", "t", farm::v1::BuildInfo::SUCCEEDED, 2), now, 2, {prev});
  ASSERT_TRUE(why.ok()) << why.status();
  EXPECT_THAT(*why, HasSubstr("build b-old"));
  EXPECT_THAT(*why, HasSubstr("run on worker w-9"));
  EXPECT_THAT(*why, HasSubstr("The key is the same"));
  EXPECT_THAT(*why, HasSubstr("evicted"));
}

TEST(ExplainStepMissTest, PointsAtTheFirstChangedParent) {
  auto now = Steps({Vertex(1, 1, "[build 1/4] FROM debian", farm::v1::VertexUpdate::CACHED, "f"),
                    Vertex(2, 2, "[build 2/4] COPY . /src", farm::v1::VertexUpdate::DONE, "c2"),
                    Vertex(3, 3, "[build 3/4] RUN make", farm::v1::VertexUpdate::DONE, "r2"),
                    Vertex(4, 4, "[build 4/4] RUN test", farm::v1::VertexUpdate::DONE, "t2")});
  EarlierBuild prev{
      Info("b-old", "t", farm::v1::BuildInfo::SUCCEEDED, 1),
      Steps({Vertex(1, 1, "[build 1/4] FROM debian", farm::v1::VertexUpdate::CACHED, "f"),
             Vertex(2, 2, "[build 2/4] COPY . /src", farm::v1::VertexUpdate::DONE, "c1"),
             Vertex(3, 3, "[build 3/4] RUN make", farm::v1::VertexUpdate::DONE, "r1"),
             Vertex(4, 4, "[build 4/4] RUN test", farm::v1::VertexUpdate::DONE, "t1")})};
  farm::v1::BuildInfo b = Info("b-new", "t", farm::v1::BuildInfo::SUCCEEDED, 2);
  absl::StatusOr<std::string> why = ExplainStepMiss(b, now, 4, {prev});
  ASSERT_TRUE(why.ok()) << why.status();
  EXPECT_THAT(*why, HasSubstr("an earlier step of stage build changed: #2 [build 2/4] COPY"));
  // The COPY itself: every step before it kept its key, so its own inputs changed.
  why = ExplainStepMiss(b, now, 2, {prev});
  ASSERT_TRUE(why.ok()) << why.status();
  EXPECT_THAT(*why, HasSubstr("this step's own inputs changed"));
  EXPECT_THAT(*why, HasSubstr("content or mode of the files"));
}

TEST(ExplainStepMissTest, FirstRunAndErrors) {
  auto now = Steps({Vertex(1, 1, "[1/2] FROM x", farm::v1::VertexUpdate::CACHED, "f"),
                    Vertex(2, 2, "[2/2] RUN new", farm::v1::VertexUpdate::DONE, "n")});
  farm::v1::BuildInfo b = Info("b-new", "t", farm::v1::BuildInfo::SUCCEEDED, 2);
  absl::StatusOr<std::string> why = ExplainStepMiss(b, now, 2, {});
  ASSERT_TRUE(why.ok());
  EXPECT_THAT(*why, HasSubstr("first run"));
  EXPECT_EQ(ExplainStepMiss(b, now, 1, {}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // a hit
  EXPECT_EQ(ExplainStepMiss(b, now, 7, {}).status().code(), absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------------
// The HTTP endpoints, with fake sources.

constexpr char kEvil[] = "<img src=x onerror=alert(1)>";

class StatusServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    builds_ = {Info("b-1", "web", farm::v1::BuildInfo::SUCCEEDED, 100),
               Info("b-2", "web", farm::v1::BuildInfo::RUNNING, 200),
               Info("b-3", "ml", farm::v1::BuildInfo::QUEUED, 300)};
    builds_[0].add_tags(kEvil);
    builds_[0].set_steps_done(4);
    builds_[0].set_steps_cached(3);
    builds_[1].set_steps_done(2);
    builds_[1].set_steps_cached(0);
    events_["b-1"] = {
        Vertex(1, 1, "[1/2] FROM scratch", farm::v1::VertexUpdate::CACHED, "k1"),
        Vertex(2, 2, "[2/2] RUN make", farm::v1::VertexUpdate::STARTED),
        LogLine(3, 2, std::string("hello ") + kEvil + " \xff"),
        Vertex(4, 2, "[2/2] RUN make", farm::v1::VertexUpdate::DONE, "k2", "w-1", 1500000)};
    events_["b-2"] = {Vertex(1, 1, "[1/2] FROM scratch", farm::v1::VertexUpdate::CACHED, "k1"),
                      Vertex(2, 2, "[2/2] RUN make", farm::v1::VertexUpdate::DONE, "k2b", "w-2")};
    events_["b-3"] = {};  // queued: no events yet
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  StatusSources Sources() {
    StatusSources s;
    s.list_builds = [this](const farm::v1::ListBuildsRequest& r)
        -> absl::StatusOr<std::vector<farm::v1::BuildInfo>> {
      std::vector<farm::v1::BuildInfo> out;
      for (auto it = builds_.rbegin(); it != builds_.rend(); ++it) {
        if (!r.tenant().empty() && it->tenant() != r.tenant()) continue;
        if (r.active_only() && (it->state() != farm::v1::BuildInfo::QUEUED &&
                                it->state() != farm::v1::BuildInfo::RUNNING)) {
          continue;
        }
        out.push_back(*it);
      }
      return out;
    };
    s.get_build = [this](const std::string& id) -> absl::StatusOr<farm::v1::BuildInfo> {
      for (const auto& b : builds_) {
        if (b.build_id() == id) return b;
      }
      return absl::NotFoundError(absl::StrCat("no build ", id));
    };
    s.visit_events = [this](const std::string& id, int64_t after,
                            const StatusSources::EventVisitor& visit) -> absl::Status {
      auto it = events_.find(id);
      if (it == events_.end()) return absl::NotFoundError(absl::StrCat("no build ", id));
      for (const auto& e : it->second) {
        if (e.seq() > after && !visit(e)) break;
      }
      return absl::OkStatus();
    };
    s.workers = [] {
      farm::v1::WorkerInfo w;
      w.set_id("w-1");
      w.set_platform("linux/amd64");
      w.add_emulated_platforms("linux/arm64");
      w.set_slots(4);
      w.set_busy(1);
      w.set_layers(7);
      w.set_connected(true);
      w.set_draining(true);
      (*w.mutable_labels())["zone"] = kEvil;
      return std::vector<farm::v1::WorkerInfo>{w};
    };
    s.dispatch = [] {
      DispatchCounters c;
      c.queued = 5;
      c.slots_total = 4;
      c.slots_busy = 1;
      c.workers_connected = 1;
      return c;
    };
    s.queues = [] { return std::vector<QueueRow>{{"linux/amd64", "ml", 5, absl::Seconds(30)}}; };
    s.tenant_weights = {{"web", 3}};
    s.now = [] { return absl::FromUnixMicros(1000000); };
    return s;
  }

  void Start(StatusSources s) {
    auto server = common::http::HttpServer::Create("127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(ServeStatusPages(*server_, std::move(s)).ok());
  }

  common::http::ClientResponse Get(const std::string& path, const std::string& token = "") {
    common::http::FetchOptions o;
    if (!token.empty()) o.headers.push_back("Authorization: Bearer " + token);
    auto r = common::http::Fetch(absl::StrCat("http://127.0.0.1:", server_->port(), path), o);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : common::http::ClientResponse{};
  }

  Json GetJson(const std::string& path, const std::string& token = "", long want = 200) {
    common::http::ClientResponse r = Get(path, token);
    EXPECT_EQ(r.status, want) << path << ": " << r.body;
    EXPECT_THAT(r.headers["content-type"], HasSubstr("application/json"));
    return Json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  }

  std::vector<farm::v1::BuildInfo> builds_;
  std::map<std::string, std::vector<farm::v1::BuildStreamEvent>> events_;
  std::unique_ptr<common::http::HttpServer> server_;
};

TEST_F(StatusServerTest, PagesAreSelfContainedAndCarryNoData) {
  Start(Sources());
  for (const char* path : {"/", "/workers", "/builds/b-1"}) {
    common::http::ClientResponse r = Get(path);
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_THAT(r.headers["content-type"], HasSubstr("text/html"));
    EXPECT_THAT(r.headers["content-security-policy"], HasSubstr("script-src 'self'"));
    // Nothing from elsewhere: only this server's script and style.
    EXPECT_THAT(r.body, Not(HasSubstr("http://")));
    EXPECT_THAT(r.body, Not(HasSubstr("https://")));
    EXPECT_THAT(r.body, HasSubstr("src=\"/static/status.js\""));
    EXPECT_THAT(r.body, Not(HasSubstr("<script>")));  // no inline script
  }
  common::http::ClientResponse js = Get("/static/status.js");
  EXPECT_EQ(js.status, 200);
  EXPECT_THAT(js.headers["content-type"], HasSubstr("javascript"));
  EXPECT_THAT(js.body, Not(HasSubstr("innerHTML")));
  EXPECT_THAT(js.body, Not(HasSubstr("eval(")));
  EXPECT_EQ(Get("/static/status.css").status, 200);
  EXPECT_EQ(Get("/nope").status, 404);
}

TEST_F(StatusServerTest, BuildPageEscapesTheIdFromThePath) {
  Start(Sources());
  common::http::ClientResponse r = Get("/builds/%3Cscript%3Ex%22y");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.body, HasSubstr("data-build-id=\"&lt;script&gt;x&quot;y\""));
  EXPECT_THAT(r.body, Not(HasSubstr("<script>x")));
}

TEST_F(StatusServerTest, OverviewListsAndFilters) {
  Start(Sources());
  Json all = GetJson("/api/overview");
  ASSERT_TRUE(all.is_object());
  EXPECT_FALSE(all["viewer"]["auth"].get<bool>());
  ASSERT_EQ(all["builds"].size(), 3u);
  EXPECT_EQ(all["builds"][0]["id"], "b-3");  // newest first
  // User input stays a JSON string, as is (the page puts it in with textContent).
  EXPECT_EQ(all["builds"][2]["tags"][0], kEvil);
  EXPECT_EQ(all["counts"]["queued"], 1);
  EXPECT_EQ(all["counts"]["running"], 1);
  EXPECT_EQ(all["cache"]["steps"], 6);
  EXPECT_EQ(all["cache"]["cached"], 3);
  EXPECT_DOUBLE_EQ(all["cache"]["hit_rate"].get<double>(), 0.5);
  EXPECT_EQ(all["dispatch"]["queued"], 5);
  // Tenants: web weighs 3, ml 1, both have work: 75% / 25%.
  ASSERT_EQ(all["tenants"].size(), 2u);
  EXPECT_EQ(all["tenants"][0]["tenant"], "ml");
  EXPECT_DOUBLE_EQ(all["tenants"][0]["share"].get<double>(), 0.25);
  EXPECT_EQ(all["tenants"][0]["queued_tasks"], 5);
  EXPECT_DOUBLE_EQ(all["tenants"][0]["oldest_wait_seconds"].get<double>(), 30);
  EXPECT_DOUBLE_EQ(all["tenants"][1]["share"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(all["tenants"][1]["hit_rate"].get<double>(), 0.5);

  Json web = GetJson("/api/overview?tenant=web&state=finished");
  ASSERT_EQ(web["builds"].size(), 1u);
  EXPECT_EQ(web["builds"][0]["id"], "b-1");
  Json active = GetJson("/api/overview?state=active&limit=1");
  ASSERT_EQ(active["builds"].size(), 1u);
  EXPECT_EQ(active["builds"][0]["id"], "b-3");
  GetJson("/api/overview?state=bogus", "", 400);
  GetJson("/api/overview?limit=0", "", 400);
}

TEST_F(StatusServerTest, BuildStepsLogAndWhyMiss) {
  Start(Sources());
  Json b = GetJson("/api/builds/b-1");
  EXPECT_EQ(b["build"]["id"], "b-1");
  ASSERT_EQ(b["steps"].size(), 2u);
  EXPECT_TRUE(b["steps"][0]["cached"].get<bool>());
  EXPECT_FALSE(b["steps"][0]["missed"].get<bool>());
  EXPECT_EQ(b["steps"][1]["worker"], "w-1");
  EXPECT_TRUE(b["steps"][1]["missed"].get<bool>());
  EXPECT_EQ(b["steps"][1]["log_lines"], 1);
  EXPECT_FALSE(b["active"].get<bool>());

  Json log = GetJson("/api/builds/b-1/log?after=0");
  ASSERT_EQ(log["lines"].size(), 1u);
  // Invalid UTF-8 in a log becomes U+FFFD; markup stays text.
  EXPECT_EQ(log["lines"][0]["text"], std::string("hello ") + kEvil + " \xEF\xBF\xBD");
  EXPECT_EQ(log["next"], 4);
  EXPECT_TRUE(log["done"].get<bool>());
  Json later = GetJson("/api/builds/b-1/log?after=4");
  EXPECT_EQ(later["lines"].size(), 0u);
  GetJson("/api/builds/b-1/log?after=-1", "", 400);

  // b-2's RUN make has another key than b-1's, and FROM kept its key.
  Json why = GetJson("/api/builds/b-2/why-miss?vertex=2");
  EXPECT_THAT(why["text"].get<std::string>(), HasSubstr("build b-1"));
  EXPECT_THAT(why["text"].get<std::string>(), HasSubstr("own inputs changed"));
  GetJson("/api/builds/b-2/why-miss?vertex=1", "", 409);  // a hit
  GetJson("/api/builds/b-2/why-miss", "", 400);
  GetJson("/api/builds/nope", "", 404);
  GetJson("/api/builds/b-1/other", "", 404);
}

TEST_F(StatusServerTest, Workers) {
  Start(Sources());
  Json w = GetJson("/api/workers");
  ASSERT_EQ(w["workers"].size(), 1u);
  EXPECT_EQ(w["workers"][0]["id"], "w-1");
  EXPECT_EQ(w["workers"][0]["layers"], 7);
  EXPECT_EQ(w["workers"][0]["platform"], "linux/amd64");
  EXPECT_EQ(w["workers"][0]["emulated_platforms"], Json::array({"linux/arm64"}));
  EXPECT_TRUE(w["workers"][0]["draining"].get<bool>());
  EXPECT_EQ(w["workers"][0]["labels"]["zone"], kEvil);
  EXPECT_EQ(w["dispatch"]["slots_total"], 4);
}

TEST_F(StatusServerTest, OnlyGet) {
  Start(Sources());
  common::http::FetchOptions o;
  o.method = "POST";
  auto r =
      common::http::Fetch(absl::StrCat("http://127.0.0.1:", server_->port(), "/api/overview"), o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 405);
}

// With tokens: the JSON needs one; a tenant's token sees its tenant only, an admin's all.
class StatusAuthTest : public StatusServerTest {
 protected:
  void SetUp() override {
    StatusServerTest::SetUp();
    auto tmp = common::TempDir::Create("status-auth");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    auto key = auth::GenerateSigningKey(auth::JwsAlg::kES256);
    ASSERT_TRUE(key.ok()) << key.status();
    std::string key_file = tmp_->path() + "/keys.pem";
    ASSERT_TRUE(common::WriteFileAtomic(key_file, key->PublicKeyPem()).ok());
    auth::ServerAuthOptions o;
    o.tokens.key_file = key_file;
    auto rules = auth::TableAuthorizer::Create({});
    ASSERT_TRUE(rules.ok()) << rules.status();
    o.authorizer = *std::move(rules);
    o.log = [](absl::string_view) {};
    auto sa = auth::ServerAuth::Create(std::move(o));
    ASSERT_TRUE(sa.ok()) << sa.status();
    auth_ = *std::move(sa);
    auto mint = [&](const std::string& sub, const std::string& tenant,
                    std::vector<std::string> roles) {
      auth::TokenClaims c;
      c.subject = sub;
      c.tenant = tenant;
      c.roles = std::move(roles);
      auto t = auth::MintToken(*key, c, absl::Now());
      EXPECT_TRUE(t.ok()) << t.status();
      return t.ok() ? *t : "";
    };
    web_ = mint("ci-web", "web", {"submit"});
    admin_ = mint("ops", "", {"admin"});
    StatusSources s = Sources();
    s.auth = auth_;
    Start(std::move(s));
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<const auth::ServerAuth> auth_;
  std::string web_, admin_;
};

TEST_F(StatusAuthTest, JsonNeedsAToken) {
  for (const char* path : {"/api/session", "/api/overview", "/api/workers", "/api/builds/b-1",
                           "/api/builds/b-1/log"}) {
    common::http::ClientResponse r = Get(path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
    EXPECT_THAT(r.body, Not(HasSubstr("b-1\"")));
  }
  EXPECT_EQ(Get("/api/overview", "not-a-token").status, 401);
  // The pages themselves hold no data and load (they show the login form).
  common::http::ClientResponse page = Get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.body, HasSubstr("id=\"login\""));
}

TEST_F(StatusAuthTest, TenantTokenSeesItsTenantOnly) {
  Json s = GetJson("/api/session", web_);
  EXPECT_TRUE(s["auth"].get<bool>());
  EXPECT_EQ(s["tenant"], "web");
  EXPECT_FALSE(s["all_tenants"].get<bool>());
  Json o = GetJson("/api/overview", web_);
  ASSERT_EQ(o["builds"].size(), 2u);
  for (const auto& b : o["builds"]) EXPECT_EQ(b["tenant"], "web");
  ASSERT_EQ(o["tenants"].size(), 1u);
  EXPECT_EQ(o["tenants"][0]["tenant"], "web");
  EXPECT_TRUE(o["tenants"][0]["share"].is_null());  // others' work is not its to know
  EXPECT_EQ(o["queues"].size(), 0u);                // ml's queue is hidden
  GetJson("/api/overview?tenant=ml", web_, 403);
  GetJson("/api/builds/b-3", web_, 404);  // ml's build: not even confirmed
  GetJson("/api/builds/b-1", web_, 200);
  GetJson("/api/workers", web_, 200);
}

TEST_F(StatusAuthTest, AdminSeesEverything) {
  Json o = GetJson("/api/overview", admin_);
  EXPECT_EQ(o["builds"].size(), 3u);
  EXPECT_EQ(o["tenants"].size(), 2u);
  GetJson("/api/builds/b-3", admin_, 200);
  Json s = GetJson("/api/session", admin_);
  EXPECT_TRUE(s["all_tenants"].get<bool>());
}

}  // namespace
}  // namespace farm::scheduler::server
