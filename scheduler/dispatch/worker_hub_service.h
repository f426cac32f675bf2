// farm.v1.WorkerHub on gRPC's callback API: one ServerBidiReactor per worker stream, no thread
// parked per stream. The reactor is a thin adapter: the first message must be a WorkerHello
// (it opens a session on the SessionHandler, i.e. the Dispatcher), every further message is
// handed over in order, and the stream's end closes the session. The handler's messages to
// the worker are queued and written one at a time (gRPC allows one outstanding write).
//
// The queue is bounded (SendQueueLimit): a worker that stops reading would otherwise make the
// scheduler buffer without limit. Past the bound the queue is dropped, the session is closed
// (SessionHandler::Close with RESOURCE_EXHAUSTED: the worker's leases go the way of any lost
// worker's) and the stream is finished with that RESOURCE_EXHAUSTED, which the worker sees
// once it reads what is already in flight.
//
// Dispatcher::service() returns this service; it is only constructed directly by tests.
//
//   std::unique_ptr<grpc::Service> svc = scheduler::dispatch::NewWorkerHubService(handler);
//   builder.RegisterService(svc.get());
#ifndef FARM_SCHEDULER_DISPATCH_WORKER_HUB_SERVICE_H_
#define FARM_SCHEDULER_DISPATCH_WORKER_HUB_SERVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "scheduler/dispatch/worker_stream.h"

namespace grpc {
class CallbackServerContext;
class Service;
}  // namespace grpc

namespace farm::scheduler::dispatch {

// Who a Connect call is: see dispatch::Options::worker_identity.
using WorkerIdentity =
    std::function<absl::StatusOr<std::string>(const grpc::CallbackServerContext&)>;

// The bound on what waits to be written to one worker (beyond the one message being
// written). Either limit <= 0 turns that limit off.
struct SendQueueLimit {
  int64_t max_bytes = int64_t{64} << 20;         // serialized size of the queued messages
  int64_t max_messages = 16384;                  // > Welcome + one Task per slot (kMaxSlots 4096)
  std::string flag = "--max-worker-send-queue";  // named in the error
};

// The service keeps `handler` alive as long as any stream it serves. With `identity`, a
// worker's id is the one its certificate names (the hello's worker_id is replaced), and a
// caller it refuses gets its error before any session opens.
std::unique_ptr<grpc::Service> NewWorkerHubService(std::shared_ptr<SessionHandler> handler,
                                                   WorkerIdentity identity = nullptr,
                                                   SendQueueLimit limit = {});

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_WORKER_HUB_SERVICE_H_
