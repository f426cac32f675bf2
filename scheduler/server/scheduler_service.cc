#include "scheduler/server/scheduler_service.h"

#include <deque>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace farm::scheduler::server {

namespace {

// Events a stream holds in memory for a slow reader before it stops taking them live and
// catches up from the persisted log once it has drained.
constexpr size_t kMaxQueuedEvents = 4096;

// Streams one build's events to one client, from after `after_seq` until the build ends (OK),
// the scheduler stops (UNAVAILABLE: reattach), or the client goes away.
class EventStreamReactor final : public grpc::ServerWriteReactor<farm::v1::BuildStreamEvent> {
 public:
  EventStreamReactor(BuildManager* manager, std::string build_id, int64_t after_seq)
      : manager_(manager), build_id_(std::move(build_id)), sent_seq_(after_seq) {}

  // Subscribes; called once right after construction (no gRPC callback can run before).
  void Start(const farm::v1::BuildStreamEvent* header = nullptr) {
    if (header != nullptr) {
      std::shared_ptr<absl::Mutex> hold = mu_;
      absl::MutexLock l(hold.get());
      queue_.push_back(*header);
      WriteNextLocked();
    }
    Resubscribe();
  }

  void OnWriteDone(bool ok) override {
    std::unique_ptr<BuildManager::Subscription> old;
    bool resubscribe = false;
    {
      std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
      absl::MutexLock l(hold.get());
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
        old = std::move(sub_);
      } else if (!queue_.empty()) {
        WriteNextLocked();
      } else if (end_) {
        FinishLocked(*end_);
      } else if (lagging_) {
        // Caught up with what was queued: continue from the persisted log.
        lagging_ = false;
        old = std::move(sub_);
        resubscribe = true;
      }
    }
    old.reset();  // waits for a callback in progress (never ours: we hold no lock here)
    if (resubscribe) Resubscribe();
  }

  void OnCancel() override {
    std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
    absl::MutexLock l(hold.get());
    if (!writing_) FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "canceled"));
    cancelled_ = true;
  }

  void OnDone() override {
    std::unique_ptr<BuildManager::Subscription> sub;
    {
      std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
      absl::MutexLock l(hold.get());
      sub = std::move(sub_);
    }
    sub.reset();  // no more callbacks after this
    delete this;
  }

 private:
  // (Re)subscribes after what was sent or queued; on failure the stream finishes with it.
  void Resubscribe() {
    int64_t after;
    {
      std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
      absl::MutexLock l(hold.get());
      if (finished_) return;
      after = sent_seq_;
      if (!queue_.empty()) after = queue_.back().seq();
      subscribing_ = true;  // Finish waits: OnDone must not delete us while we are in here
    }
    absl::StatusOr<std::unique_ptr<BuildManager::Subscription>> sub = manager_->Subscribe(
        build_id_, after, [this](const farm::v1::BuildStreamEvent& e) { OnEvent(e); },
        [this](const absl::Status& s) { OnEnd(s); });
    std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
    absl::MutexLock l(hold.get());
    subscribing_ = false;
    if (sub.ok()) sub_ = *std::move(sub);
    if (!sub.ok()) FinishLocked(common::ToGrpcStatus(sub.status()));
    if (deferred_finish_) {
      grpc::Status f = *deferred_finish_;
      deferred_finish_.reset();
      Finish(f);  // OnDone may run once this returns and the lock is released
    }
  }

  void OnEvent(const farm::v1::BuildStreamEvent& e) {
    std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
    absl::MutexLock l(hold.get());
    if (finished_ || lagging_) return;
    if (!queue_.empty() ? e.seq() <= queue_.back().seq() : e.seq() <= sent_seq_) return;
    if (queue_.size() >= kMaxQueuedEvents) {
      lagging_ = true;  // drop live events; the log on disk has them
      return;
    }
    queue_.push_back(e);
    if (!writing_) WriteNextLocked();
  }

  void OnEnd(const absl::Status& s) {
    std::shared_ptr<absl::Mutex> hold = mu_;  // outlives us if OnDone runs
    absl::MutexLock l(hold.get());
    if (lagging_ && s.ok()) {
      // The build ended while we were behind: finish after catching up from the log.
      return;
    }
    end_ = common::ToGrpcStatus(s);
    if (!writing_ && queue_.empty()) FinishLocked(*end_);
  }

  void WriteNextLocked() {
    if (finished_ || cancelled_) return;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    sent_seq_ = current_.seq();
    writing_ = true;
    StartWrite(&current_);
  }

  void FinishLocked(const grpc::Status& s) {
    if (finished_) return;
    finished_ = true;
    if (subscribing_) {
      deferred_finish_ = s;
    } else {
      Finish(s);
    }
  }

  BuildManager* manager_;
  const std::string build_id_;
  // Guards everything below. Shared so that a thread that calls Finish with it held can still
  // unlock it after OnDone (on another thread) has deleted the reactor.
  std::shared_ptr<absl::Mutex> mu_ = std::make_shared<absl::Mutex>();
  int64_t sent_seq_;
  std::deque<farm::v1::BuildStreamEvent> queue_;
  farm::v1::BuildStreamEvent current_;
  bool writing_ = false;
  bool lagging_ = false;
  bool finished_ = false;
  bool cancelled_ = false;
  bool subscribing_ = false;
  std::optional<grpc::Status> deferred_finish_;
  std::optional<grpc::Status> end_;
  std::unique_ptr<BuildManager::Subscription> sub_;
};

class FailedStream final : public grpc::ServerWriteReactor<farm::v1::BuildStreamEvent> {
 public:
  explicit FailedStream(const absl::Status& s) { Finish(common::ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

constexpr absl::string_view kScheduler = "/farm.v1.Scheduler/";
constexpr absl::string_view kWorkerHub = "/farm.v1.WorkerHub/";

std::string Method(absl::string_view name) { return absl::StrCat(kScheduler, name); }

// With authentication on: the build runs as the submitter's tenant, in cache scopes its
// token may use, under the farm's registry policy.
absl::Status ApplySubmitter(const auth::Identity& who, farm::v1::SubmitBuildRequest* r) {
  if (who.tenant.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat(who.DebugString(),
                     " has no farm/tenant claim: builds need a tenant "
                     "(farm token mint --tenant NAME)"));
  }
  if (!r->tenant().empty() && r->tenant() != who.tenant) {
    return absl::PermissionDeniedError(
        absl::StrCat("the build asks for tenant \"", r->tenant(), "\" but ", who.DebugString(),
                     " builds for tenant \"", who.tenant, "\" (drop --tenant/FARM_TENANT)"));
  }
  r->set_tenant(who.tenant);
  std::string write = r->cache_write_scope().empty() ? "main" : r->cache_write_scope();
  if (!who.CanWrite(write)) {
    return absl::PermissionDeniedError(
        absl::StrCat("cache scope \"", write, "\": ", who.DebugString(), " may write only [",
                     absl::StrJoin(who.write_scopes, ", "), "] (farm submit --cache-scope SCOPE)"));
  }
  for (const std::string& scope : r->cache_read_scopes()) {
    if (!who.CanRead(scope)) {
      return absl::PermissionDeniedError(absl::StrCat("cache scope \"", scope,
                                                      "\": ", who.DebugString(), " may read only [",
                                                      absl::StrJoin(who.read_scopes, ", "), "]"));
    }
  }
  if (!r->insecure_registries().empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("--insecure-registry ", r->insecure_registries(0),
                     ": the registry policy of an authenticated farm is the scheduler's own "
                     "(farm-scheduler --insecure-registry), not the client's"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(common::ToGrpcStatus(s));
  return r;
}

}  // namespace

auth::Authorizer::Ptr SchedulerAuthRules() {
  using auth::Rule;
  absl::StatusOr<std::unique_ptr<auth::TableAuthorizer>> rules = auth::TableAuthorizer::Create({
      Rule(Method("SubmitBuild")).Role(auth::kRoleSubmit),
      Rule(Method("AttachBuild")).Tokens().TenantOwned(),
      Rule(Method("GetBuild")).Tokens().TenantOwned(),
      Rule(Method("CancelBuild")).Tokens().TenantOwned(),
      Rule(Method("ListBuilds")).Tokens(),
      Rule(Method("ListWorkers")).Tokens(),
      Rule(Method("GetSchedulerInfo")).Anyone(),
      Rule(absl::StrCat(kWorkerHub, "*")).Workers(),
      Rule("/grpc.health.v1.Health/*").Anyone(),
  });
  return *std::move(rules);  // a fixed table (scheduler_auth_test)
}

absl::StatusOr<std::string> WorkerIdentityOf(const auth::ServerAuth& auth,
                                             const grpc::CallbackServerContext& ctx) {
  if (auth.allows_all()) return std::string();
  ASSIGN_OR_RETURN(auth::Identity who,
                   auth.Authorize(ctx, absl::StrCat(kWorkerHub, "Connect"), auth::RequestInfo()));
  if (!who.is_worker()) {
    return absl::PermissionDeniedError(
        absl::StrCat(who.DebugString(), " is not a worker: WorkerHub needs a worker certificate"));
  }
  auth.Audit(ctx, who, "worker join");
  return who.worker_id;
}

SchedulerService::SchedulerService(BuildManager* manager, WorkerLister workers,
                                   std::shared_ptr<const auth::ServerAuth> auth)
    : manager_(manager),
      workers_(std::move(workers)),
      auth_(auth ? std::move(auth)
                 : std::shared_ptr<const auth::ServerAuth>(auth::ServerAuth::AllowAll())) {}

absl::Status SchedulerService::CheckOwner(const grpc::CallbackServerContext& ctx,
                                          absl::string_view method, const std::string& id) const {
  if (auth_->allows_all()) return absl::OkStatus();
  ASSIGN_OR_RETURN(farm::v1::BuildInfo info, manager_->Get(id));
  return auth_->Authorize(ctx, Method(method), auth::RequestInfo::OwnedBy(info.tenant())).status();
}

grpc::ServerWriteReactor<farm::v1::BuildStreamEvent>* SchedulerService::SubmitBuild(
    grpc::CallbackServerContext* ctx, const farm::v1::SubmitBuildRequest* req) {
  farm::v1::SubmitBuildRequest r = *req;
  absl::StatusOr<auth::Identity> who =
      auth_->Authorize(*ctx, Method("SubmitBuild"), auth::RequestInfo());
  if (!who.ok()) return new FailedStream(who.status());
  if (!auth_->allows_all()) {
    if (absl::Status s = ApplySubmitter(*who, &r); !s.ok()) return new FailedStream(s);
    // Listings show who submitted as the farm knows them, not what the client claims.
    r.set_client(r.client().empty() ? who->subject
                                    : absl::StrCat(who->subject, " (", r.client(), ")"));
  }
  if (r.client().empty()) r.set_client(ctx->peer());
  absl::StatusOr<std::string> id = manager_->Submit(r);
  if (!id.ok()) return new FailedStream(id.status());
  if (!auth_->allows_all()) {
    auth_->Audit(*ctx, *who,
                 absl::StrCat("submit build ", *id, " (tenant ", r.tenant(), ", cache scope ",
                              r.cache_write_scope().empty() ? "main" : r.cache_write_scope(), ")"));
  }
  // The header: the build id, before anything happens (the build may wait in the queue).
  farm::v1::BuildStreamEvent header;
  header.set_build_id(*id);
  absl::StatusOr<farm::v1::BuildInfo> info = manager_->Get(*id);
  if (info.ok()) *header.mutable_info() = *std::move(info);
  auto* reactor = new EventStreamReactor(manager_, *id, 0);
  reactor->Start(&header);
  return reactor;
}

grpc::ServerWriteReactor<farm::v1::BuildStreamEvent>* SchedulerService::AttachBuild(
    grpc::CallbackServerContext* ctx, const farm::v1::AttachBuildRequest* req) {
  if (req->build_id().empty()) return new FailedStream(absl::InvalidArgumentError("no build id"));
  if (req->after_seq() < 0) {
    return new FailedStream(absl::InvalidArgumentError("after_seq must not be negative"));
  }
  if (absl::Status s = CheckOwner(*ctx, "AttachBuild", req->build_id()); !s.ok()) {
    return new FailedStream(s);
  }
  auto* reactor = new EventStreamReactor(manager_, req->build_id(), req->after_seq());
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* SchedulerService::GetBuild(grpc::CallbackServerContext* ctx,
                                                     const farm::v1::GetBuildRequest* req,
                                                     farm::v1::BuildInfo* resp) {
  if (absl::Status s = CheckOwner(*ctx, "GetBuild", req->build_id()); !s.ok()) {
    return Done(ctx, s);
  }
  absl::StatusOr<farm::v1::BuildInfo> info = manager_->Get(req->build_id());
  if (info.ok()) *resp = *std::move(info);
  return Done(ctx, info.status());
}

grpc::ServerUnaryReactor* SchedulerService::CancelBuild(grpc::CallbackServerContext* ctx,
                                                        const farm::v1::CancelBuildRequest* req,
                                                        farm::v1::BuildInfo* resp) {
  if (absl::Status s = CheckOwner(*ctx, "CancelBuild", req->build_id()); !s.ok()) {
    return Done(ctx, s);
  }
  absl::StatusOr<farm::v1::BuildInfo> info = manager_->Cancel(req->build_id());
  if (info.ok() && !auth_->allows_all()) {
    absl::StatusOr<auth::Identity> who = auth_->IdentityOf(*ctx);
    if (who.ok()) {
      auth_->Audit(
          *ctx, *who,
          absl::StrCat("cancel build ", req->build_id(), " (tenant ", info->tenant(), ")"));
    }
  }
  if (info.ok()) *resp = *std::move(info);
  return Done(ctx, info.status());
}

grpc::ServerUnaryReactor* SchedulerService::ListBuilds(grpc::CallbackServerContext* ctx,
                                                       const farm::v1::ListBuildsRequest* req,
                                                       farm::v1::ListBuildsResponse* resp) {
  farm::v1::ListBuildsRequest r = *req;
  if (!auth_->allows_all()) {
    absl::StatusOr<auth::Identity> who =
        auth_->Authorize(*ctx, Method("ListBuilds"), auth::RequestInfo());
    if (!who.ok()) return Done(ctx, who.status());
    if (!who->HasRole(auth::kRoleAdmin)) {
      if (!r.tenant().empty() && r.tenant() != who->tenant) {
        return Done(ctx, absl::PermissionDeniedError(
                             absl::StrCat(who->DebugString(), " may list only tenant \"",
                                          who->tenant, "\"'s builds, not \"", r.tenant(), "\"'s")));
      }
      if (who->tenant.empty()) return Done(ctx, absl::OkStatus());  // no tenant, no builds
      r.set_tenant(who->tenant);
    }
  }
  absl::StatusOr<std::vector<farm::v1::BuildInfo>> builds = manager_->List(r);
  if (builds.ok()) {
    for (farm::v1::BuildInfo& b : *builds) *resp->add_builds() = std::move(b);
  }
  return Done(ctx, builds.status());
}

grpc::ServerUnaryReactor* SchedulerService::ListWorkers(grpc::CallbackServerContext* ctx,
                                                        const farm::v1::ListWorkersRequest* req,
                                                        farm::v1::ListWorkersResponse* resp) {
  (void)req;
  if (workers_) {
    for (farm::v1::WorkerInfo& w : workers_()) *resp->add_workers() = std::move(w);
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* SchedulerService::GetSchedulerInfo(
    grpc::CallbackServerContext* ctx, const farm::v1::GetSchedulerInfoRequest* req,
    farm::v1::SchedulerInfo* resp) {
  (void)req;
  *resp = manager_->Info();
  return Done(ctx, absl::OkStatus());
}

}  // namespace farm::scheduler::server
