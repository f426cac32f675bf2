#include "scheduler/dispatch/worker_hub_service.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/flags.h"
#include "common/grpc_status.h"
#include "farm/v1/scheduler.grpc.pb.h"

namespace farm::scheduler::dispatch {
namespace {

using farm::v1::SchedulerMessage;
using farm::v1::WorkerMessage;

// The sending side of one stream: messages the dispatcher queued, written one at a time, then
// the Finish once the stream is closing and drained. Reactor calls (StartWrite, Finish) are
// made without holding mu_, since gRPC may run reactions inline.
//
// The queue is bounded by `limit`. Enqueue runs under the dispatcher's lock, so on overflow it
// only drops the queue and marks the stream closing; the next Flush (no lock held) closes the
// session with the reason and finishes the stream at once, even with a write outstanding: a
// worker that does not read would never complete that write, and the Finish's trailers then
// follow the data in flight.
class Outbox final : public WorkerStream {
 public:
  Outbox(grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* reactor,
         std::weak_ptr<SessionHandler> handler, SendQueueLimit limit)
      : reactor_(reactor), handler_(std::move(handler)), limit_(std::move(limit)) {}

  // The worker's id, for the overflow error; set before the session opens.
  void SetWorker(std::string worker_id) {
    absl::MutexLock l(&mu_);
    worker_id_ = std::move(worker_id);
  }

  // The session the stream opened (the overflow closes it).
  void SetSession(uint64_t session) {
    absl::MutexLock l(&mu_);
    session_ = session;
  }

  void Enqueue(SchedulerMessage msg) override {
    absl::MutexLock l(&mu_);
    if (closing_ || done_) return;
    const int64_t size = static_cast<int64_t>(msg.ByteSizeLong());
    const bool too_many =
        limit_.max_messages > 0 && static_cast<int64_t>(queue_.size()) + 1 > limit_.max_messages;
    const bool too_big = limit_.max_bytes > 0 && queued_bytes_ + size > limit_.max_bytes;
    if (too_many || too_big) {
      std::string bound = too_many ? absl::StrCat(limit_.max_messages, " messages")
                                   : common::HumanBinarySize(limit_.max_bytes);
      status_ = absl::ResourceExhaustedError(absl::StrCat(
          "worker ", worker_id_.empty() ? "(before its hello)" : worker_id_,
          " is not reading its stream: the scheduler's send queue to it passed its bound of ",
          bound, " (farm-scheduler ", limit_.flag, too_many ? "-messages" : "",
          "); the stream is closed and its tasks are treated as on a lost worker"));
      queue_.clear();
      queued_bytes_ = 0;
      closing_ = true;
      overflowed_ = true;
      return;
    }
    queued_bytes_ += size;
    queue_.push_back(std::move(msg));
  }

  void Flush() override { Next(); }

  void Close(const absl::Status& status) override {
    {
      absl::MutexLock l(&mu_);
      if (closing_ || done_) return;
      closing_ = true;
      status_ = status;
    }
    Next();
  }

  // OnWriteDone.
  void WriteDone(bool ok) {
    {
      absl::MutexLock l(&mu_);
      writing_ = false;
      if (!ok) {
        queue_.clear();
        queued_bytes_ = 0;
        if (!closing_) {
          closing_ = true;
          status_ = absl::UnavailableError("writing to the worker failed");
        }
      }
    }
    Next();
  }

  // OnDone: the reactor is about to be deleted.
  void Done() {
    absl::MutexLock l(&mu_);
    done_ = true;
    queue_.clear();
    queued_bytes_ = 0;
  }

 private:
  // One thread at a time drives the reactor (StartWrite, Finish): another caller (the
  // dispatcher's Flush or an overflow, OnWriteDone, possibly inline from StartWrite) only asks
  // the driving thread to look again. Two threads deciding apart could otherwise call
  // StartWrite after the other's Finish (GRPC_CALL_ERROR_TOO_MANY_OPERATIONS: an abort).
  void Next() {
    {
      absl::MutexLock l(&mu_);
      if (pumping_) {
        again_ = true;
        return;
      }
      pumping_ = true;
    }
    while (true) {
      bool write = false;
      bool finish = false;
      grpc::Status finish_status;
      uint64_t close_session = 0;
      absl::Status close_why;
      {
        absl::MutexLock l(&mu_);
        again_ = false;
        if (done_) {
          pumping_ = false;
          return;
        }
        if (overflowed_ && session_ != 0) {  // (the overflow may come before SetSession)
          close_session = session_;
          close_why = status_;
          session_ = 0;
        }
        if (finished_) {
          // nothing more to send
        } else if (overflowed_) {
          finished_ = true;
          finish = true;
          finish_status = common::ToGrpcStatus(status_);
        } else if (writing_) {
          // OnWriteDone calls again
        } else if (!queue_.empty()) {
          current_ = std::move(queue_.front());
          queue_.pop_front();
          queued_bytes_ -= static_cast<int64_t>(current_.ByteSizeLong());
          writing_ = true;
          write = true;
        } else if (closing_) {
          finished_ = true;
          finish = true;
          finish_status = common::ToGrpcStatus(status_);
        }
        if (!write && !finish && close_session == 0 && !again_) {
          pumping_ = false;
          return;
        }
      }
      if (close_session != 0) {
        // The handler outlives every reactor unless the server is being torn down.
        if (std::shared_ptr<SessionHandler> h = handler_.lock()) h->Close(close_session, close_why);
      }
      // The reactor lives until OnDone, which cannot come before the Finish below; a Finish
      // after an overflow may follow a write still outstanding (gRPC allows it: the status
      // goes after the data).
      if (write) reactor_->StartWrite(&current_);
      if (finish) {
        // Nothing of this object may be touched after Finish: OnDone may run inline and
        // release it. finished_ is final, so no other thread drives the reactor any more.
        reactor_->Finish(finish_status);
        return;
      }
    }
  }

  grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* const reactor_;
  const std::weak_ptr<SessionHandler> handler_;
  const SendQueueLimit limit_;
  absl::Mutex mu_;
  std::deque<SchedulerMessage> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // serialized size of queue_
  SchedulerMessage current_;  // the message being written (touched only while writing_)
  std::string worker_id_ ABSL_GUARDED_BY(mu_);
  uint64_t session_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none yet, or already closed
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;  // a thread is in Next's loop
  bool again_ ABSL_GUARDED_BY(mu_) = false;    // another asked it to look again
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class ConnectReactor final : public grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage> {
 public:
  // `worker_id`: the id the caller's certificate names ("" = take the hello's).
  ConnectReactor(std::shared_ptr<SessionHandler> handler, std::string peer, std::string worker_id,
                 SendQueueLimit limit)
      : handler_(std::move(handler)),
        peer_(std::move(peer)),
        worker_id_(std::move(worker_id)),
        out_(std::make_shared<Outbox>(this, handler_, std::move(limit))) {
    // The initial metadata goes in a batch of its own, now: otherwise the first write carries
    // it, and a Finish while that write is outstanding (the send-queue overflow finishes at
    // once) would send it a second time: GRPC_CALL_ERROR_TOO_MANY_OPERATIONS, an abort.
    StartSendInitialMetadata();
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker closed its side, or the call broke or was canceled
      CloseSession();
      out_->Close(absl::OkStatus());
      return;
    }
    absl::Status status;
    if (session_ == 0) {
      if (!in_.has_hello()) {
        status = absl::InvalidArgumentError(
            "the first message on WorkerHub.Connect must be a WorkerHello");
      } else {
        if (!worker_id_.empty()) in_.mutable_hello()->set_worker_id(worker_id_);
        out_->SetWorker(in_.hello().worker_id());
        absl::StatusOr<uint64_t> session = handler_->Open(out_, in_.hello(), peer_);
        if (session.ok()) {
          session_ = *session;
          out_->SetSession(session_);
          out_->Flush();  // closes the session at once if the Welcome already overflowed
        } else {
          status = session.status();
        }
      }
    } else {
      status = handler_->Message(session_, in_);
    }
    if (!status.ok()) {
      CloseSession();
      out_->Close(status);
      return;
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override { out_->WriteDone(ok); }

  void OnDone() override {
    CloseSession();
    out_->Done();
    delete this;
  }

 private:
  // Reactions that touch session_ (OnReadDone, OnDone) never run concurrently.
  void CloseSession() {
    if (session_ != 0) {
      handler_->Close(session_);
      session_ = 0;
    }
  }

  const std::shared_ptr<SessionHandler> handler_;
  const std::string peer_;
  const std::string worker_id_;
  const std::shared_ptr<Outbox> out_;
  WorkerMessage in_;
  uint64_t session_ = 0;
};

// A Connect refused before any session: the caller's error, then the stream ends.
class RefusedStream final : public grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage> {
 public:
  explicit RefusedStream(const absl::Status& s) { Finish(common::ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

class WorkerHubService final : public farm::v1::WorkerHub::CallbackService {
 public:
  WorkerHubService(std::shared_ptr<SessionHandler> handler, WorkerIdentity identity,
                   SendQueueLimit limit)
      : handler_(std::move(handler)), identity_(std::move(identity)), limit_(std::move(limit)) {}

  grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override {
    std::string worker_id;
    if (identity_) {
      absl::StatusOr<std::string> id = identity_(*ctx);
      if (!id.ok()) return new RefusedStream(id.status());
      worker_id = *std::move(id);
    }
    return new ConnectReactor(handler_, ctx->peer(), std::move(worker_id), limit_);
  }

 private:
  const std::shared_ptr<SessionHandler> handler_;
  const WorkerIdentity identity_;
  const SendQueueLimit limit_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewWorkerHubService(std::shared_ptr<SessionHandler> handler,
                                                   WorkerIdentity identity, SendQueueLimit limit) {
  return std::make_unique<WorkerHubService>(std::move(handler), std::move(identity),
                                            std::move(limit));
}

}  // namespace farm::scheduler::dispatch
