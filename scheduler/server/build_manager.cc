#include "scheduler/server/build_manager.h"

#include <atomic>
#include <deque>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/scheduler_state.pb.h"
#include "oci/reference.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"
#include "scheduler/engine/events.h"
#include "scheduler/image/store.h"
#include "scheduler/pipeline/contexts.h"
#include "scheduler/pipeline/pipeline.h"

namespace farm::scheduler::server {

namespace {

using common::FromRocks;

constexpr char kBuildPrefix[] = "b/";
constexpr char kEventPrefix[] = "e/";
constexpr char kRequestPrefix[] = "r/";

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string EventKey(const std::string& id, int64_t seq) {
  return absl::StrFormat("%s%s/%020d", kEventPrefix, id, seq);
}

std::string NewId() {
  std::random_device rd;
  return absl::StrCat("b", absl::FormatTime("%Y%m%dT%H%M%S", absl::Now(), absl::UTCTimeZone()),
                      absl::StrFormat("%08x", rd()));
}

bool Finished(farm::v1::BuildInfo::State s) {
  return s == farm::v1::BuildInfo::SUCCEEDED || s == farm::v1::BuildInfo::FAILED ||
         s == farm::v1::BuildInfo::CANCELED;
}

}  // namespace

struct BuildManager::Impl {
  struct Sub;

  // A build the manager knows (all of them are loaded: BuildInfo is small; events stay on disk).
  struct Build {
    absl::Mutex mu;  // serializes appends and subscription changes
    farm::v1::StoredBuild stored;
    std::map<std::string, std::string> secrets;  // in memory only
    int64_t last_seq = 0;
    std::set<Sub*> subs;
    absl::Notification cancel;  // stops the engine: a user's cancel or a shutdown
    std::atomic<bool> user_canceled{false};
    bool ended = false;
  };

  struct Sub : public Subscription {
    Impl* impl = nullptr;
    std::shared_ptr<Build> build;
    EventFn on_event;
    EndFn on_end;
    ~Sub() override {
      absl::MutexLock l(&build->mu);
      build->subs.erase(this);
    }
  };

  Options opt;
  std::unique_ptr<rocksdb::DB> db;
  std::shared_ptr<image::ImageStore> images;

  absl::Mutex mu;
  std::map<std::string, std::shared_ptr<Build>> builds ABSL_GUARDED_BY(mu);
  std::map<std::string, std::deque<std::string>> queue ABSL_GUARDED_BY(mu);  // tenant → ids
  std::string last_tenant ABSL_GUARDED_BY(mu);
  int queued = 0 ABSL_GUARDED_BY(mu);
  int active = 0 ABSL_GUARDED_BY(mu);
  int64_t order = 0 ABSL_GUARDED_BY(mu);
  std::deque<std::string> finished ABSL_GUARDED_BY(mu);  // ids, oldest first
  bool stopping = false ABSL_GUARDED_BY(mu);
  bool shut_down = false ABSL_GUARDED_BY(mu);
  std::atomic<bool> stopping_flag{false};  // `stopping`, readable under a build's lock
  int64_t next_thread = 0 ABSL_GUARDED_BY(mu);
  std::map<int64_t, std::thread> threads ABSL_GUARDED_BY(mu);  // build threads
  std::vector<int64_t> exited ABSL_GUARDED_BY(mu);             // threads done with their build

  absl::Status Persist(const Build& b, bool sync) {
    rocksdb::WriteOptions wo;
    wo.sync = sync;
    return FromRocks(
        db->Put(wo, kBuildPrefix + b.stored.info().build_id(), b.stored.SerializeAsString()),
        "saving a build");
  }

  // Appends an event to a build's log and hands it to its subscribers.
  void Append(Build& b, farm::v1::BuildEvent e) {
    // Once stopping, what the engine reports is the interruption (steps failing UNAVAILABLE),
    // not the build's progress: the build resumes after the restart.
    if (stopping_flag.load() && !e.has_outcome()) return;
    if (e.time_unix_micros() == 0) e.set_time_unix_micros(NowMicros());
    absl::MutexLock l(&b.mu);
    farm::v1::BuildStreamEvent se;
    se.set_build_id(b.stored.info().build_id());
    se.set_seq(++b.last_seq);
    *se.mutable_event() = std::move(e);
    rocksdb::WriteOptions wo;  // events: process-crash safe, not fsynced each
    db->Put(wo, EventKey(se.build_id(), se.seq()), se.event().SerializeAsString())
        .PermitUncheckedError();
    b.stored.mutable_info()->set_last_seq(b.last_seq);
    const farm::v1::BuildEvent& ev = se.event();
    if (ev.has_outcome()) *b.stored.mutable_info()->mutable_outcome() = ev.outcome();
    if (ev.has_vertex()) {
      const farm::v1::VertexUpdate& v = ev.vertex();
      if (!v.key().empty()) {
        if (v.state() == farm::v1::VertexUpdate::CACHED) {
          b.stored.mutable_info()->set_steps_cached(b.stored.info().steps_cached() + 1);
          b.stored.mutable_info()->set_steps_done(b.stored.info().steps_done() + 1);
        } else if (v.state() == farm::v1::VertexUpdate::DONE) {
          b.stored.mutable_info()->set_steps_done(b.stored.info().steps_done() + 1);
        }
      }
    }
    for (Sub* s : b.subs) s->on_event(se);
  }

  // Ends the build's subscriptions: OK when it finished, UNAVAILABLE at shutdown.
  void End(Build& b, const absl::Status& why) {
    absl::MutexLock l(&b.mu);
    if (why.ok()) b.ended = true;
    for (Sub* s : b.subs) {
      if (s->on_end) s->on_end(why);
    }
    b.subs.clear();
  }

  // Events the manager itself reports on a build (a restart, a cancel before it started), made
  // like every other build event.
  engine::EventWriter Events(Build& b) {
    return engine::EventWriter([this, &b](const farm::v1::BuildEvent& e) { Append(b, e); });
  }
  void Warn(Build& b, const std::string& w) { Events(b).Warn(w); }

  // Picks the next build to run: round robin over tenants with queued builds, the highest
  // priority (then the oldest) of that tenant.
  std::shared_ptr<Build> NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (queue.empty()) return nullptr;
    auto it = queue.upper_bound(last_tenant);
    if (it == queue.end()) it = queue.begin();
    std::deque<std::string>& ids = it->second;
    size_t best = 0;
    for (size_t i = 1; i < ids.size(); ++i) {
      const auto& a = builds[ids[i]]->stored;
      const auto& b = builds[ids[best]]->stored;
      if (a.info().priority() > b.info().priority() ||
          (a.info().priority() == b.info().priority() && a.order() < b.order())) {
        best = i;
      }
    }
    std::string id = ids[best];
    ids.erase(ids.begin() + static_cast<long>(best));
    last_tenant = it->first;
    if (ids.empty()) queue.erase(it);
    --queued;
    return builds[id];
  }

  // Starts queued builds while there is room, and joins the threads of finished ones (except
  // `self`, the calling build thread, which is joined later).
  void Pump(int64_t self = -1) {
    std::vector<std::thread> to_join;
    {
      absl::MutexLock l(&mu);
      for (auto it = exited.begin(); it != exited.end();) {
        if (*it == self) {
          ++it;
          continue;
        }
        auto t = threads.find(*it);
        if (t != threads.end()) {
          to_join.push_back(std::move(t->second));
          threads.erase(t);
        }
        it = exited.erase(it);
      }
      while (!stopping && active < opt.max_active_builds) {
        std::shared_ptr<Build> b = NextLocked();
        if (!b) break;
        ++active;
        int64_t tid = next_thread++;
        threads[tid] = std::thread([this, b, tid] {
          bool resumable = RunBuild(*b);
          {
            absl::MutexLock l(&mu);
            --active;
            if (!resumable) {
              finished.push_back(b->stored.info().build_id());
              TrimLocked();
            }
            exited.push_back(tid);
          }
          Pump(tid);
        });
      }
    }
    for (std::thread& t : to_join) t.join();
  }

  void TrimLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    while (static_cast<int>(finished.size()) > opt.keep_events_of_builds) {
      std::string id = finished.front();
      finished.pop_front();
      db->DeleteRange(rocksdb::WriteOptions(), db->DefaultColumnFamily(), EventKey(id, 0),
                      EventKey(id, INT64_MAX))
          .PermitUncheckedError();
    }
  }

  void Note(const std::string& line) {
    if (opt.log) opt.log(line);
  }

  void SetState(Build& b, farm::v1::BuildInfo::State state) {
    {
      absl::MutexLock l(&b.mu);
      b.stored.mutable_info()->set_state(state);
      if (state == farm::v1::BuildInfo::RUNNING) {
        b.stored.mutable_info()->set_started_unix_micros(NowMicros());
      }
      if (Finished(state)) b.stored.mutable_info()->set_finished_unix_micros(NowMicros());
    }
    Persist(b, /*sync=*/true).IgnoreError();
  }

  // Ends a build: its state, a log line, its subscriptions. The pipeline reported the outcome
  // event (Append keeps it in the build's info); a build that never reached the pipeline (canceled
  // while queued) gets one here.
  void Finish(Build& b, const absl::Status& status) {
    bool reported;
    {
      absl::MutexLock l(&b.mu);
      reported = b.stored.info().has_outcome();
    }
    if (!reported) {
      farm::v1::BuildOutcome o;
      o.set_ok(false);
      o.set_error(absl::IsCancelled(status) ? "canceled"
                                            : absl::StrCat("failed to build: ", status.message()));
      Events(b).Outcome(o);
    }
    farm::v1::BuildOutcome o;
    {
      absl::MutexLock l(&b.mu);
      o = b.stored.info().outcome();
    }
    Note(absl::StrCat(
        "build ", b.stored.info().build_id(), " ",
        status.ok()                 ? "succeeded"
        : absl::IsCancelled(status) ? "canceled"
                                    : "failed",
        " (", o.cached_steps(), "/", o.steps(), " steps cached)",
        status.ok() ? absl::StrCat(": ", o.image_id()) : absl::StrCat(": ", o.error())));
    SetState(b, status.ok()                 ? farm::v1::BuildInfo::SUCCEEDED
                : absl::IsCancelled(status) ? farm::v1::BuildInfo::CANCELED
                                            : farm::v1::BuildInfo::FAILED);
    b.secrets.clear();
    End(b, absl::OkStatus());
  }

  bool Stopping() {
    absl::MutexLock l(&mu);
    return stopping;
  }

  // Runs a build to its end. False when it was interrupted by Shutdown (it stays RUNNING on
  // disk and resumes after a restart).
  bool RunBuild(Build& b) {
    const farm::v1::SubmitBuildRequest& req = b.stored.request();
    if (b.user_canceled) {
      Finish(b, absl::CancelledError("canceled"));
      return true;
    }
    SetState(b, farm::v1::BuildInfo::RUNNING);
    Note(absl::StrCat("build ", b.stored.info().build_id(), " started (tenant \"", req.tenant(),
                      "\", from ", req.client(), ")"));
    if (b.stored.had_secrets() && b.secrets.empty()) {
      Warn(b,
           "farm-scheduler restarted while this build was running: its secrets were not kept "
           "(they never touch the disk); steps that mount them will fail: resubmit the build");
    }
    {
      // A resumed build reports a new outcome.
      absl::MutexLock l(&b.mu);
      b.stored.mutable_info()->clear_outcome();
    }
    absl::Status s = RunPipeline(b, req);
    if (!s.ok() && !b.user_canceled && Stopping()) return false;
    Finish(b, s);
    return true;
  }

  // The build itself: the pipeline with the context from farm-cache and steps on the farm.
  absl::Status RunPipeline(Build& b, const farm::v1::SubmitBuildRequest& req) {
    BuildSpec spec;
    spec.build_id = b.stored.info().build_id();
    spec.tenant = req.tenant();
    spec.priority = req.priority();
    spec.cache_instance = req.cache_write_scope().empty() ? "main" : req.cache_write_scope();
    spec.secrets = b.secrets;

    pipeline::CasContext context(opt.cas, req.context());
    pipeline::Deps deps;
    deps.cas = opt.cas;
    deps.ac = opt.ac;
    deps.images = images;
    deps.executor = [&]() -> absl::StatusOr<std::shared_ptr<executor::StepExecutor>> {
      return opt.executors(spec);
    };

    pipeline::Request pr;
    pr.dockerfile = req.dockerfile();
    pr.dockerfile_name = req.dockerfile_name().empty() ? "Dockerfile" : req.dockerfile_name();
    pr.context = &context;
    for (const auto& [k, v] : req.build_args()) pr.plan.build_args[k] = v;
    pr.plan.target = req.target();
    if (!req.platform().empty()) pr.plan.platform = req.platform();
    pr.plan.layer_options = req.layer_options();
    if (!req.network().empty()) pr.plan.default_network = req.network();
    pr.plan.check_entitlements = true;
    pr.plan.allowed_entitlements = {req.allow_entitlements().begin(),
                                    req.allow_entitlements().end()};
    pr.plan.permitted_entitlements = opt.permitted_entitlements;
    pr.plan.permitted_by = "farm-scheduler (--allow-entitlement NAME)";
    pr.on_planned = [&b](const plan::Plan& p) {
      int total = 0;
      for (const plan::Stage& st : p.stages) {
        for (const plan::Step& step : st.steps) total += step.key.empty() ? 0 : 1;
      }
      absl::MutexLock l(&b.mu);
      b.stored.mutable_info()->set_steps_total(total);
      // steps_done/cached count this run's events (a resumed build counts again).
      b.stored.mutable_info()->set_steps_done(0);
      b.stored.mutable_info()->set_steps_cached(0);
    };
    pr.resolve.pull_policy = req.pull() ? image::PullPolicy::kAlways : image::PullPolicy::kMissing;
    pr.resolve.registry.insecure_registries = opt.insecure_registries;
    for (const std::string& r : req.insecure_registries()) {
      pr.resolve.registry.insecure_registries.push_back(r);
    }
    pr.resolve.registry.docker_config_dir = opt.docker_config_dir;
    pr.engine.cache_write_scope = spec.cache_instance;
    pr.engine.cache_read_scopes = {spec.cache_instance};
    for (const std::string& sc : req.cache_read_scopes()) {
      if (sc != spec.cache_instance) pr.engine.cache_read_scopes.push_back(sc);
    }
    pr.engine.no_cache = req.no_cache();
    if (req.layer_options().has_source_date_epoch()) {
      pr.engine.source_date_epoch = req.layer_options().source_date_epoch();
    }
    pr.engine.format = req.manifest_format() == "docker" ? image::ManifestFormat::kDocker
                                                         : image::ManifestFormat::kOci;
    for (const auto& [k, v] : req.labels()) pr.engine.labels[k] = v;
    pr.engine.max_parallel = 64;  // the dispatcher and the workers' slots limit what runs
    for (const std::string& t : req.tags()) {
      ASSIGN_OR_RETURN(oci::Reference r, oci::Reference::ParseWithDefaultTag(t));
      pr.tags.push_back(std::move(r));
    }
    pr.push = req.push();
    pr.push_registry = pr.resolve.registry;
    pr.first_vertex_id = std::max(1, req.first_vertex_id());

    engine::EventSink sink = [this, &b](const farm::v1::BuildEvent& e) {
      // A build interrupted by a shutdown did not fail: it resumes after the restart.
      if (e.has_outcome() && !e.outcome().ok() && !b.user_canceled && stopping_flag.load()) {
        return;
      }
      Append(b, e);
    };
    pipeline::Result r = pipeline::Run(deps, pr, sink, &b.cancel);
    return r.status;
  }

  absl::Status Load() {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    std::vector<std::shared_ptr<Build>> resume;
    std::vector<std::pair<int64_t, std::string>> done;
    for (it->Seek(kBuildPrefix); it->Valid() && it->key().starts_with(kBuildPrefix); it->Next()) {
      auto b = std::make_shared<Build>();
      if (!b->stored.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(absl::StrCat("corrupt build record ", it->key().ToString()));
      }
      const std::string& id = b->stored.info().build_id();
      // The last event seq.
      std::unique_ptr<rocksdb::Iterator> ev(db->NewIterator(rocksdb::ReadOptions()));
      ev->SeekForPrev(EventKey(id, INT64_MAX));
      if (ev->Valid() && ev->key().starts_with(absl::StrCat(kEventPrefix, id, "/"))) {
        std::string key = ev->key().ToString();
        b->last_seq = std::stoll(key.substr(key.rfind('/') + 1));
      }
      b->last_seq = std::max(b->last_seq, b->stored.info().last_seq());
      order = std::max(order, b->stored.order());
      if (Finished(b->stored.info().state())) {
        b->ended = true;
        done.push_back({b->stored.info().finished_unix_micros(), id});
      } else {
        resume.push_back(b);
      }
      builds[id] = b;
    }
    std::sort(done.begin(), done.end());
    for (auto& [t, id] : done) finished.push_back(id);
    std::sort(resume.begin(), resume.end(),
              [](const auto& a, const auto& b) { return a->stored.order() < b->stored.order(); });
    for (auto& b : resume) {
      bool was_running = b->stored.info().state() == farm::v1::BuildInfo::RUNNING;
      b->stored.mutable_info()->set_state(farm::v1::BuildInfo::QUEUED);
      queue[b->stored.info().tenant()].push_back(b->stored.info().build_id());
      ++queued;
      Note(absl::StrCat("build ", b->stored.info().build_id(), " resumes after the restart (",
                        was_running ? "was running" : "was queued", ")"));
      if (was_running) {
        Warn(*b,
             "farm-scheduler restarted: the build resumes (finished steps are cache hits, "
             "steps still running on workers are picked up again)");
      }
    }
    return absl::OkStatus();
  }
};

BuildManager::BuildManager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

BuildManager::~BuildManager() { Shutdown(); }

void BuildManager::StopAdmitting() {
  Impl& m = *impl_;
  absl::MutexLock l(&m.mu);
  m.stopping = true;
  m.stopping_flag = true;
}

void BuildManager::Shutdown() {
  Impl& m = *impl_;
  std::vector<std::shared_ptr<Impl::Build>> live;
  {
    absl::MutexLock l(&m.mu);
    if (m.shut_down) return;
    m.shut_down = true;
    m.stopping = true;
    m.stopping_flag = true;
    for (auto& [id, b] : m.builds) {
      if (b->ended) continue;
      live.push_back(b);
      if (!b->cancel.HasBeenNotified()) b->cancel.Notify();
    }
  }
  std::map<int64_t, std::thread> threads;
  {
    absl::MutexLock l(&m.mu);
    threads.swap(m.threads);
    m.exited.clear();
  }
  for (auto& [id, t] : threads) t.join();
  for (auto& b : live) {
    m.End(*b, absl::UnavailableError(
                  "farm-scheduler is shutting down; the build resumes when it is back"));
  }
  // Persist the RUNNING builds' last counters (their state stays RUNNING: they resume).
  for (auto& b : live) m.Persist(*b, /*sync=*/false).IgnoreError();
  m.db->FlushWAL(/*sync=*/true).PermitUncheckedError();
}

absl::StatusOr<std::unique_ptr<BuildManager>> BuildManager::Create(Options options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("no state dir");
  if (!options.cas || !options.ac || !options.executors) {
    return absl::InvalidArgumentError("BuildManager needs a CAS, an action cache and executors");
  }
  RETURN_IF_ERROR(common::MakeDirs(options.state_dir, 0700));
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  rocksdb::Options ro;
  ro.create_if_missing = true;
  ro.keep_log_file_num = 2;
  ro.max_manifest_file_size = 4 << 20;
  rocksdb::DB* raw = nullptr;
  std::string dir = common::JoinPath(impl->opt.state_dir, "builds");
  rocksdb::Status s = rocksdb::DB::Open(ro, dir, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " is in use by another farm-scheduler"));
    }
    return FromRocks(s, absl::StrCat("opening ", dir));
  }
  impl->db.reset(raw);
  ASSIGN_OR_RETURN(
      std::unique_ptr<image::RocksDbImageStore> images,
      image::RocksDbImageStore::Create(common::JoinPath(impl->opt.state_dir, "images")));
  impl->images = std::move(images);
  {
    absl::MutexLock l(&impl->mu);
    RETURN_IF_ERROR(impl->Load());
  }
  auto mgr = std::unique_ptr<BuildManager>(new BuildManager(std::move(impl)));
  mgr->impl_->Pump();
  return mgr;
}

absl::StatusOr<std::string> BuildManager::Submit(const farm::v1::SubmitBuildRequest& request) {
  if (request.dockerfile().empty()) return absl::InvalidArgumentError("no Dockerfile given");
  if (request.context().digest().empty()) {
    return absl::InvalidArgumentError("no build context given");
  }
  {
    // Syntax errors are the client's, answered at once (FILE:LINE:COL); planning needs base
    // images and the context, so its errors come as the build's failure.
    std::string name = request.dockerfile_name().empty() ? "Dockerfile" : request.dockerfile_name();
    absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(request.dockerfile(), name);
    if (!tree.ok()) return absl::InvalidArgumentError(tree.status().message());
    absl::StatusOr<dockerfile::Dockerfile> df = dockerfile::BuildInstructions(*tree);
    if (!df.ok()) return absl::InvalidArgumentError(df.status().message());
    for (const std::string& t : request.tags()) {
      absl::StatusOr<oci::Reference> r = oci::Reference::ParseWithDefaultTag(t);
      if (!r.ok())
        return absl::InvalidArgumentError(absl::StrCat("-t ", t, ": ", r.status().message()));
    }
  }
  Impl& m = *impl_;
  std::string id;
  {
    absl::MutexLock l(&m.mu);
    if (!request.client_request_id().empty()) {
      std::string existing;
      if (m.db->Get(rocksdb::ReadOptions(), kRequestPrefix + request.client_request_id(), &existing)
              .ok()) {
        return existing;
      }
    }
    if (m.queued >= m.opt.max_queued_builds) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the build queue is full (", m.queued, " builds waiting); try again later"));
    }
    auto b = std::make_shared<Impl::Build>();
    id = NewId();
    farm::v1::SubmitBuildRequest stored_req = request;
    for (const auto& [k, v] : request.secrets()) b->secrets[k] = v;
    stored_req.clear_secrets();
    *b->stored.mutable_request() = std::move(stored_req);
    b->stored.set_had_secrets(!request.secrets().empty());
    b->stored.set_order(++m.order);
    farm::v1::BuildInfo* info = b->stored.mutable_info();
    info->set_build_id(id);
    info->set_state(farm::v1::BuildInfo::QUEUED);
    info->set_tenant(request.tenant());
    info->set_priority(request.priority());
    info->set_client(request.client());
    info->set_dockerfile_name(request.dockerfile_name());
    for (const std::string& t : request.tags()) info->add_tags(t);
    info->set_submitted_unix_micros(NowMicros());
    rocksdb::WriteBatch batch;
    batch.Put(kBuildPrefix + id, b->stored.SerializeAsString());
    if (!request.client_request_id().empty()) {
      batch.Put(kRequestPrefix + request.client_request_id(), id);
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(FromRocks(m.db->Write(wo, &batch), "saving the build"));
    m.builds[id] = b;
    m.queue[request.tenant()].push_back(id);
    ++m.queued;
  }
  m.Pump();
  return id;
}

absl::StatusOr<std::unique_ptr<BuildManager::Subscription>> BuildManager::Subscribe(
    const std::string& build_id, int64_t after_seq, EventFn on_event, EndFn on_end) {
  Impl& m = *impl_;
  std::shared_ptr<Impl::Build> b;
  {
    absl::MutexLock l(&m.mu);
    auto it = m.builds.find(build_id);
    if (it == m.builds.end()) return absl::NotFoundError(absl::StrCat("no build ", build_id));
    b = it->second;
  }
  auto sub = std::make_unique<Impl::Sub>();
  sub->impl = &m;
  sub->build = b;
  sub->on_event = std::move(on_event);
  sub->on_end = std::move(on_end);
  absl::MutexLock l(&b->mu);
  // Replay what is on disk after `after_seq`, then go live (appends wait for this lock).
  std::unique_ptr<rocksdb::Iterator> it(m.db->NewIterator(rocksdb::ReadOptions()));
  std::string prefix = absl::StrCat(kEventPrefix, build_id, "/");
  for (it->Seek(EventKey(build_id, after_seq + 1)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    farm::v1::BuildStreamEvent se;
    se.set_build_id(build_id);
    std::string key = it->key().ToString();
    se.set_seq(std::stoll(key.substr(key.rfind('/') + 1)));
    if (!se.mutable_event()->ParseFromArray(it->value().data(),
                                            static_cast<int>(it->value().size()))) {
      continue;
    }
    sub->on_event(se);
  }
  if (b->ended) {
    if (sub->on_end) sub->on_end(absl::OkStatus());
  } else if (m.stopping_flag.load()) {
    if (sub->on_end) {
      sub->on_end(absl::UnavailableError("farm-scheduler is shutting down"));
    }
  } else {
    b->subs.insert(sub.get());
  }
  return std::unique_ptr<Subscription>(std::move(sub));
}

absl::StatusOr<farm::v1::BuildInfo> BuildManager::Get(const std::string& build_id) {
  absl::MutexLock l(&impl_->mu);
  auto it = impl_->builds.find(build_id);
  if (it == impl_->builds.end()) return absl::NotFoundError(absl::StrCat("no build ", build_id));
  absl::MutexLock bl(&it->second->mu);
  return it->second->stored.info();
}

absl::StatusOr<farm::v1::BuildInfo> BuildManager::Cancel(const std::string& build_id) {
  Impl& m = *impl_;
  std::shared_ptr<Impl::Build> b;
  bool was_queued = false;
  {
    absl::MutexLock l(&m.mu);
    auto it = m.builds.find(build_id);
    if (it == m.builds.end()) return absl::NotFoundError(absl::StrCat("no build ", build_id));
    b = it->second;
    if (Finished(b->stored.info().state())) return b->stored.info();
    b->user_canceled = true;
    if (!b->cancel.HasBeenNotified()) b->cancel.Notify();
    // A queued build leaves the queue at once.
    auto q = m.queue.find(b->stored.info().tenant());
    if (q != m.queue.end()) {
      auto pos = std::find(q->second.begin(), q->second.end(), build_id);
      if (pos != q->second.end()) {
        q->second.erase(pos);
        if (q->second.empty()) m.queue.erase(q);
        --m.queued;
        was_queued = true;
      }
    }
  }
  if (was_queued) {
    m.Finish(*b, absl::CancelledError("canceled"));
    absl::MutexLock l(&m.mu);
    m.finished.push_back(build_id);
  }
  return Get(build_id);
}

absl::StatusOr<std::vector<farm::v1::BuildInfo>> BuildManager::List(
    const farm::v1::ListBuildsRequest& r) {
  std::vector<farm::v1::BuildInfo> out;
  absl::MutexLock l(&impl_->mu);
  for (auto& [id, b] : impl_->builds) {
    absl::MutexLock bl(&b->mu);
    const farm::v1::BuildInfo& info = b->stored.info();
    if (r.active_only() && Finished(info.state())) continue;
    if (!r.tenant().empty() && info.tenant() != r.tenant()) continue;
    out.push_back(info);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.submitted_unix_micros() > b.submitted_unix_micros();
  });
  size_t limit = r.limit() > 0 ? static_cast<size_t>(r.limit()) : 100;
  if (out.size() > limit) out.resize(limit);
  return out;
}

farm::v1::SchedulerInfo BuildManager::Info() {
  farm::v1::SchedulerInfo info;
  absl::MutexLock l(&impl_->mu);
  info.set_cache_address(impl_->opt.cache_address);
  info.set_version(impl_->opt.version);
  if (impl_->opt.worker_count) info.set_workers(impl_->opt.worker_count());
  info.set_max_queued_builds(impl_->opt.max_queued_builds);
  info.set_queued_builds(impl_->queued);
  info.set_running_builds(impl_->active);
  return info;
}

}  // namespace farm::scheduler::server
