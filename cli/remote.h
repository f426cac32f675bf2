// What the farm's client commands (`farm submit`, `farm logs`, `farm cancel`, `farm workers`,
// `farm builds --scheduler`) share: finding and reaching farm-scheduler, and following a
// build's event stream across scheduler restarts and network breaks.
#ifndef FARM_CLI_REMOTE_H_
#define FARM_CLI_REMOTE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/grpc_auth.h"
#include "common/flags.h"
#include "farm/v1/scheduler.grpc.pb.h"

namespace farm::cli {

// The scheduler to talk to: `flag` (--scheduler), else $FARM_SCHEDULER; INVALID_ARGUMENT
// saying how to give one when neither is set.
absl::StatusOr<std::string> SchedulerAddress(const std::string& flag);

// The client security flags every farm command that talks to a farm takes (auth/flags.h):
// --tls-ca, --tls-cert/--tls-key, --tls, --token-file, --insecure; the environment fills the
// rest at connection time (FARM_TLS_CA, FARM_TLS_CERT/FARM_TLS_KEY, FARM_TOKEN,
// FARM_TOKEN_FILE).
void SecurityFlags(common::FlagSet& fs, auth::ClientAuthOptions* security);

struct SchedulerConnection {
  std::string address;
  // What the connection used (flags + environment): the same for farm-cache.
  auth::ClientAuthOptions security;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<farm::v1::Scheduler::Stub> stub;
  // A fresh connection (a channel of its own, with the same credentials): FollowBuild
  // reattaches on one after a broken stream rather than wait on a channel that may sit in
  // gRPC's backoff or in a TLS handshake with the dead server. Null: reuse `channel`.
  std::function<std::shared_ptr<grpc::Channel>()> redial;
};

// Connects to farm-scheduler at `address` ("HOST:PORT", "grpc://HOST:PORT", "grpcs://HOST:PORT"
// for TLS) with `security` (and the environment's), waiting up to `timeout` for the
// connection; UNAVAILABLE names the address when it cannot be reached.
absl::StatusOr<SchedulerConnection> ConnectScheduler(const std::string& address,
                                                     auth::ClientAuthOptions security,
                                                     absl::Duration timeout = absl::Seconds(10));

// Errors after which a build's stream is worth reattaching to (the scheduler restarting, a
// network break), as opposed to answers (NOT_FOUND, INVALID_ARGUMENT, ...).
bool IsTransient(const grpc::Status& s);

struct FollowOptions {
  // How long to keep trying to reattach after the stream broke, without hearing back.
  absl::Duration reconnect_for = absl::Minutes(5);
  // Opens the first stream instead of AttachBuild (farm submit: SubmitBuild). It is retried
  // like AttachBuild while the build id is unknown (SubmitBuild is idempotent by request id).
  std::function<std::unique_ptr<grpc::ClientReader<farm::v1::BuildStreamEvent>>(
      grpc::ClientContext*)>
      open_first;
  // Called when a stream broke and is being reattached (a warning to show).
  std::function<void(const std::string&)> on_reconnect;
  // Set from another thread to stop following (the current stream is canceled).
  std::atomic<bool>* stop = nullptr;
};

// Follows a build: every event after `*last_seq` goes to `on_event` once and in order (the
// seq-0 header of SubmitBuild too); `*build_id` is filled from the stream when empty. Returns
// the build's outcome, or the error that ended the following (NOT_FOUND for an unknown build,
// UNAVAILABLE when the scheduler stayed unreachable for reconnect_for, CANCELLED on stop).
absl::StatusOr<farm::v1::BuildOutcome> FollowBuild(
    SchedulerConnection& conn, std::string* build_id, int64_t* last_seq,
    const std::function<void(const farm::v1::BuildStreamEvent&)>& on_event,
    const FollowOptions& options);

}  // namespace farm::cli

#endif  // FARM_CLI_REMOTE_H_
