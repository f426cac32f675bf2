// rogue_worker: a farm-worker that lies, for //tests/farm:farm_test. It joins farm-scheduler's
// WorkerHub with a valid worker certificate (its hello claims another worker's id; the
// certificate's is the one that counts), announces a platform and waits for one task. Then:
//   (a) it uploads --layer (a gzip layer) to farm-cache and reports it as the task's result
//       with the layer's true diff_id, but under a lease id that is not its own (its lease with
//       one byte changed): the scheduler must refuse it (CancelTask for that lease);
//   (b) it reports the same layer for its own lease, claiming a diff_id that is not the layer's
//       content: the scheduler must refuse that result (the build sees PERMISSION_DENIED) and
//       cache nothing.
// It prints what it did and what the scheduler sent back, one "rogue: " line each, for the test
// to assert on. It uses the real worker's client code (Session, GrpcBlobStore); exit status 0
// once it got a task and sent both results, 1 otherwise.
//
//   rogue_worker --scheduler HOST:PORT --cache HOST:PORT --platform linux/s390x
//     --layer layer.tar.gz --diff-id sha256:... --tls-ca ca.crt --tls-cert workers/rogue.crt
//     --tls-key workers/rogue.key
#include <deque>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "auth/flags.h"
#include "auth/grpc_auth.h"
#include "cache/client/grpc_blob_store.h"
#include "common/digest.h"
#include "common/flags.h"
#include "common/fs.h"
#include "farm/v1/scheduler.pb.h"
#include "oci/media_types.h"
#include "worker/agent/connect.h"
#include "worker/agent/session.h"

namespace {

absl::Mutex print_mu;

void Print(const std::string& line) {
  absl::MutexLock l(&print_mu);
  std::cout << "rogue: " << line << std::endl;
}

class Rogue final : public farm::worker::agent::Session::Delegate {
 public:
  Rogue(std::string claimed_id, std::string platform)
      : claimed_id_(std::move(claimed_id)), platform_(std::move(platform)) {}

  absl::Status BeforeConnect(const std::function<bool()>&) override { return absl::OkStatus(); }

  void FillHello(farm::v1::WorkerHello* hello) override {
    hello->set_worker_id(claimed_id_);
    hello->set_slots(1);
    hello->set_platform(platform_);
    (*hello->mutable_labels())["host"] = "rogue";
    hello->set_version("rogue");
  }

  void FillHeartbeat(farm::v1::Heartbeat* heartbeat) override {
    absl::MutexLock l(&mu_);
    if (held_.has_value()) {
      farm::v1::RunningTask* r = heartbeat->add_running();
      r->set_task_id(held_->task_id());
      r->set_lease_id(held_->lease_id());
      r->set_key(held_->request().key());
    }
  }

  void HeartbeatSent() override {}

  void OnTask(farm::v1::Task* task) override {
    Print(absl::StrCat("got task ", task->task_id(), " lease ", task->lease_id(), " attempt ",
                       task->attempt(), ": ", task->request().description()));
    absl::MutexLock l(&mu_);
    tasks_.push_back(*task);
  }

  void OnCancel(const farm::v1::CancelTask& cancel) override {
    Print(absl::StrCat("got CancelTask for task ", cancel.task_id(), " lease ", cancel.lease_id(),
                       ": ", cancel.reason()));
    absl::MutexLock l(&mu_);
    cancels_.push_back(cancel);
  }

  Held HeldTasks() override {
    absl::MutexLock l(&mu_);
    int n = held_.has_value() ? 1 : 0;
    return {n, n};
  }

  // The next task within `timeout`; it is held (listed in heartbeats) until Release.
  std::optional<farm::v1::Task> NextTask(absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !tasks_.empty(); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return std::nullopt;
    held_ = tasks_.front();
    tasks_.pop_front();
    return held_;
  }
  void Release() {
    absl::MutexLock l(&mu_);
    held_.reset();
  }

  // A CancelTask for `lease_id` within `timeout`.
  std::optional<farm::v1::CancelTask> CancelFor(const std::string& lease_id,
                                                absl::Duration timeout) {
    absl::MutexLock l(&mu_);
    std::optional<farm::v1::CancelTask> found;
    auto seen = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const farm::v1::CancelTask& c : cancels_) {
        if (c.lease_id() == lease_id) {
          found = c;
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&seen), timeout);
    return found;
  }

 private:
  const std::string claimed_id_;
  const std::string platform_;
  absl::Mutex mu_;
  std::deque<farm::v1::Task> tasks_ ABSL_GUARDED_BY(mu_);
  std::deque<farm::v1::CancelTask> cancels_ ABSL_GUARDED_BY(mu_);
  std::optional<farm::v1::Task> held_ ABSL_GUARDED_BY(mu_);
};

int Fail(const std::string& message, int code = 1) {
  Print(absl::StrCat("error: ", message));
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  std::string scheduler, cache, platform = "linux/s390x", layer_file, diff_id, claim_id = "w1";
  std::string wait_text = "60s", linger_text = "1s";
  farm::auth::ClientAuthOptions security;
  farm::common::FlagSet fs(
      "rogue_worker --scheduler HOST:PORT --cache HOST:PORT --layer FILE "
      "--diff-id DIGEST [OPTIONS]",
      "A worker that lies (tests/farm/farm_test.sh)");
  fs.String("scheduler", 0, &scheduler, "farm-scheduler's address", "HOST:PORT");
  fs.String("cache", 0, &cache, "farm-cache's address", "HOST:PORT");
  fs.String("platform", 0, &platform, "Platform to announce", "OS/ARCH");
  fs.String("layer", 0, &layer_file, "A gzip layer blob to upload and report", "FILE");
  fs.String("diff-id", 0, &diff_id, "The layer's true diff_id (reported in (a))", "DIGEST");
  fs.String("hello-id", 0, &claim_id, "The worker id its hello claims", "ID");
  fs.String("wait", 0, &wait_text, "How long to wait for a task", "DURATION");
  fs.String("linger", 0, &linger_text, "How long to stay after (b), printing what comes",
            "DURATION");
  farm::auth::RegisterClientFlags(&fs, "", &security);
  auto rest = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!rest.ok()) return Fail(std::string(rest.status().message()), 2);
  absl::Duration wait, linger;
  if (scheduler.empty() || cache.empty() || layer_file.empty() || diff_id.empty() ||
      !absl::ParseDuration(wait_text, &wait) || !absl::ParseDuration(linger_text, &linger)) {
    return Fail("need --scheduler, --cache, --layer, --diff-id (and durations)", 2);
  }
  for (std::string* address : {&scheduler, &cache}) {
    absl::StatusOr<std::string> target = farm::worker::agent::ParsePeerAddress("address", *address);
    if (!target.ok()) return Fail(std::string(target.status().message()), 2);
    *address = *std::move(target);
  }
  absl::StatusOr<std::string> layer = farm::common::ReadFile(layer_file);
  if (!layer.ok()) return Fail(std::string(layer.status().message()));

  auto scheduler_creds = farm::auth::ClientCredentials(scheduler, security);
  if (!scheduler_creds.ok()) return Fail(std::string(scheduler_creds.status().message()));
  auto cache_creds = farm::auth::ClientCredentials(cache, security);
  if (!cache_creds.ok()) return Fail(std::string(cache_creds.status().message()));
  farm::cache::client::GrpcBlobStore cas(
      farm::worker::agent::NewChannel(cache, std::nullopt, *cache_creds),
      farm::cache::client::GrpcBlobStore::Options());

  Rogue rogue(claim_id, platform);
  farm::worker::agent::Session::Options so;
  so.target = scheduler;
  so.credentials = *scheduler_creds;
  so.log = [](const std::string& line) { Print(absl::StrCat("session: ", line)); };
  farm::worker::agent::Session session(std::move(so), &rogue);
  session.Start();
  Print(absl::StrCat("joining as ", platform, " (its hello claims worker id \"", claim_id, "\")"));

  std::optional<farm::v1::Task> task = rogue.NextTask(wait);
  if (!task.has_value()) {
    session.Stop({});
    session.Drain(absl::Now() + absl::Seconds(5));
    return Fail(absl::StrCat("no task within ", absl::FormatDuration(wait)));
  }

  // The layer, uploaded as any worker would (farm-cache hashes it and works out its diff_id).
  absl::StatusOr<farm::common::Digest> digest = cas.Put(*layer);
  if (!digest.ok()) return Fail(absl::StrCat("uploading the layer: ", digest.status().message()));
  Print(absl::StrCat("uploaded layer ", digest->OciString(), " (", digest->size_bytes,
                     " bytes, gzip) to farm-cache"));
  auto result_for = [&](const std::string& lease_id, const std::string& claimed_diff_id) {
    farm::v1::TaskResult r;
    r.set_task_id(task->task_id());
    r.set_lease_id(lease_id);
    farm::v1::Layer* l = r.mutable_result()->mutable_layer();
    l->set_digest(digest->OciString());
    l->set_size(digest->size_bytes);
    l->set_diff_id(claimed_diff_id);
    l->set_media_type(farm::oci::LayerMediaType(farm::oci::Compression::kGzip, false));
    r.mutable_result()->set_worker("w1");  // framing another worker: the scheduler says who
    return r;
  };

  // (a) The true layer, under a lease id that is not its own.
  std::string forged = task->lease_id();
  forged[0] = forged[0] == '0' ? '1' : '0';
  session.EnqueueResult(result_for(forged, diff_id));
  Print(absl::StrCat("(a) sent a result for task ", task->task_id(), " under lease ", forged,
                     " (its lease ", task->lease_id(), " with one byte changed)"));
  std::optional<farm::v1::CancelTask> answer = rogue.CancelFor(forged, absl::Seconds(10));
  Print(answer.has_value()
            ? absl::StrCat("(a) refused: CancelTask for lease ", forged, ": ", answer->reason())
            : "(a) no answer within 10s");

  // (b) Its own lease, claiming a diff_id that is not the layer's.
  std::string lie = farm::common::DigestOf("not this layer").OciString();
  session.EnqueueResult(result_for(task->lease_id(), lie));
  rogue.Release();
  Print(absl::StrCat("(b) sent a result for its own lease ", task->lease_id(), ": layer ",
                     digest->OciString(), " claiming diff_id ", lie, " (its content is ", diff_id,
                     ")"));

  absl::SleepFor(linger);  // whatever the scheduler sends now is printed as it comes
  session.Stop({});
  session.Drain(absl::Now() + absl::Seconds(5));
  farm::worker::agent::Session::Status st = session.GetStatus();
  Print(
      absl::StrCat("done: ", st.sessions, " session(s), ", st.unsent_results, " result(s) unsent"));
  return st.unsent_results == 0 && answer.has_value() ? 0 : 1;
}
