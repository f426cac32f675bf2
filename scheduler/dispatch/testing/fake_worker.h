// In-memory fake workers for dispatcher tests: they talk to a SessionHandler (the Dispatcher)
// directly, without gRPC, and record what the dispatcher sends them.
//
//   scheduler::dispatch::testing::FakeWorker w(d->sessions(), {.id = "w1", .slots = 2});
//   ASSERT_OK(w.Connect());
//   auto outcome = scheduler::dispatch::testing::Start(d.get(),
//   scheduler::dispatch::testing::Spec("k1")); farm::v1::Task t = w.NextTask();
//   ASSERT_OK(w.Finish(t));
//   outcome->Wait();
#ifndef FARM_SCHEDULER_DISPATCH_TESTING_FAKE_WORKER_H_
#define FARM_SCHEDULER_DISPATCH_TESTING_FAKE_WORKER_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "farm/v1/scheduler.pb.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/worker_stream.h"

namespace farm::scheduler::dispatch::testing {

// How long a test waits for something that should happen (never reached when it works).
inline constexpr absl::Duration kWait = absl::Seconds(20);

// Records what the dispatcher sends; Flush makes queued messages visible.
class FakeStream final : public WorkerStream {
 public:
  void Enqueue(farm::v1::SchedulerMessage msg) override;
  void Flush() override;
  void Close(const absl::Status& status) override;

  // The next flushed message, waiting up to `timeout`; nullopt if none came.
  std::optional<farm::v1::SchedulerMessage> Next(absl::Duration timeout);
  // Flushed messages not yet taken by Next.
  int available();
  bool WaitClosed(absl::Duration timeout);
  absl::Status close_status();

 private:
  absl::Mutex mu_;
  std::deque<farm::v1::SchedulerMessage> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<farm::v1::SchedulerMessage> delivered_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

struct FakeWorkerOptions {
  std::string id = "w1";
  int slots = 1;
  std::string platform = "linux/amd64";
  std::vector<std::string> emulated_platforms;  // WorkerHello.emulated_platforms
  std::vector<std::string> chain_ids;
};

class FakeWorker {
 public:
  FakeWorker(SessionHandler* handler, FakeWorkerOptions options);

  // Opens a session (a new stream each time) listing `running` in the hello, and consumes the
  // Welcome.
  absl::Status Connect(const std::vector<farm::v1::RunningTask>& running = {});
  void Disconnect();

  // The next message must be a Task (waits up to `timeout`); an empty Task (and a test
  // failure) otherwise.
  farm::v1::Task NextTask(absl::Duration timeout = kWait);
  // The next message must be a CancelTask.
  farm::v1::CancelTask NextCancel(absl::Duration timeout = kWait);
  std::optional<farm::v1::SchedulerMessage> NextMessage(absl::Duration timeout);
  // True if nothing was sent since the last Next* (valid right after a synchronous call into
  // the dispatcher: its sends are flushed before it returns).
  bool Idle() { return stream_->available() == 0; }

  absl::Status Finish(const farm::v1::Task& t, int exit_code = 0);
  absl::Status Fail(const farm::v1::Task& t, const absl::Status& status);
  absl::Status Log(const farm::v1::Task& t, const std::string& line, bool is_stderr = false);
  absl::Status Heartbeat(const std::vector<farm::v1::Task>& running);
  absl::Status Send(const farm::v1::WorkerMessage& msg);

  static farm::v1::RunningTask Running(const farm::v1::Task& t);
  FakeStream& stream() { return *stream_; }
  const FakeWorkerOptions& options() const { return options_; }
  uint64_t session() const { return session_; }

 private:
  SessionHandler* const handler_;
  FakeWorkerOptions options_;
  std::shared_ptr<FakeStream> stream_;
  uint64_t session_ = 0;
};

// A caller's view of one Submit.
struct Outcome {
  uint64_t ticket = 0;
  absl::Notification done;
  absl::StatusOr<farm::v1::StepResult> result;
  absl::Mutex mu;
  std::vector<std::string> logs ABSL_GUARDED_BY(mu);

  // Waits for the result (up to kWait); false (and a test failure) if it never came.
  bool Wait();
  std::vector<std::string> Logs();
};

// A RUN step keyed `key` ("RUN <key>").
TaskSpec Spec(const std::string& key, const std::string& tenant = "", int priority = 0,
              const std::string& platform = "");

// Submit with a recording log sink and callback; fails the test on a Submit error.
std::shared_ptr<Outcome> Start(Dispatcher* d, const TaskSpec& spec);

}  // namespace farm::scheduler::dispatch::testing

#endif  // FARM_SCHEDULER_DISPATCH_TESTING_FAKE_WORKER_H_
