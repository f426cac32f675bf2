#include "cli/remote.h"

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "auth/flags.h"
#include "common/backoff.h"
#include "common/grpc_status.h"

namespace farm::cli {

absl::StatusOr<std::string> SchedulerAddress(const std::string& flag) {
  std::string a = flag;
  if (a.empty()) {
    const char* env = getenv("FARM_SCHEDULER");
    if (env != nullptr) a = env;
  }
  if (a.empty()) {
    return absl::InvalidArgumentError(
        "no farm-scheduler given: pass --scheduler HOST:PORT or set FARM_SCHEDULER");
  }
  return a;
}

void SecurityFlags(common::FlagSet& fs, auth::ClientAuthOptions* security) {
  auth::RegisterClientFlags(&fs, "", security);
}

absl::StatusOr<SchedulerConnection> ConnectScheduler(const std::string& address,
                                                     auth::ClientAuthOptions security,
                                                     absl::Duration timeout) {
  std::string target = address;
  if (absl::StartsWith(target, "grpc://")) target = target.substr(7);
  if (absl::StartsWith(target, "grpcs://")) {
    target = target.substr(8);
    security.tls.use_tls = true;
  }
  if (absl::StartsWith(target, "https://") || absl::StartsWith(target, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheduler address \"", address, "\": want HOST:PORT or grpcs://HOST:PORT"));
  }
  if (target.empty() || target.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("scheduler address \"", address, "\": want HOST:PORT"));
  }
  if (absl::Status s = auth::ApplyClientEnvironment(&security); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      auth::ClientCredentials(target, security);
  if (!creds.ok()) {
    return absl::Status(creds.status().code(), absl::StrCat("farm-scheduler at ", address, ": ",
                                                            creds.status().message()));
  }
  SchedulerConnection c;
  c.address = address;
  c.security = security;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // Reconnect quickly after a scheduler restart (the default backoff grows to 120 s).
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // redial: a connection of its own
  c.channel = grpc::CreateCustomChannel(target, *creds, args);
  c.redial = [target, creds = *creds, args] {
    return grpc::CreateCustomChannel(target, creds, args);
  };
  if (!c.channel->WaitForConnected(absl::ToChronoTime(absl::Now() + timeout))) {
    return absl::UnavailableError(absl::StrCat("cannot reach farm-scheduler at ", address,
                                               " (tried for ", absl::FormatDuration(timeout),
                                               "): is it running, and is the address right?"));
  }
  c.stub = farm::v1::Scheduler::NewStub(c.channel);
  return c;
}

bool IsTransient(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::INTERNAL:  // a stream reset by a dying server
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::CANCELLED:  // canceled by the server's shutdown, not by us
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return true;
    default:
      return false;
  }
}

absl::StatusOr<farm::v1::BuildOutcome> FollowBuild(
    SchedulerConnection& conn, std::string* build_id, int64_t* last_seq,
    const std::function<void(const farm::v1::BuildStreamEvent&)>& on_event,
    const FollowOptions& options) {
  absl::Time last_heard = absl::Now();
  // Reattach quickly (the scheduler restarts in seconds), never in lockstep with other clients.
  common::Backoff backoff({absl::Milliseconds(100), absl::Seconds(2), 2.0, 0.1});
  grpc::Status last_error;
  bool first = true;
  bool warned = false;                                       // about the current outage
  std::unique_ptr<farm::v1::Scheduler::Stub> reattach_stub;  // after a break: a fresh channel
  auto stopped = [&] { return options.stop != nullptr && options.stop->load(); };
  while (true) {
    if (stopped()) return absl::CancelledError("stopped following the build");
    grpc::ClientContext ctx;
    // Canceling the context is how `stop` interrupts a blocked Read.
    absl::Mutex mu;
    bool reading = true;
    std::thread watcher;
    if (options.stop != nullptr) {
      watcher = std::thread([&] {
        absl::MutexLock l(&mu);
        while (reading && !options.stop->load()) {
          mu.AwaitWithTimeout(absl::Condition(
                                  +[](bool* r) { return !*r; }, &reading),
                              absl::Milliseconds(50));
        }
        if (reading) ctx.TryCancel();
      });
    }
    std::unique_ptr<grpc::ClientReader<farm::v1::BuildStreamEvent>> reader;
    if (build_id->empty() && options.open_first) {
      reader = options.open_first(&ctx);
    } else if (!build_id->empty()) {
      farm::v1::AttachBuildRequest req;
      req.set_build_id(*build_id);
      req.set_after_seq(*last_seq);
      reader = (reattach_stub ? reattach_stub : conn.stub)->AttachBuild(&ctx, req);
    } else {
      return absl::InvalidArgumentError("no build to follow");
    }
    std::optional<farm::v1::BuildOutcome> outcome;
    farm::v1::BuildStreamEvent e;
    while (reader->Read(&e)) {
      last_heard = absl::Now();
      backoff.Reset();
      warned = false;
      if (build_id->empty()) *build_id = e.build_id();
      if (e.seq() != 0 && e.seq() <= *last_seq) continue;  // already seen
      if (e.seq() != 0) *last_seq = e.seq();
      if (e.seq() != 0 || first) on_event(e);
      if (e.has_event() && e.event().has_outcome()) outcome = e.event().outcome();
    }
    first = false;
    grpc::Status st = reader->Finish();
    {
      absl::MutexLock l(&mu);
      reading = false;
    }
    if (watcher.joinable()) watcher.join();
    if (outcome) return *outcome;
    if (stopped()) return absl::CancelledError("stopped following the build");
    if (!st.ok() && !IsTransient(st)) {
      absl::Status s = common::FromGrpcStatus(st);
      if (absl::IsNotFound(s) && !build_id->empty()) {
        return absl::NotFoundError(
            absl::StrCat("farm-scheduler at ", conn.address, " does not know build ", *build_id));
      }
      return s;
    }
    // The stream broke (or ended without an outcome): reattach after a pause.
    last_error = st;
    if (absl::Now() - last_heard > options.reconnect_for) {
      return absl::UnavailableError(absl::StrCat(
          "lost farm-scheduler at ", conn.address, " for ",
          absl::FormatDuration(options.reconnect_for), " (last error: ", st.error_message(),
          "); the build may still be running: farm logs ", *build_id));
    }
    if (options.on_reconnect && !warned) {
      warned = true;
      options.on_reconnect(absl::StrCat("lost the build's event stream (",
                                        st.ok() ? "ended early" : st.error_message(),
                                        "); reattaching to ", conn.address));
    }
    absl::SleepFor(backoff.Next());
    if (conn.redial) reattach_stub = farm::v1::Scheduler::NewStub(conn.redial());
  }
}

}  // namespace farm::cli
