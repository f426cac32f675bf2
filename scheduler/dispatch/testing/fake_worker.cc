#include "scheduler/dispatch/testing/fake_worker.h"

#include <gtest/gtest.h>

#include <utility>

namespace farm::scheduler::dispatch::testing {

void FakeStream::Enqueue(farm::v1::SchedulerMessage msg) {
  absl::MutexLock l(&mu_);
  if (!closed_) pending_.push_back(std::move(msg));
}

void FakeStream::Flush() {
  absl::MutexLock l(&mu_);
  for (auto& m : pending_) delivered_.push_back(std::move(m));
  pending_.clear();
}

void FakeStream::Close(const absl::Status& status) {
  absl::MutexLock l(&mu_);
  for (auto& m : pending_) delivered_.push_back(std::move(m));
  pending_.clear();
  if (!closed_) status_ = status;
  closed_ = true;
}

std::optional<farm::v1::SchedulerMessage> FakeStream::Next(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !delivered_.empty(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
  farm::v1::SchedulerMessage m = std::move(delivered_.front());
  delivered_.pop_front();
  return m;
}

int FakeStream::available() {
  absl::MutexLock l(&mu_);
  return static_cast<int>(delivered_.size());
}

bool FakeStream::WaitClosed(absl::Duration timeout) {
  absl::MutexLock l(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&closed_), timeout);
}

absl::Status FakeStream::close_status() {
  absl::MutexLock l(&mu_);
  return status_;
}

FakeWorker::FakeWorker(SessionHandler* handler, FakeWorkerOptions options)
    : handler_(handler), options_(std::move(options)) {}

absl::Status FakeWorker::Connect(const std::vector<farm::v1::RunningTask>& running) {
  stream_ = std::make_shared<FakeStream>();
  farm::v1::WorkerHello hello;
  hello.set_worker_id(options_.id);
  hello.set_slots(options_.slots);
  hello.set_platform(options_.platform);
  for (const std::string& p : options_.emulated_platforms) hello.add_emulated_platforms(p);
  for (const std::string& c : options_.chain_ids) hello.add_chain_ids(c);
  for (const farm::v1::RunningTask& r : running) *hello.add_running() = r;
  absl::StatusOr<uint64_t> session = handler_->Open(stream_, hello, "fake:" + options_.id);
  if (!session.ok()) return session.status();
  session_ = *session;
  std::optional<farm::v1::SchedulerMessage> welcome = stream_->Next(kWait);
  if (!welcome.has_value() || !welcome->has_welcome()) {
    return absl::InternalError("the first message was not a Welcome");
  }
  return absl::OkStatus();
}

void FakeWorker::Disconnect() { handler_->Close(session_); }

std::optional<farm::v1::SchedulerMessage> FakeWorker::NextMessage(absl::Duration timeout) {
  return stream_->Next(timeout);
}

farm::v1::Task FakeWorker::NextTask(absl::Duration timeout) {
  std::optional<farm::v1::SchedulerMessage> m = stream_->Next(timeout);
  if (!m.has_value()) {
    ADD_FAILURE() << options_.id << ": no Task within " << timeout;
    return {};
  }
  if (!m->has_task()) {
    ADD_FAILURE() << options_.id << ": expected a Task, got " << m->ShortDebugString();
    return {};
  }
  return m->task();
}

farm::v1::CancelTask FakeWorker::NextCancel(absl::Duration timeout) {
  std::optional<farm::v1::SchedulerMessage> m = stream_->Next(timeout);
  if (!m.has_value()) {
    ADD_FAILURE() << options_.id << ": no CancelTask within " << timeout;
    return {};
  }
  if (!m->has_cancel()) {
    ADD_FAILURE() << options_.id << ": expected a CancelTask, got " << m->ShortDebugString();
    return {};
  }
  return m->cancel();
}

absl::Status FakeWorker::Send(const farm::v1::WorkerMessage& msg) {
  return handler_->Message(session_, msg);
}

absl::Status FakeWorker::Finish(const farm::v1::Task& t, int exit_code) {
  farm::v1::WorkerMessage m;
  farm::v1::TaskResult* r = m.mutable_result();
  r->set_task_id(t.task_id());
  r->set_lease_id(t.lease_id());
  r->mutable_result()->set_exit_code(exit_code);
  r->mutable_result()->mutable_layer()->set_digest("sha256:" + t.request().key());
  return Send(m);
}

absl::Status FakeWorker::Fail(const farm::v1::Task& t, const absl::Status& status) {
  farm::v1::WorkerMessage m;
  farm::v1::TaskResult* r = m.mutable_result();
  r->set_task_id(t.task_id());
  r->set_lease_id(t.lease_id());
  r->set_status_code(static_cast<int>(status.code()));
  r->set_status_message(std::string(status.message()));
  return Send(m);
}

absl::Status FakeWorker::Log(const farm::v1::Task& t, const std::string& line, bool is_stderr) {
  farm::v1::WorkerMessage m;
  m.mutable_log()->set_task_id(t.task_id());
  m.mutable_log()->set_lease_id(t.lease_id());
  m.mutable_log()->set_line(line);
  m.mutable_log()->set_stderr(is_stderr);
  return Send(m);
}

farm::v1::RunningTask FakeWorker::Running(const farm::v1::Task& t) {
  farm::v1::RunningTask r;
  r.set_task_id(t.task_id());
  r.set_lease_id(t.lease_id());
  r.set_key(t.request().key());
  return r;
}

absl::Status FakeWorker::Heartbeat(const std::vector<farm::v1::Task>& running) {
  farm::v1::WorkerMessage m;
  for (const farm::v1::Task& t : running) *m.mutable_heartbeat()->add_running() = Running(t);
  m.mutable_heartbeat();
  return Send(m);
}

bool Outcome::Wait() {
  if (done.WaitForNotificationWithTimeout(kWait)) return true;
  ADD_FAILURE() << "no result within " << kWait;
  return false;
}

std::vector<std::string> Outcome::Logs() {
  absl::MutexLock l(&mu);
  return logs;
}

TaskSpec Spec(const std::string& key, const std::string& tenant, int priority,
              const std::string& platform) {
  TaskSpec s;
  s.key = key;
  s.request.set_key(key);
  s.request.set_description("RUN " + key);
  s.request.mutable_run()->add_args("/bin/sh");
  s.request.mutable_run()->add_args("-c");
  s.request.mutable_run()->add_args("true");
  s.tenant = tenant;
  s.priority = priority;
  s.platform = platform;
  return s;
}

std::shared_ptr<Outcome> Start(Dispatcher* d, const TaskSpec& spec) {
  auto o = std::make_shared<Outcome>();
  Outcome* raw = o.get();
  absl::StatusOr<uint64_t> ticket = d->Submit(
      spec,
      [raw](absl::string_view line, bool) {
        absl::MutexLock l(&raw->mu);
        raw->logs.emplace_back(line);
      },
      [o](absl::StatusOr<farm::v1::StepResult> r) {
        o->result = std::move(r);
        o->done.Notify();
      });
  EXPECT_TRUE(ticket.ok()) << ticket.status();
  if (ticket.ok()) o->ticket = *ticket;
  return o;
}

}  // namespace farm::scheduler::dispatch::testing
