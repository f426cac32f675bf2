// farm.v1.WorkerHub on gRPC's callback API: one ServerBidiReactor per worker stream, no thread
// parked per stream. The reactor is a thin adapter: the first message must be a WorkerHello
// (it opens a session on the SessionHandler, i.e. the Dispatcher), every further message is
// handed over in order, and the stream's end closes the session. The handler's messages to
// the worker are queued and written one at a time (gRPC allows one outstanding write).
//
// Dispatcher::service() returns this service; it is only constructed directly by tests.
//
//   std::unique_ptr<grpc::Service> svc = scheduler::dispatch::NewWorkerHubService(handler);
//   builder.RegisterService(svc.get());
#ifndef FARM_SCHEDULER_DISPATCH_WORKER_HUB_SERVICE_H_
#define FARM_SCHEDULER_DISPATCH_WORKER_HUB_SERVICE_H_

#include <memory>

#include "scheduler/dispatch/worker_stream.h"

namespace grpc {
class Service;
}

namespace farm::scheduler::dispatch {

// The service keeps `handler` alive as long as any stream it serves.
std::unique_ptr<grpc::Service> NewWorkerHubService(std::shared_ptr<SessionHandler> handler);

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_WORKER_HUB_SERVICE_H_
