// farm.v1.Scheduler over gRPC's callback API: what `farm submit`, `farm builds`, `farm logs`,
// `farm cancel` and `farm workers` talk to. Builds live in a BuildManager; the event streams
// of SubmitBuild and AttachBuild are its subscriptions (replay, then live), each bounded in
// memory: a client that reads slower than the build writes is fed from the persisted log
// instead of a growing queue.
//
//   scheduler::server::SchedulerService service(manager.get(), [&] { return hub->Workers(); });
//   builder.RegisterService(&service);
#ifndef FARM_SCHEDULER_SERVER_SCHEDULER_SERVICE_H_
#define FARM_SCHEDULER_SERVER_SCHEDULER_SERVICE_H_

#include <functional>
#include <vector>

#include "auth/authorizer.h"
#include "auth/grpc_auth.h"
#include "farm/v1/scheduler.grpc.pb.h"
#include "scheduler/server/build_manager.h"

namespace farm::scheduler::server {

class SchedulerService final : public farm::v1::Scheduler::CallbackService {
 public:
  using WorkerLister = std::function<std::vector<farm::v1::WorkerInfo>()>;
  // `manager` must outlive the service; `workers` may be null (no workers listed). `auth`:
  // who may do what (SchedulerAuthRules); null = ServerAuth::AllowAll() (tests, trusted
  // loopback). With authentication on, a build's tenant is its submitter's token's, its
  // cache scopes must be among the token's, and a caller sees, attaches to and cancels only
  // its own tenant's builds unless it has the admin role.
  SchedulerService(BuildManager* manager, WorkerLister workers,
                   std::shared_ptr<const auth::ServerAuth> auth = nullptr);

  grpc::ServerWriteReactor<farm::v1::BuildStreamEvent>* SubmitBuild(
      grpc::CallbackServerContext* ctx, const farm::v1::SubmitBuildRequest* req) override;
  grpc::ServerWriteReactor<farm::v1::BuildStreamEvent>* AttachBuild(
      grpc::CallbackServerContext* ctx, const farm::v1::AttachBuildRequest* req) override;
  grpc::ServerUnaryReactor* GetBuild(grpc::CallbackServerContext* ctx,
                                     const farm::v1::GetBuildRequest* req,
                                     farm::v1::BuildInfo* resp) override;
  grpc::ServerUnaryReactor* CancelBuild(grpc::CallbackServerContext* ctx,
                                        const farm::v1::CancelBuildRequest* req,
                                        farm::v1::BuildInfo* resp) override;
  grpc::ServerUnaryReactor* ListBuilds(grpc::CallbackServerContext* ctx,
                                       const farm::v1::ListBuildsRequest* req,
                                       farm::v1::ListBuildsResponse* resp) override;
  grpc::ServerUnaryReactor* ListWorkers(grpc::CallbackServerContext* ctx,
                                        const farm::v1::ListWorkersRequest* req,
                                        farm::v1::ListWorkersResponse* resp) override;
  grpc::ServerUnaryReactor* GetSchedulerInfo(grpc::CallbackServerContext* ctx,
                                             const farm::v1::GetSchedulerInfoRequest* req,
                                             farm::v1::SchedulerInfo* resp) override;

 private:
  // The build `id`'s tenant must be the caller's (or the caller an admin) for `method`.
  absl::Status CheckOwner(const grpc::CallbackServerContext& ctx, absl::string_view method,
                          const std::string& id) const;

  BuildManager* manager_;
  WorkerLister workers_;
  std::shared_ptr<const auth::ServerAuth> auth_;
};

// farm-scheduler's authorization table for farm.v1.Scheduler, farm.v1.WorkerHub (worker
// certificates only) and health (auth/README.md).
auth::Authorizer::Ptr SchedulerAuthRules();

// The worker id of a WorkerHub.Connect caller (dispatch::Options::worker_identity): the CN of
// its worker certificate, audited as a join; "" when `auth` allows all.
absl::StatusOr<std::string> WorkerIdentityOf(const auth::ServerAuth& auth,
                                             const grpc::CallbackServerContext& ctx);

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_SCHEDULER_SERVICE_H_
