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

#include "farm/v1/scheduler.grpc.pb.h"
#include "scheduler/server/build_manager.h"

namespace farm::scheduler::server {

class SchedulerService final : public farm::v1::Scheduler::CallbackService {
 public:
  using WorkerLister = std::function<std::vector<farm::v1::WorkerInfo>()>;
  // `manager` must outlive the service; `workers` may be null (no workers listed).
  SchedulerService(BuildManager* manager, WorkerLister workers);

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
  BuildManager* manager_;
  WorkerLister workers_;
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_SCHEDULER_SERVICE_H_
