#include "scheduler/server/build_manager.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/scheduler_state.pb.h"
#include "oci/platform.h"
#include "oci/reference.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/dockerfile/parser.h"
#include "scheduler/engine/events.h"
#include "scheduler/image/store.h"
#include "scheduler/pipeline/pipeline.h"
#include "scheduler/server/admission.h"
#include "scheduler/server/build_log.h"
#include "scheduler/server/build_runner.h"
#include "scheduler/server/event_fanout.h"

namespace farm::scheduler::server {

namespace {

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

std::string NewId() {
  std::random_device rd;
  return absl::StrCat("b", absl::FormatTime("%Y%m%dT%H%M%S", absl::Now(), absl::UTCTimeZone()),
                      absl::StrFormat("%08x", rd()));
}

}  // namespace

struct BuildManager::Impl {
  // A build the manager knows (all of them are loaded: BuildInfo is small; events stay on disk).
  struct Build {
    Build(farm::v1::StoredBuild s, int64_t last_seq, bool ended, EventLog* log,
          const std::atomic<bool>* closing)
        : stored(std::move(s)), events(stored.info().build_id(), last_seq, ended, log, closing) {}

    absl::Mutex mu;  // guards changes to stored.info() (inside `events`' lock when publishing)
    farm::v1::StoredBuild stored;
    std::map<std::string, std::string> secrets;  // in memory only
    EventFanout events;
    absl::Notification cancel;  // stops the engine: a user's cancel or a shutdown
    std::atomic<bool> user_canceled{false};
  };

  // What Subscribe hands out: the build's subscription, and the build itself (its fan-out must
  // outlive the subscription, which may outlive the manager).
  struct Sub : public Subscription {
    std::shared_ptr<Build> build;  // destroyed after `sub`
    std::unique_ptr<EventFanout::Subscription> sub;
  };

  explicit Impl(Options options)
      : opt(std::move(options)),
        admission(opt.max_active_builds, opt.max_queued_builds, opt.max_queued_builds_per_tenant) {}

  Options opt;
  std::unique_ptr<BuildLog> log;
  std::unique_ptr<BuildRunner> runner;

  absl::Mutex mu;
  std::map<std::string, std::shared_ptr<Build>> builds ABSL_GUARDED_BY(mu);
  Admission admission ABSL_GUARDED_BY(mu);
  int64_t order = 0 ABSL_GUARDED_BY(mu);
  bool stopping = false ABSL_GUARDED_BY(mu);
  bool shut_down = false ABSL_GUARDED_BY(mu);
  std::atomic<bool> stopping_flag{false};  // `stopping`, readable under a build's lock
  int64_t next_thread = 0 ABSL_GUARDED_BY(mu);
  std::map<int64_t, std::thread> threads ABSL_GUARDED_BY(mu);  // build threads
  std::vector<int64_t> exited ABSL_GUARDED_BY(mu);             // threads done with their build

  std::shared_ptr<Build> NewBuild(farm::v1::StoredBuild stored, int64_t last_seq, bool ended) {
    return std::make_shared<Build>(std::move(stored), last_seq, ended, log.get(), &stopping_flag);
  }

  static QueuedBuild Queued(const Build& b) {
    return QueuedBuild{b.stored.info().build_id(), b.stored.info().tenant(),
                       b.stored.info().priority(), b.stored.order()};
  }

  absl::Status Persist(const Build& b, bool sync) { return log->Save(b.stored, sync); }

  // Appends an event to a build's log and hands it to its subscribers.
  void Append(Build& b, farm::v1::BuildEvent e) {
    // Once stopping, what the engine reports is the interruption (steps failing UNAVAILABLE),
    // not the build's progress: the build resumes after the restart.
    if (stopping_flag.load() && !e.has_outcome()) return;
    if (e.time_unix_micros() == 0) e.set_time_unix_micros(NowMicros());
    b.events.Publish(std::move(e), [&b](const farm::v1::BuildStreamEvent& se) {
      absl::MutexLock l(&b.mu);
      UpdateInfo(se, b.stored.mutable_info());
    });
  }

  // Events the manager itself reports on a build (a restart, a cancel before it started), made
  // like every other build event.
  engine::EventWriter Events(Build& b) {
    return engine::EventWriter([this, &b](const farm::v1::BuildEvent& e) { Append(b, e); });
  }
  void Warn(Build& b, const std::string& w) { Events(b).Warn(w); }

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
      while (!stopping) {
        std::optional<std::string> id = admission.Start();
        if (!id.has_value()) break;
        std::shared_ptr<Build> b = builds[*id];
        int64_t tid = next_thread++;
        threads[tid] = std::thread([this, b, tid] {
          bool ran_to_end = RunBuild(*b);
          {
            absl::MutexLock l(&mu);
            admission.Done();
            // A finished build's events count toward keep_events_of_builds (an interrupted one
            // resumes after the restart: its events stay).
            if (ran_to_end) {
              log->AddFinished(b->stored.info().build_id());
              log->TrimEvents();
            }
            exited.push_back(tid);
          }
          Pump(tid);
        });
      }
    }
    for (std::thread& t : to_join) t.join();
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
      if (IsFinished(state)) b.stored.mutable_info()->set_finished_unix_micros(NowMicros());
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
    // Before the end of the stream, so that a client that saw the end sees it counted.
    if (opt.on_finished) {
      farm::v1::BuildInfo info;
      {
        absl::MutexLock l(&b.mu);
        info = b.stored.info();
      }
      opt.on_finished(info);
    }
    b.events.End(absl::OkStatus());
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
    auto on_planned = [&b](int steps_total) {
      absl::MutexLock l(&b.mu);
      b.stored.mutable_info()->set_steps_total(steps_total);
      // steps_done/cached count this run's events (a resumed build counts again).
      b.stored.mutable_info()->set_steps_done(0);
      b.stored.mutable_info()->set_steps_cached(0);
    };
    engine::EventSink sink = [this, &b](const farm::v1::BuildEvent& e) {
      // A build interrupted by a shutdown did not fail: it resumes after the restart.
      if (e.has_outcome() && !e.outcome().ok() && !b.user_canceled && stopping_flag.load()) {
        return;
      }
      Append(b, e);
    };
    absl::Status s =
        runner->Run(b.stored.info().build_id(), req, b.secrets, on_planned, sink, &b.cancel);
    if (!s.ok() && !b.user_canceled && Stopping()) return false;
    Finish(b, s);
    return true;
  }

  // Loads every build: finished ones for Get/List/Subscribe, the others queued again (a build
  // that was running starts over: its finished steps are cache hits).
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ASSIGN_OR_RETURN(std::vector<BuildLog::LoadedBuild> loaded, log->Load());
    std::vector<std::shared_ptr<Build>> resume;
    for (BuildLog::LoadedBuild& l : loaded) {
      bool finished = IsFinished(l.stored.info().state());
      order = std::max(order, l.stored.order());
      std::shared_ptr<Build> b = NewBuild(std::move(l.stored), l.last_seq, finished);
      if (!finished) resume.push_back(b);
      builds[b->stored.info().build_id()] = b;
    }
    std::sort(resume.begin(), resume.end(),
              [](const auto& a, const auto& b) { return a->stored.order() < b->stored.order(); });
    for (auto& b : resume) {
      bool was_running = b->stored.info().state() == farm::v1::BuildInfo::RUNNING;
      b->stored.mutable_info()->set_state(farm::v1::BuildInfo::QUEUED);
      admission.Push(Queued(*b));
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
      if (b->events.ended()) continue;
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
    b->events.End(absl::UnavailableError(
        "farm-scheduler is shutting down; the build resumes when it is back"));
  }
  // Persist the RUNNING builds' last counters (their state stays RUNNING: they resume).
  for (auto& b : live) m.Persist(*b, /*sync=*/false).IgnoreError();
  m.log->Flush();
}

absl::StatusOr<std::unique_ptr<BuildManager>> BuildManager::Create(Options options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("no state dir");
  if (!options.cas || !options.ac || !options.executors) {
    return absl::InvalidArgumentError("BuildManager needs a CAS, an action cache and executors");
  }
  RETURN_IF_ERROR(common::MakeDirs(options.state_dir, 0700));
  auto impl = std::make_unique<Impl>(std::move(options));
  BuildLog::Options lo;
  lo.dir = common::JoinPath(impl->opt.state_dir, "builds");
  lo.keep_events_of_builds = impl->opt.keep_events_of_builds;
  ASSIGN_OR_RETURN(impl->log, BuildLog::Open(std::move(lo)));
  // One image store per tenant: a tenant's tags never change another's FROM.
  ASSIGN_OR_RETURN(std::unique_ptr<TenantImages> images,
                   TenantImages::Open(common::JoinPath(impl->opt.state_dir, "images")));
  BuildRunner::Options ro;
  ro.cas = impl->opt.cas;
  ro.ac = impl->opt.ac;
  ro.tenant_images = std::move(images);
  ro.executors = impl->opt.executors;
  ro.insecure_registries = impl->opt.insecure_registries;
  ro.permitted_entitlements = impl->opt.permitted_entitlements;
  ro.docker_config_dir = impl->opt.docker_config_dir;
  ro.tenant_docker_config_dirs = impl->opt.tenant_docker_config_dirs;
  ro.shared_registry_push = impl->opt.shared_registry_push;
  ro.secret_key = impl->opt.secret_key;
  ro.max_step_log_bytes = impl->opt.max_step_log_bytes;
  ro.default_step_timeout_seconds = impl->opt.default_step_timeout_seconds;
  impl->runner = std::make_unique<BuildRunner>(std::move(ro));
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
    if (request.named_contexts_size() > 64) {
      return absl::InvalidArgumentError(
          absl::StrCat(request.named_contexts_size(), " named contexts, at most 64"));
    }
    for (const auto& [name, nc] : request.named_contexts()) {
      // Names show in progress lines: printable ASCII only, no spaces.
      bool printable =
          !name.empty() && name.size() <= 256 &&
          std::all_of(name.begin(), name.end(), [](char c) { return c > ' ' && c < 127; });
      if (!printable) {
        return absl::InvalidArgumentError(
            "a named context needs a name of 1 to 256 printable ASCII characters");
      }
      if (nc.has_context()) {
        absl::StatusOr<common::Digest> d =
            common::Digest::ParseOci(nc.context().digest(), nc.context().size());
        if (!d.ok()) return common::Annotate(d.status(), absl::StrCat("named context ", name));
      } else if (!nc.image().empty()) {
        absl::StatusOr<oci::Reference> ref = oci::Reference::ParseWithDefaultTag(nc.image());
        if (!ref.ok()) return common::Annotate(ref.status(), absl::StrCat("named context ", name));
      } else {
        return absl::InvalidArgumentError(absl::StrCat("named context ", name, ": no source"));
      }
    }
    absl::StatusOr<std::vector<std::string>> platforms = pipeline::ParsePlatformList(
        request.platform().empty() ? "linux/amd64" : request.platform());
    if (!platforms.ok()) return common::Annotate(platforms.status(), "platform");
    if (impl_->opt.workers) RETURN_IF_ERROR(PlatformsServed(impl_->opt.workers(), *platforms));
  }
  Impl& m = *impl_;
  std::string id;
  {
    absl::MutexLock l(&m.mu);
    if (!request.client_request_id().empty()) {
      std::optional<std::string> existing = m.log->FindRequest(request.client_request_id());
      if (existing.has_value()) return *existing;
    }
    RETURN_IF_ERROR(m.admission.CheckRoom(request.tenant()));
    id = NewId();
    farm::v1::StoredBuild stored;
    farm::v1::SubmitBuildRequest stored_req = request;
    stored_req.clear_secrets();
    *stored.mutable_request() = std::move(stored_req);
    stored.set_had_secrets(!request.secrets().empty());
    stored.set_order(++m.order);
    farm::v1::BuildInfo* info = stored.mutable_info();
    info->set_build_id(id);
    info->set_state(farm::v1::BuildInfo::QUEUED);
    info->set_tenant(request.tenant());
    info->set_priority(request.priority());
    info->set_client(request.client());
    info->set_dockerfile_name(request.dockerfile_name());
    for (const std::string& t : request.tags()) info->add_tags(t);
    info->set_submitted_unix_micros(NowMicros());
    RETURN_IF_ERROR(m.log->Add(stored, request.client_request_id()));
    std::shared_ptr<Impl::Build> b = m.NewBuild(std::move(stored), /*last_seq=*/0,
                                                /*ended=*/false);
    for (const auto& [k, v] : request.secrets()) b->secrets[k] = v;
    m.builds[id] = b;
    m.admission.Push(Impl::Queued(*b));
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
  sub->build = b;
  sub->sub = b->events.Subscribe(after_seq, std::move(on_event), std::move(on_end));
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
    if (IsFinished(b->stored.info().state())) return b->stored.info();
    b->user_canceled = true;
    if (!b->cancel.HasBeenNotified()) b->cancel.Notify();
    // A queued build leaves the queue at once.
    was_queued = m.admission.Remove(build_id);
  }
  if (was_queued) {
    m.Finish(*b, absl::CancelledError("canceled"));
    m.log->AddFinished(build_id);
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
    if (r.active_only() && IsFinished(info.state())) continue;
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
  info.set_queued_builds(impl_->admission.queued());
  info.set_running_builds(impl_->admission.active());
  return info;
}

absl::Status PlatformsServed(const std::vector<farm::v1::WorkerInfo>& workers,
                             const std::vector<std::string>& platforms) {
  if (workers.empty()) return absl::OkStatus();
  std::set<std::string> served;
  std::vector<std::string> described;
  for (const farm::v1::WorkerInfo& w : workers) {
    if (served.insert(oci::NormalizePlatform(w.platform())).second) {
      described.push_back(oci::NormalizePlatform(w.platform()));
    }
    for (const std::string& e : w.emulated_platforms()) {
      if (served.insert(oci::NormalizePlatform(e)).second) {
        described.push_back(absl::StrCat(oci::NormalizePlatform(e), " (emulated)"));
      }
    }
  }
  for (const std::string& p : platforms) {
    if (served.count(oci::NormalizePlatform(p))) continue;
    return absl::FailedPreconditionError(absl::StrCat(
        "no worker of this farm runs ", p, " (its workers run ", absl::StrJoin(described, ", "),
        "): start a farm-worker on a ", p, " host, or one with --emulate ", p,
        " where QEMU user emulation is registered"));
  }
  return absl::OkStatus();
}

}  // namespace farm::scheduler::server
