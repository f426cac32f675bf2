#include "scheduler/dispatch/worker_hub_service.h"

#include <grpcpp/grpcpp.h>

#include <deque>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "farm/v1/scheduler.grpc.pb.h"

namespace farm::scheduler::dispatch {
namespace {

using farm::v1::SchedulerMessage;
using farm::v1::WorkerMessage;

class ConnectReactor;

// The sending side of one stream: messages the dispatcher queued, written one at a time, then
// the Finish once the stream is closing and drained. Reactor calls (StartWrite, Finish) are
// made without holding mu_, since gRPC may run reactions inline.
class Outbox final : public WorkerStream {
 public:
  explicit Outbox(grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* reactor)
      : reactor_(reactor) {}

  void Enqueue(SchedulerMessage msg) override {
    absl::MutexLock l(&mu_);
    if (closing_ || done_) return;
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
  }

 private:
  void Next() {
    bool write = false;
    bool finish = false;
    grpc::Status finish_status;
    {
      absl::MutexLock l(&mu_);
      if (done_ || writing_ || finished_) return;
      if (!queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        write = true;
      } else if (closing_) {
        finished_ = true;
        finish = true;
        finish_status = common::ToGrpcStatus(status_);
      }
    }
    // The reactor lives until OnDone, which cannot come before the Finish below (and no
    // Finish is started while a write is outstanding).
    if (write) reactor_->StartWrite(&current_);
    if (finish) reactor_->Finish(finish_status);
  }

  grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* const reactor_;
  absl::Mutex mu_;
  std::deque<SchedulerMessage> queue_ ABSL_GUARDED_BY(mu_);
  SchedulerMessage current_;  // the message being written (touched only while writing_)
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class ConnectReactor final : public grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage> {
 public:
  // `worker_id`: the id the caller's certificate names ("" = take the hello's).
  ConnectReactor(std::shared_ptr<SessionHandler> handler, std::string peer, std::string worker_id)
      : handler_(std::move(handler)),
        peer_(std::move(peer)),
        worker_id_(std::move(worker_id)),
        out_(std::make_shared<Outbox>(this)) {
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
        absl::StatusOr<uint64_t> session = handler_->Open(out_, in_.hello(), peer_);
        if (session.ok()) {
          session_ = *session;
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
  WorkerHubService(std::shared_ptr<SessionHandler> handler, WorkerIdentity identity)
      : handler_(std::move(handler)), identity_(std::move(identity)) {}

  grpc::ServerBidiReactor<WorkerMessage, SchedulerMessage>* Connect(
      grpc::CallbackServerContext* ctx) override {
    std::string worker_id;
    if (identity_) {
      absl::StatusOr<std::string> id = identity_(*ctx);
      if (!id.ok()) return new RefusedStream(id.status());
      worker_id = *std::move(id);
    }
    return new ConnectReactor(handler_, ctx->peer(), std::move(worker_id));
  }

 private:
  const std::shared_ptr<SessionHandler> handler_;
  const WorkerIdentity identity_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewWorkerHubService(std::shared_ptr<SessionHandler> handler,
                                                   WorkerIdentity identity) {
  return std::make_unique<WorkerHubService>(std::move(handler), std::move(identity));
}

}  // namespace farm::scheduler::dispatch
