#include "worker/agent/testing/fake_hub.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <grpcpp/server_context.h>

#include <deque>
#include <thread>

#include "absl/strings/str_cat.h"

namespace farm::worker::agent::testing {

using farm::v1::SchedulerMessage;
using farm::v1::WorkerMessage;

struct FakeWorkerHub::Connection {
  int index = 0;
  std::string worker_id;
  // Guarded by the hub's mu_.
  std::deque<SchedulerMessage> outgoing;
  bool open = true;
  bool closed_by_worker = false;
};

class FakeWorkerHub::Service final : public farm::v1::WorkerHub::Service {
 public:
  explicit Service(FakeWorkerHub* hub) : hub_(hub) {}

  grpc::Status Connect(grpc::ServerContext* ctx,
                       grpc::ServerReaderWriter<SchedulerMessage, WorkerMessage>* stream) override {
    WorkerMessage first;
    if (!stream->Read(&first) || !first.has_hello()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be hello");
    }
    auto conn = std::make_shared<Connection>();
    conn->worker_id = first.hello().worker_id();
    {
      absl::MutexLock lock(&hub_->mu_);
      conn->index = static_cast<int>(hub_->connections_.size());
      if (hub_->options_.send_welcome) {
        SchedulerMessage welcome;
        *welcome.mutable_welcome() = hub_->options_.welcome;
        conn->outgoing.push_back(std::move(welcome));
      }
      hub_->connections_.push_back(conn);
      hellos_.push_back(first.hello());
    }
    std::thread writer([&] {
      while (true) {
        SchedulerMessage m;
        {
          absl::MutexLock lock(&hub_->mu_);
          auto ready = [&] { return !conn->open || !conn->outgoing.empty(); };
          hub_->mu_.Await(absl::Condition(&ready));
          if (!conn->open) return;
          m = std::move(conn->outgoing.front());
          conn->outgoing.pop_front();
        }
        if (!stream->Write(m)) return;
      }
    });
    WorkerMessage m;
    while (stream->Read(&m)) {
      absl::MutexLock lock(&hub_->mu_);
      hub_->received_.push_back({conn->index, absl::Now(), m});
    }
    {
      absl::MutexLock lock(&hub_->mu_);
      conn->open = false;
      conn->closed_by_worker = !ctx->IsCancelled();
    }
    writer.join();
    return grpc::Status::OK;
  }

  std::vector<farm::v1::WorkerHello> hellos() {
    absl::MutexLock lock(&hub_->mu_);
    return hellos_;
  }

  FakeWorkerHub* hub_;
  std::vector<farm::v1::WorkerHello> hellos_;  // hub_->mu_
};

std::unique_ptr<FakeWorkerHub> FakeWorkerHub::Start(const Options& options) {
  std::unique_ptr<FakeWorkerHub> hub(new FakeWorkerHub());
  hub->options_ = options;
  hub->service_ = std::make_unique<Service>(hub.get());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", options.port),
                           grpc::InsecureServerCredentials(), &hub->port_);
  builder.RegisterService(hub->service_.get());
  hub->server_ = builder.BuildAndStart();
  if (hub->server_ == nullptr || hub->port_ == 0) return nullptr;
  return hub;
}

FakeWorkerHub::~FakeWorkerHub() { Stop(); }

std::string FakeWorkerHub::address() const { return absl::StrCat("127.0.0.1:", port_); }

void FakeWorkerHub::Stop() {
  if (server_ == nullptr) return;
  {
    absl::MutexLock lock(&mu_);
    for (auto& c : connections_) c->open = false;  // the writers stop
  }
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

FakeWorkerHub::Snapshot FakeWorkerHub::snapshot() {
  Snapshot s;
  s.hellos = service_->hellos();
  absl::MutexLock lock(&mu_);
  s.received = received_;
  for (const auto& c : connections_) {
    s.open.push_back(c->open);
    s.closed_by_worker.push_back(c->closed_by_worker);
  }
  return s;
}

bool FakeWorkerHub::WaitFor(const std::function<bool(const Snapshot&)>& pred,
                            absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (pred(snapshot())) return true;
    if (absl::Now() >= deadline) return false;
    // Wake when anything arrives (or every 50ms: connection state changes too).
    absl::MutexLock lock(&mu_);
    size_t n = received_.size(), c = connections_.size();
    auto changed = [&] { return received_.size() != n || connections_.size() != c; };
    mu_.AwaitWithDeadline(absl::Condition(&changed),
                          std::min(deadline, absl::Now() + absl::Milliseconds(50)));
  }
}

bool FakeWorkerHub::Send(const SchedulerMessage& msg, const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  for (auto it = connections_.rbegin(); it != connections_.rend(); ++it) {
    if (!(*it)->open || (!worker_id.empty() && (*it)->worker_id != worker_id)) continue;
    (*it)->outgoing.push_back(msg);
    return true;
  }
  return false;
}

std::vector<farm::v1::TaskResult> FakeWorkerHub::Snapshot::Results(
    const std::string& task_id) const {
  std::vector<farm::v1::TaskResult> out;
  for (const Received& r : received) {
    if (r.msg.has_result() && (task_id.empty() || r.msg.result().task_id() == task_id)) {
      out.push_back(r.msg.result());
    }
  }
  return out;
}

std::vector<farm::v1::TaskLog> FakeWorkerHub::Snapshot::Logs(const std::string& task_id) const {
  std::vector<farm::v1::TaskLog> out;
  for (const Received& r : received) {
    if (r.msg.has_log() && r.msg.log().task_id() == task_id) out.push_back(r.msg.log());
  }
  return out;
}

std::vector<farm::v1::Heartbeat> FakeWorkerHub::Snapshot::Heartbeats() const {
  std::vector<farm::v1::Heartbeat> out;
  for (const Received& r : received) {
    if (r.msg.has_heartbeat()) out.push_back(r.msg.heartbeat());
  }
  return out;
}

int FakeWorkerHub::Snapshot::IndexOf(
    const std::function<bool(const farm::v1::WorkerMessage&)>& pred) const {
  for (size_t i = 0; i < received.size(); ++i) {
    if (pred(received[i].msg)) return static_cast<int>(i);
  }
  return -1;
}

SchedulerMessage TaskMessage(const std::string& task_id, const std::string& lease_id,
                             farm::v1::StepRequest request) {
  SchedulerMessage m;
  farm::v1::Task* t = m.mutable_task();
  t->set_task_id(task_id);
  t->set_lease_id(lease_id);
  t->set_attempt(1);
  *t->mutable_request() = std::move(request);
  t->set_cache_instance("main");
  return m;
}

SchedulerMessage CancelMessage(const std::string& task_id, const std::string& lease_id,
                               const std::string& reason) {
  SchedulerMessage m;
  farm::v1::CancelTask* c = m.mutable_cancel();
  c->set_task_id(task_id);
  c->set_lease_id(lease_id);
  c->set_reason(reason);
  return m;
}

}  // namespace farm::worker::agent::testing
