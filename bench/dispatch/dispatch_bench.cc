// dispatch_bench: farm-scheduler's dispatcher under load, over real gRPC on loopback.
//
//   bazel build -c opt //bench/dispatch:dispatch_bench
//   bazel-bin/bench/dispatch/dispatch_bench [--workers 100] [--slots 1] [--tasks 10000]
//       [--builds 1000] [--tenants 4] [--dup-percent 10] [--mode burst|preload|paced]
//       [--rate 2000] [--state-dir DIR] [--log-lines 0] [--parents 5] [--shared-channel]
//       [--locality-wait-ms 500] [--no-chains]
//
// In one process: a Dispatcher (with RocksDB state if --state-dir is given) serving
// farm.v1.WorkerHub on 127.0.0.1:0, and --workers simulated farm-workers, each its own gRPC
// channel (TCP connection) and callback-API bidi stream, answering every Task at once with a
// TaskResult (after --log-lines TaskLogs). --tasks steps come from --builds builds spread over
// --tenants tenants (tenant 0 submits half of them); --dup-percent of the steps use keys that
// other builds also want (in-flight dedup joins them). Modes:
//   burst    workers connected, every task submitted at once (the queue holds ~all of them);
//   preload  every task queued before any worker connects, then the workers connect;
//   paced    workers connected, tasks submitted at --rate per second (latency below capacity).
// Reports dispatches/s (leases granted per second of wall time, from the first submit, or for
// preload from the first connect, to the last result), queue latency (submit, or connect for
// preload, to the Task's arrival at its worker) p50/p90/p99/max, and the process's CPU use.
// It measures; it never passes or fails on a number.
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <iostream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/digest.h"
#include "common/flags.h"
#include "farm/v1/scheduler.grpc.pb.h"
#include "scheduler/dispatch/dispatcher.h"
#include "scheduler/dispatch/remote_step_executor.h"

namespace {

using farm::v1::SchedulerMessage;
using farm::v1::WorkerMessage;

struct Receipt {
  std::string key;
  absl::Time at;
};

// A simulated farm-worker: one callback-API bidi stream; answers each Task at once.
class SimWorker final : public grpc::ClientBidiReactor<WorkerMessage, SchedulerMessage> {
 public:
  SimWorker(std::shared_ptr<grpc::Channel> channel, std::string id, int slots, int log_lines,
            std::vector<std::string> chain_ids)
      : stub_(farm::v1::WorkerHub::NewStub(channel)),
        id_(std::move(id)),
        slots_(slots),
        log_lines_(log_lines),
        chain_ids_(std::move(chain_ids)) {}

  void Start() {
    stub_->async()->Connect(&ctx_, this);
    WorkerMessage hello;
    hello.mutable_hello()->set_worker_id(id_);
    hello.mutable_hello()->set_slots(slots_);
    hello.mutable_hello()->set_platform("linux/amd64");
    for (const std::string& c : chain_ids_) hello.mutable_hello()->add_chain_ids(c);
    Send(std::move(hello));
    StartRead(&in_);
    StartCall();
  }

  void Stop() {
    ctx_.TryCancel();
    done_.WaitForNotification();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (in_.has_task()) {
      const farm::v1::Task& t = in_.task();
      receipts_.push_back(Receipt{t.request().key(), absl::Now()});
      for (int i = 0; i < log_lines_; ++i) {
        WorkerMessage log;
        log.mutable_log()->set_task_id(t.task_id());
        log.mutable_log()->set_lease_id(t.lease_id());
        log.mutable_log()->set_line(absl::StrCat("step output line ", i));
        Send(std::move(log));
      }
      WorkerMessage result;
      farm::v1::TaskResult* r = result.mutable_result();
      r->set_task_id(t.task_id());
      r->set_lease_id(t.lease_id());
      farm::v1::Layer* layer = r->mutable_result()->mutable_layer();
      layer->set_digest(farm::common::DigestOf(t.request().key()).OciString());
      layer->set_diff_id(layer->digest());
      layer->set_size(4096);
      layer->set_media_type("application/vnd.oci.image.layer.v1.tar+gzip");
      Send(std::move(result));
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock l(&mu_);
      writing_ = false;
      if (!ok) queue_.clear();
    }
    NextWrite();
  }

  void OnDone(const grpc::Status& s) override {
    status_ = s;
    done_.Notify();
  }

  const std::vector<Receipt>& receipts() const { return receipts_; }

 private:
  void Send(WorkerMessage m) {
    {
      absl::MutexLock l(&mu_);
      queue_.push_back(std::move(m));
    }
    NextWrite();
  }

  void NextWrite() {
    {
      absl::MutexLock l(&mu_);
      if (writing_ || queue_.empty()) return;
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
    }
    StartWrite(&current_);
  }

  std::unique_ptr<farm::v1::WorkerHub::Stub> stub_;
  const std::string id_;
  const int slots_;
  const int log_lines_;
  const std::vector<std::string> chain_ids_;
  grpc::ClientContext ctx_;
  SchedulerMessage in_;
  std::vector<Receipt> receipts_;  // touched only by OnReadDone (one read at a time)
  absl::Mutex mu_;
  std::deque<WorkerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  WorkerMessage current_;
  absl::Notification done_;
  grpc::Status status_;
};

farm::v1::Layer FakeLayer(int i) {
  farm::v1::Layer l;
  std::string seed = absl::StrCat("layer-", i);
  l.set_diff_id(farm::common::DigestOf(seed).OciString());
  l.set_digest(farm::common::DigestOf(seed + ".gz").OciString());
  l.set_size(10 << 20);
  l.set_uncompressed_size(30 << 20);
  l.set_media_type("application/vnd.oci.image.layer.v1.tar+gzip");
  return l;
}

// A realistic RUN step: env, args, a few parent layers.
farm::scheduler::dispatch::TaskSpec MakeSpec(const std::string& key, const std::string& tenant,
                                             int priority, int base, int parents) {
  farm::scheduler::dispatch::TaskSpec s;
  s.key = key;
  s.tenant = tenant;
  s.priority = priority;
  s.build_id = tenant;
  s.cache_instance = "main";
  farm::v1::StepRequest& r = s.request;
  r.set_key(key);
  r.set_description("RUN apt-get update && apt-get install -y build-essential && make -j8");
  for (int i = 0; i < parents; ++i) *r.add_parents() = FakeLayer(base + i);
  r.mutable_env()->set_platform("linux/amd64");
  r.mutable_env()->set_workdir("/src");
  for (int i = 0; i < 8; ++i) r.mutable_env()->add_env(absl::StrCat("VAR_", i, "=value-", i));
  r.mutable_run()->add_args("/bin/sh");
  r.mutable_run()->add_args("-c");
  r.mutable_run()->add_args("apt-get update && apt-get install -y build-essential && make -j8");
  if (parents > 0) s.parent_chain_ids = *farm::scheduler::dispatch::ParentChainIds(r.parents());
  return s;
}

int64_t Percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  std::nth_element(v.begin(), v.begin() + i, v.end());
  return v[i];
}

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec / 1e6 + u.ru_stime.tv_sec +
         u.ru_stime.tv_usec / 1e6;
}

std::string Ms(int64_t micros) { return absl::StrFormat("%.2f ms", micros / 1000.0); }

}  // namespace

int main(int argc, char** argv) {
  int64_t workers = 100, slots = 1, tasks = 10000, builds = 1000, tenants = 4, dup_percent = 10;
  int64_t rate = 2000, log_lines = 0, parents = 5, locality_wait_ms = 500;
  bool no_chains = false;
  std::string mode = "burst", state_dir;
  bool shared_channel = false;
  farm::common::FlagSet fs("dispatch_bench [OPTIONS]", "Load test of the dispatcher over gRPC");
  fs.Int("workers", 0, &workers, "simulated workers");
  fs.Int("slots", 0, &slots, "slots per worker");
  fs.Int("tasks", 0, &tasks, "steps submitted");
  fs.Int("builds", 0, &builds, "builds the steps come from");
  fs.Int("tenants", 0, &tenants, "tenants (tenant 0 submits half of the builds)");
  fs.Int("dup-percent", 0, &dup_percent, "steps whose key other builds also want");
  fs.String("mode", 0, &mode, "burst | preload | paced");
  fs.Int("rate", 0, &rate, "paced: submissions per second");
  fs.String("state-dir", 0, &state_dir, "persist tasks and leases in RocksDB here");
  fs.Int("log-lines", 0, &log_lines, "TaskLog lines each task sends before its result");
  fs.Int("parents", 0, &parents, "parent layers per step (locality lookups)");
  fs.Bool("shared-channel", 0, &shared_channel, "all workers on one gRPC channel");
  fs.Int("locality-wait-ms", 0, &locality_wait_ms, "Options::locality_wait");
  fs.Bool("no-chains", 0, &no_chains, "send parents but no parent chain IDs (no locality)");
  std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<std::vector<std::string>> pos = fs.Parse(args);
  if (!pos.ok()) {
    std::cerr << "dispatch_bench: " << pos.status().message() << "\n";
    return 2;
  }
  if (fs.help_requested()) {
    std::cout << fs.Help();
    return 0;
  }
  if (mode != "burst" && mode != "preload" && mode != "paced") {
    std::cerr << "dispatch_bench: --mode must be burst, preload or paced\n";
    return 2;
  }

  farm::scheduler::dispatch::Options o;
  o.state_dir = state_dir;
  o.max_queued_tasks = static_cast<int>(std::max<int64_t>(100000, tasks));
  o.locality_wait = absl::Milliseconds(locality_wait_ms);
  auto created = farm::scheduler::dispatch::Dispatcher::Create(o);
  if (!created.ok()) {
    std::cerr << "dispatch_bench: " << created.status() << "\n";
    return 1;
  }
  std::unique_ptr<farm::scheduler::dispatch::Dispatcher> d = std::move(*created);
  grpc::ServerBuilder b;
  int port = 0;
  b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  b.RegisterService(d->service());
  std::unique_ptr<grpc::Server> server = b.BuildAndStart();
  std::string target = absl::StrCat("127.0.0.1:", port);

  // The steps: builds of tasks/builds steps each; some keys shared between builds.
  std::vector<farm::scheduler::dispatch::TaskSpec> specs;
  specs.reserve(tasks);
  int64_t per_build = std::max<int64_t>(1, tasks / builds);
  for (int64_t i = 0; i < tasks; ++i) {
    int64_t build = i / per_build;
    int64_t tenant = build % 2 == 0 ? 0 : 1 + (build / 2) % std::max<int64_t>(1, tenants - 1);
    bool dup = (i * 7919) % 100 < dup_percent;
    std::string key = dup ? absl::StrCat("shared-", i % 200) : absl::StrCat("b", build, "-s", i);
    specs.push_back(MakeSpec(farm::common::DigestOf(key).hash, absl::StrCat("tenant-", tenant),
                             static_cast<int>(i % 3), static_cast<int>(build % 50),
                             static_cast<int>(parents)));
    if (no_chains) specs.back().parent_chain_ids.clear();
  }
  std::vector<absl::Time> submit_at(specs.size());

  // Simulated workers, each holding a few base layer stacks (locality hits for some steps).
  std::vector<std::unique_ptr<SimWorker>> sims;
  std::shared_ptr<grpc::Channel> shared;
  auto connect_workers = [&] {
    for (int64_t i = 0; i < workers; ++i) {
      std::shared_ptr<grpc::Channel> ch;
      if (shared_channel) {
        if (shared == nullptr)
          shared = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
        ch = shared;
      } else {
        grpc::ChannelArguments ca;
        ca.SetInt("farm.bench.worker", static_cast<int>(i));  // distinct args: own connection
        ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), ca);
      }
      std::vector<std::string> chains;
      if (parents > 0) {
        google::protobuf::RepeatedPtrField<farm::v1::Layer> stack;
        for (int j = 0; j < parents; ++j) *stack.Add() = FakeLayer(static_cast<int>(i % 50) + j);
        chains = *farm::scheduler::dispatch::ParentChainIds(stack);
      }
      sims.push_back(std::make_unique<SimWorker>(ch, absl::StrCat("sim-", i),
                                                 static_cast<int>(slots),
                                                 static_cast<int>(log_lines), chains));
      sims.back()->Start();
    }
    while (d->Stats().workers_connected < workers) absl::SleepFor(absl::Milliseconds(1));
  };

  std::atomic<int64_t> done{0};
  std::atomic<int64_t> failed{0};
  absl::Notification all_done;
  const int64_t total = tasks;
  auto submit = [&](size_t i) {
    submit_at[i] = absl::Now();
    absl::StatusOr<uint64_t> t =
        d->Submit(specs[i], nullptr, [&](absl::StatusOr<farm::v1::StepResult> r) {
          if (!r.ok()) failed.fetch_add(1);
          if (done.fetch_add(1) + 1 == total) all_done.Notify();
        });
    if (!t.ok()) {
      std::cerr << "submit: " << t.status() << "\n";
      if (done.fetch_add(1) + 1 == total) all_done.Notify();
    }
  };

  absl::Time t0;
  double cpu0 = 0;
  if (mode == "preload") {
    for (size_t i = 0; i < specs.size(); ++i) submit(i);
    std::cerr << "queued: " << d->Stats().queued << " tasks\n";
    cpu0 = CpuSeconds();
    t0 = absl::Now();
    connect_workers();
  } else {
    connect_workers();
    cpu0 = CpuSeconds();
    t0 = absl::Now();
    if (mode == "burst") {
      for (size_t i = 0; i < specs.size(); ++i) submit(i);
    } else {
      absl::Duration step = absl::Seconds(1) / static_cast<double>(rate);
      for (size_t i = 0; i < specs.size(); ++i) {
        absl::Time due = t0 + step * static_cast<double>(i);
        absl::Time now = absl::Now();
        if (due > now) absl::SleepFor(due - now);
        submit(i);
      }
    }
  }
  absl::Time t_submitted = absl::Now();
  all_done.WaitForNotification();
  absl::Time t1 = absl::Now();
  double cpu = CpuSeconds() - cpu0;
  farm::scheduler::dispatch::DispatchStats st = d->Stats();

  for (auto& s : sims) s->Stop();
  d->Shutdown();
  server->Shutdown();

  // Queue latency: from a submit (or the workers' arrival for preload) to the Task's arrival
  // at a worker. A key can be dispatched more than once (wanted again after it finished): each
  // dispatch answers the submits of that key made before it that no earlier dispatch answered.
  absl::flat_hash_map<std::string, std::vector<absl::Time>> submits, receipts;
  for (size_t i = 0; i < specs.size(); ++i) {
    submits[specs[i].key].push_back(mode == "preload" ? t0 : submit_at[i]);
  }
  for (const auto& s : sims) {
    for (const Receipt& r : s->receipts()) receipts[r.key].push_back(r.at);
  }
  std::vector<int64_t> lat;
  for (auto& [key, rs] : receipts) {
    std::vector<absl::Time>& ss = submits[key];
    std::sort(ss.begin(), ss.end());
    std::sort(rs.begin(), rs.end());
    size_t j = 0;
    for (absl::Time r : rs) {
      if (j >= ss.size()) break;
      lat.push_back(absl::ToInt64Microseconds(r - ss[j]));
      while (j < ss.size() && ss[j] <= r) ++j;
    }
  }
  double wall = absl::ToDoubleSeconds(t1 - t0);
  std::cout << absl::StrFormat(
      "| %s | %d x %d | %d (%d builds, %d tenants, %d%% shared keys) | %s | %d | %d | %.0f | %s "
      "| %s | %s | %s | %.2f s | %.2f |\n",
      mode, workers, slots, tasks, builds, tenants, dup_percent,
      state_dir.empty() ? "memory" : "RocksDB", st.dispatched, st.deduplicated,
      st.dispatched / wall, Ms(Percentile(lat, 0.5)), Ms(Percentile(lat, 0.9)),
      Ms(Percentile(lat, 0.99)), Ms(Percentile(lat, 1.0)), wall, cpu / wall);
  std::cerr << "submitted in " << absl::FormatDuration(t_submitted - t0) << ", failed "
            << failed.load() << ", dispatched " << st.dispatched << ", deduplicated "
            << st.deduplicated << ", completed " << st.completed << "\n";
  return failed.load() == 0 ? 0 : 1;
}
