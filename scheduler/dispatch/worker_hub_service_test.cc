// The WorkerHub service over real gRPC on loopback: fake workers written here speak the
// protocol with the generated client (one bidi stream each, a reader thread per worker).
#include "scheduler/dispatch/worker_hub_service.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <deque>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "farm/v1/scheduler.grpc.pb.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/testing/fake_worker.h"

namespace farm::scheduler::dispatch {
namespace {

using ::farm::scheduler::dispatch::testing::kWait;
using ::farm::scheduler::dispatch::testing::Spec;
using ::farm::scheduler::dispatch::testing::Start;
using ::testing::HasSubstr;

// A worker speaking WorkerHub over gRPC.
class GrpcWorker {
 public:
  // `reads`: how many messages to read before it stops reading until Resume (-1: all).
  explicit GrpcWorker(std::shared_ptr<grpc::Channel> channel, int reads = -1)
      : stub_(farm::v1::WorkerHub::NewStub(channel)), reads_left_(reads) {
    stream_ = stub_->Connect(&ctx_);
    reader_ = std::thread([this] {
      farm::v1::SchedulerMessage m;
      for (;;) {
        {
          absl::MutexLock l(&mu_);
          mu_.Await(absl::Condition(
              +[](int* left) { return *left != 0; }, &reads_left_));
          if (reads_left_ > 0) --reads_left_;
        }
        if (!stream_->Read(&m)) break;
        absl::MutexLock l(&mu_);
        in_.push_back(m);
      }
      absl::MutexLock l(&mu_);
      eof_ = true;
    });
  }

  ~GrpcWorker() {
    Resume();
    ctx_.TryCancel();
    reader_.join();
    if (!ended_) stream_->Finish().ok();
  }

  // One Write at a time (a sync stream allows one writer; the tests write from two threads).
  bool Write(const farm::v1::WorkerMessage& m) {
    absl::MutexLock l(&write_mu_);
    return stream_->Write(m);
  }

  // Reads everything from now on.
  void Resume() {
    absl::MutexLock l(&mu_);
    reads_left_ = -1;
  }

  // Says hello and waits for the Welcome.
  std::optional<farm::v1::Welcome> Hello(const std::string& id, int slots = 1,
                                         const std::string& platform = "linux/amd64") {
    farm::v1::WorkerMessage m;
    m.mutable_hello()->set_worker_id(id);
    m.mutable_hello()->set_slots(slots);
    m.mutable_hello()->set_platform(platform);
    m.mutable_hello()->set_version("test");
    if (!Write(m)) return std::nullopt;
    std::optional<farm::v1::SchedulerMessage> w = Next();
    if (!w.has_value() || !w->has_welcome()) return std::nullopt;
    return w->welcome();
  }

  std::optional<farm::v1::SchedulerMessage> Next(absl::Duration timeout = kWait) {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !in_.empty() || eof_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout) || in_.empty()) {
      return std::nullopt;
    }
    farm::v1::SchedulerMessage m = std::move(in_.front());
    in_.pop_front();
    return m;
  }

  farm::v1::Task NextTask() {
    std::optional<farm::v1::SchedulerMessage> m = Next();
    EXPECT_TRUE(m.has_value() && m->has_task()) << (m ? m->ShortDebugString() : "nothing");
    return m.has_value() ? m->task() : farm::v1::Task();
  }

  bool Result(const farm::v1::Task& t, int exit_code = 0) {
    farm::v1::WorkerMessage m;
    m.mutable_result()->set_task_id(t.task_id());
    m.mutable_result()->set_lease_id(t.lease_id());
    m.mutable_result()->mutable_result()->set_exit_code(exit_code);
    return Write(m);
  }

  bool Log(const farm::v1::Task& t, const std::string& line) {
    farm::v1::WorkerMessage m;
    m.mutable_log()->set_task_id(t.task_id());
    m.mutable_log()->set_lease_id(t.lease_id());
    m.mutable_log()->set_line(line);
    return Write(m);
  }

  bool Heartbeat() {
    farm::v1::WorkerMessage m;
    m.mutable_heartbeat();
    return Write(m);
  }

  // Waits for the server to end the stream; its status.
  grpc::Status WaitEnd() {
    {
      absl::MutexLock l(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(&eof_), kWait);
    }
    reader_.join();
    reader_ = std::thread([] {});
    grpc::Status s = stream_->Finish();
    ended_ = true;
    return s;
  }

  void Drop() { ctx_.TryCancel(); }

 private:
  absl::Mutex write_mu_;
  std::unique_ptr<farm::v1::WorkerHub::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<farm::v1::WorkerMessage, farm::v1::SchedulerMessage>>
      stream_;
  std::thread reader_;
  bool ended_ = false;
  absl::Mutex mu_;
  std::deque<farm::v1::SchedulerMessage> in_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
  int reads_left_ ABSL_GUARDED_BY(mu_);
};

class WorkerHubServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.clock = &clock_;
    options_.scheduler_id = "sched-test";
    options_.heartbeat_interval = absl::Seconds(5);
    options_.lease_timeout = absl::Seconds(30);
    options_.event_log = [this](absl::string_view line) {
      absl::MutexLock l(&events_mu_);
      events_.emplace_back(line);
    };
  }

  void StartServer() {
    auto d = Dispatcher::Create(options_);
    ASSERT_TRUE(d.ok()) << d.status();
    d_ = std::move(*d);
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(d_->service());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    workers_.clear();
    if (d_ != nullptr) d_->Shutdown();
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    d_.reset();
  }

  GrpcWorker* NewWorker(int reads = -1) {
    workers_.push_back(std::make_unique<GrpcWorker>(channel_, reads));
    return workers_.back().get();
  }

  bool WaitEvent(const std::string& needle) { return !Event(needle).empty(); }

  // The first event line containing `needle` (waits for it); "" if none came.
  std::string Event(const std::string& needle) {
    absl::MutexLock l(&events_mu_);
    std::string found;
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(events_mu_) {
      for (const std::string& e : events_) {
        if (absl::StrContains(e, needle)) {
          found = e;
          return true;
        }
      }
      return false;
    };
    events_mu_.AwaitWithTimeout(absl::Condition(&seen), kWait);
    return found;
  }

  int CountEvents(const std::string& needle) {
    absl::MutexLock l(&events_mu_);
    int n = 0;
    for (const std::string& e : events_) n += absl::StrContains(e, needle) ? 1 : 0;
    return n;
  }

  SimulatedClock clock_;
  Options options_;
  std::unique_ptr<Dispatcher> d_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::vector<std::unique_ptr<GrpcWorker>> workers_;
  absl::Mutex events_mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(events_mu_);
};

TEST_F(WorkerHubServiceTest, WelcomeThenTasksLogsAndResultsFlowOverTheStream) {
  StartServer();
  GrpcWorker* w = NewWorker();
  std::optional<farm::v1::Welcome> welcome = w->Hello("w1", 2);
  ASSERT_TRUE(welcome.has_value());
  EXPECT_EQ(welcome->heartbeat_interval_millis(), 5000);
  EXPECT_EQ(welcome->lease_timeout_millis(), 30000);
  EXPECT_EQ(welcome->scheduler_id(), "sched-test");

  TaskSpec spec = Spec("k1");
  spec.cache_instance = "pr-7";
  spec.secrets = {{"npmrc", "token=1"}};
  auto o = Start(d_.get(), spec);
  farm::v1::Task t = w->NextTask();
  EXPECT_EQ(t.request().key(), "k1");
  EXPECT_EQ(t.cache_instance(), "pr-7");
  EXPECT_EQ(t.secrets().at("npmrc"), "token=1");
  ASSERT_TRUE(w->Log(t, "compiling"));
  ASSERT_TRUE(w->Result(t, 0));
  ASSERT_TRUE(o->Wait());
  ASSERT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_THAT(o->Logs(), ::testing::ElementsAre("compiling"));

  std::vector<farm::v1::WorkerInfo> workers = d_->Workers();
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_THAT(workers[0].address(), HasSubstr("127.0.0.1"));
  EXPECT_EQ(workers[0].slots(), 2);
  EXPECT_EQ(workers[0].tasks_done(), 1);
}

TEST_F(WorkerHubServiceTest, FirstMessageMustBeAHello) {
  StartServer();
  GrpcWorker* w = NewWorker();
  ASSERT_TRUE(w->Heartbeat());
  grpc::Status s = w->WaitEnd();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("WorkerHello"));
}

TEST_F(WorkerHubServiceTest, BadHelloEndsTheStreamWithTheReason) {
  StartServer();
  GrpcWorker* w = NewWorker();
  farm::v1::WorkerMessage m;
  m.mutable_hello()->set_worker_id("w1");
  m.mutable_hello()->set_slots(0);
  ASSERT_TRUE(w->Write(m));
  grpc::Status s = w->WaitEnd();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("slots 0"));
}

TEST_F(WorkerHubServiceTest, DroppedStreamRequeuesTheTaskOnAnotherWorker) {
  StartServer();
  GrpcWorker* w1 = NewWorker();
  ASSERT_TRUE(w1->Hello("w1").has_value());
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task first = w1->NextTask();
  GrpcWorker* w2 = NewWorker();
  ASSERT_TRUE(w2->Hello("w2").has_value());
  w1->Drop();  // the worker's host dies
  ASSERT_TRUE(WaitEvent("worker w1 disconnected"));
  clock_.Advance(absl::Seconds(15));
  // (If the heartbeat is processed after the next Advance, w2 is briefly stale and gets the
  // task when it arrives: the outcome is the same.)
  ASSERT_TRUE(w2->Heartbeat());
  clock_.Advance(absl::Seconds(15));
  farm::v1::Task second = w2->NextTask();
  EXPECT_EQ(second.request().key(), "k1");
  EXPECT_EQ(second.attempt(), 2);
  ASSERT_TRUE(w2->Result(second));
  ASSERT_TRUE(o->Wait());
  EXPECT_TRUE(o->result.ok());
}

// A step whose Task message is about `bytes` long.
TaskSpec BigSpec(const std::string& key, size_t bytes) {
  TaskSpec spec = Spec(key);
  spec.request.set_description(std::string(bytes, 'x'));
  return spec;
}

// A worker that stops reading: the scheduler's queue to it passes the bound, its stream ends
// with RESOURCE_EXHAUSTED naming the worker and the bound, one event line says so, and its
// tasks are requeued like those of any lost worker (after lease_timeout, on another worker).
TEST_F(WorkerHubServiceTest, WorkerThatStopsReadingLosesItsStreamAtTheSendQueueBound) {
  options_.max_send_queue_bytes = 512 << 10;
  options_.max_send_queue_messages = 0;
  StartServer();
  GrpcWorker* stuck = NewWorker(/*reads=*/1);  // the Welcome, then nothing
  ASSERT_TRUE(stuck->Hello("w1", 64).has_value());
  constexpr int kTasks = 40;  // 10 MiB: more than HTTP/2 flow control lets into flight
  std::vector<std::shared_ptr<testing::Outcome>> outcomes;
  for (int i = 0; i < kTasks; ++i) {
    outcomes.push_back(Start(d_.get(), BigSpec(absl::StrCat("k", i), 256 << 10)));
  }
  std::string line = Event("worker w1 disconnected (RESOURCE_EXHAUSTED");
  ASSERT_NE(line, "");
  EXPECT_THAT(line, HasSubstr("not reading"));
  EXPECT_THAT(line, HasSubstr("512 KiB"));
  EXPECT_THAT(line, HasSubstr("--max-worker-send-queue"));
  EXPECT_EQ(CountEvents("RESOURCE_EXHAUSTED"), 1);  // one line, not one per dropped message

  // Its leases are lost lease_timeout later and run on a worker that reads.
  GrpcWorker* good = NewWorker();
  ASSERT_TRUE(good->Hello("w2", 1).has_value());
  std::thread answer([good] {
    for (;;) {
      std::optional<farm::v1::SchedulerMessage> m = good->Next(absl::Seconds(2));
      if (!m.has_value()) return;
      if (m->has_task()) good->Result(m->task());
    }
  });
  clock_.Advance(absl::Seconds(15));
  ASSERT_TRUE(good->Heartbeat());
  clock_.Advance(absl::Seconds(16));
  for (auto& o : outcomes) ASSERT_TRUE(o->Wait());
  answer.join();
  for (auto& o : outcomes) EXPECT_TRUE(o->result.ok()) << o->result.status();
  EXPECT_GE(d_->Stats().requeued, 1);

  // Once the stuck worker reads what was in flight, it gets the reason.
  stuck->Resume();
  grpc::Status s = stuck->WaitEnd();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("worker w1"));
  EXPECT_THAT(s.error_message(), HasSubstr("512 KiB"));
  EXPECT_THAT(s.error_message(), HasSubstr("--max-worker-send-queue"));
}

TEST_F(WorkerHubServiceTest, SendQueueBoundInMessages) {
  options_.max_send_queue_bytes = 0;
  options_.max_send_queue_messages = 4;
  StartServer();
  GrpcWorker* stuck = NewWorker(/*reads=*/1);
  ASSERT_TRUE(stuck->Hello("w1", 64).has_value());
  std::vector<std::shared_ptr<testing::Outcome>> outcomes;
  // 16 MiB for its 64 slots: more than HTTP/2 flow control (with BDP probing) lets into flight,
  // so the queue behind the transport must pass 4 messages.
  for (int i = 0; i < 64; ++i) {
    outcomes.push_back(Start(d_.get(), BigSpec(absl::StrCat("k", i), 256 << 10)));
  }
  std::string line = Event("worker w1 disconnected (RESOURCE_EXHAUSTED");
  EXPECT_THAT(line, HasSubstr("4 messages"));
  EXPECT_THAT(line, HasSubstr("--max-worker-send-queue-messages"));
  for (auto& o : outcomes) d_->Cancel(o->ticket);
}

TEST_F(WorkerHubServiceTest, CancelReachesTheWorker) {
  StartServer();
  GrpcWorker* w = NewWorker();
  ASSERT_TRUE(w->Hello("w1").has_value());
  auto o = Start(d_.get(), Spec("k1"));
  farm::v1::Task t = w->NextTask();
  d_->Cancel(o->ticket);
  std::optional<farm::v1::SchedulerMessage> m = w->Next();
  ASSERT_TRUE(m.has_value() && m->has_cancel());
  EXPECT_EQ(m->cancel().lease_id(), t.lease_id());
}

TEST_F(WorkerHubServiceTest, SecondConnectionOfAWorkerEndsTheFirst) {
  StartServer();
  GrpcWorker* a = NewWorker();
  ASSERT_TRUE(a->Hello("w1").has_value());
  GrpcWorker* b = NewWorker();
  ASSERT_TRUE(b->Hello("w1").has_value());
  grpc::Status s = a->WaitEnd();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  auto o = Start(d_.get(), Spec("k1"));
  ASSERT_TRUE(b->Result(b->NextTask()));
  ASSERT_TRUE(o->Wait());
}

TEST_F(WorkerHubServiceTest, ShutdownEndsWorkerStreamsWithUnavailable) {
  StartServer();
  GrpcWorker* w = NewWorker();
  ASSERT_TRUE(w->Hello("w1").has_value());
  d_->Shutdown();
  grpc::Status s = w->WaitEnd();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(WorkerHubServiceTest, ManyWorkersManyTasks) {
  StartServer();
  constexpr int kWorkers = 16;
  constexpr int kTasks = 400;
  std::vector<GrpcWorker*> ws;
  for (int i = 0; i < kWorkers; ++i) {
    ws.push_back(NewWorker());
    ASSERT_TRUE(ws.back()->Hello(absl::StrCat("w", i), 2).has_value());
  }
  std::vector<std::shared_ptr<testing::Outcome>> outcomes;
  for (int i = 0; i < kTasks; ++i) {
    outcomes.push_back(Start(d_.get(), Spec(absl::StrCat("k", i % 300), absl::StrCat("t", i % 3))));
  }
  // Every worker answers whatever it gets until all tasks are done.
  std::vector<std::thread> threads;
  for (GrpcWorker* w : ws) {
    threads.emplace_back([w] {
      for (;;) {
        std::optional<farm::v1::SchedulerMessage> m = w->Next(absl::Milliseconds(500));
        if (!m.has_value()) return;
        if (m->has_task()) w->Result(m->task());
      }
    });
  }
  for (auto& o : outcomes) ASSERT_TRUE(o->Wait());
  for (auto& t : threads) t.join();
  for (auto& o : outcomes) EXPECT_TRUE(o->result.ok()) << o->result.status();
  DispatchStats s = d_->Stats();
  EXPECT_EQ(s.dispatched, 300);  // 100 keys were wanted twice: one run each
  EXPECT_EQ(s.deduplicated + s.dispatched, kTasks);
  EXPECT_EQ(s.completed, 300);
}

}  // namespace
}  // namespace farm::scheduler::dispatch
