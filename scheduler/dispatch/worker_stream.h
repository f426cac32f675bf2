// The seam between the dispatcher and the transport that carries a worker's stream (the
// WorkerHub gRPC service in production, in-memory fakes in tests).
//
// A transport calls SessionHandler::Open with the worker's WorkerHello and a WorkerStream to
// send on, then Message for each further WorkerMessage in order, then Close once when the
// stream ends. The dispatcher sends through the WorkerStream.
#ifndef FARM_SCHEDULER_DISPATCH_WORKER_STREAM_H_
#define FARM_SCHEDULER_DISPATCH_WORKER_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "farm/v1/scheduler.pb.h"

namespace farm::scheduler::dispatch {

// The scheduler's sending side of one worker stream. Implementations are thread-safe.
class WorkerStream {
 public:
  virtual ~WorkerStream() = default;
  // Appends `msg` to the outgoing queue. Called with the dispatcher's lock held: must only
  // queue (no I/O, no callbacks into the dispatcher). Ignored once the stream is closing.
  virtual void Enqueue(farm::v1::SchedulerMessage msg) = 0;
  // Starts sending what is queued. Called with no dispatcher lock held (a gRPC reaction may
  // run inline).
  virtual void Flush() = 0;
  // Ends the stream with `status` once the queued messages are sent. Idempotent. Called with
  // no dispatcher lock held.
  virtual void Close(const absl::Status& status) = 0;
};

// What a transport calls. Implemented by the dispatcher; thread-safe.
class SessionHandler {
 public:
  virtual ~SessionHandler() = default;
  // A worker said hello on a new stream. Returns the session id for Message/Close; on error
  // (INVALID_ARGUMENT for a bad hello, UNAVAILABLE while shutting down) the transport ends the
  // stream with that status. The Welcome is queued on `stream` before this returns.
  virtual absl::StatusOr<uint64_t> Open(std::shared_ptr<WorkerStream> stream,
                                        const farm::v1::WorkerHello& hello,
                                        absl::string_view peer) = 0;
  // The next message on the stream. An error means "end the stream with it" (protocol
  // violation, or the session was replaced by a newer connection of the same worker).
  virtual absl::Status Message(uint64_t session, const farm::v1::WorkerMessage& msg) = 0;
  // The stream ended (either side). Idempotent. `why`: why the transport ended it (e.g.
  // RESOURCE_EXHAUSTED: the worker stopped reading and its send queue passed its bound), for
  // the event log; OK when the stream simply ended.
  virtual void Close(uint64_t session, const absl::Status& why = absl::OkStatus()) = 0;
};

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_WORKER_STREAM_H_
