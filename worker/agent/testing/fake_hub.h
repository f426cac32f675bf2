// FakeWorkerHub: a scripted farm.v1.WorkerHub for farm-worker's tests, served in process on
// loopback. It answers each WorkerHello with a Welcome, sends what the test tells it to, and
// records everything workers send, so a test can wait for a condition on it.
//
//   auto hub = FakeWorkerHub::Start({});
//   agent_options.scheduler = hub->address();
//   ASSERT_TRUE(hub->WaitFor([](const FakeWorkerHub::Snapshot& s) { return !s.hellos.empty(); },
//                            absl::Seconds(30)));
//   hub->Send(TaskMessage(...));
//   hub->Stop();                       // every stream breaks, as when a scheduler dies
//   auto again = FakeWorkerHub::Start({.port = port});   // a restarted scheduler
#ifndef FARM_WORKER_AGENT_TESTING_FAKE_HUB_H_
#define FARM_WORKER_AGENT_TESTING_FAKE_HUB_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "farm/v1/scheduler.grpc.pb.h"

namespace grpc {
class Server;
}

namespace farm::worker::agent::testing {

class FakeWorkerHub {
 public:
  struct Options {
    int port = 0;  // 0: any free port
    farm::v1::Welcome welcome;
    bool send_welcome = true;  // false: a scheduler that never answers the hello
  };
  static std::unique_ptr<FakeWorkerHub> Start(const Options& options);
  ~FakeWorkerHub();

  std::string address() const;  // "127.0.0.1:PORT"
  int port() const { return port_; }
  // Shuts the server down at once: every stream breaks.
  void Stop();

  struct Received {
    int connection;  // index into Snapshot::hellos
    absl::Time at;
    farm::v1::WorkerMessage msg;
  };
  struct Snapshot {
    std::vector<farm::v1::WorkerHello> hellos;  // one per connection, in order
    std::vector<Received> received;             // every later message, in order
    std::vector<bool> open;                     // per connection: still streaming
    std::vector<bool> closed_by_worker;         // per connection: the worker half-closed it

    std::vector<farm::v1::TaskResult> Results(const std::string& task_id = "") const;
    std::vector<farm::v1::TaskLog> Logs(const std::string& task_id) const;
    std::vector<farm::v1::Heartbeat> Heartbeats() const;
    // Index in `received` of the first message matching, or -1.
    int IndexOf(const std::function<bool(const farm::v1::WorkerMessage&)>& pred) const;
  };
  Snapshot snapshot();
  // Waits until `pred` holds for the current snapshot or `timeout` passes.
  bool WaitFor(const std::function<bool(const Snapshot&)>& pred, absl::Duration timeout);

  // Sends to the newest open connection of `worker_id` ("" = the newest open connection).
  // False if there is none.
  bool Send(const farm::v1::SchedulerMessage& msg, const std::string& worker_id = "");

  struct Connection;  // internal
  class Service;      // internal

 private:
  FakeWorkerHub() = default;
  friend class Service;

  Options options_;
  int port_ = 0;
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
};

// A Task message (attempt 1, cache instance "main") and a CancelTask message.
farm::v1::SchedulerMessage TaskMessage(const std::string& task_id, const std::string& lease_id,
                                       farm::v1::StepRequest request);
farm::v1::SchedulerMessage CancelMessage(const std::string& task_id, const std::string& lease_id,
                                         const std::string& reason = "");

}  // namespace farm::worker::agent::testing

#endif  // FARM_WORKER_AGENT_TESTING_FAKE_HUB_H_
