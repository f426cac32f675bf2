#include "worker/agent/connect.h"

#include <grpcpp/channel.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "worker/agent/log_line.h"

namespace farm::worker::agent {

absl::StatusOr<std::string> ParsePeerAddress(const std::string& what, const std::string& address) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " \"", address, "\": ", why, " (want HOST:PORT)"));
  };
  std::string a = address;
  if (absl::StartsWith(a, "grpcs://") || absl::StartsWith(a, "https://")) {
    return bad("TLS is not supported yet");
  }
  if (absl::StartsWith(a, "grpc://")) a = a.substr(7);
  if (absl::StartsWith(a, "unix:")) {
    if (a.size() == 5) return bad("empty socket path");
    return a;
  }
  if (a.empty()) return bad("empty address");
  size_t colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("no port");
  std::string host = a.substr(0, colon);
  if (host.front() == '[' ? host.back() != ']' : host.find(':') != std::string::npos) {
    return bad("an IPv6 address must be in brackets");
  }
  int port = 0;
  if (!absl::SimpleAtoi(a.substr(colon + 1), &port) || port < 1 || port > 65535) {
    return bad("the port must be a number from 1 to 65535");
  }
  return a;
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target,
                                          const std::optional<Keepalive>& keepalive,
                                          std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  // Our own backoff decides when to retry: a channel of its own per attempt (no subchannel
  // shared with earlier attempts, whose gRPC-internal backoff could delay this one).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetMaxReceiveMessageSize(64 << 20);  // tasks carry inline files
  if (keepalive.has_value()) {
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                static_cast<int>(absl::ToInt64Milliseconds(keepalive->time)));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                static_cast<int>(absl::ToInt64Milliseconds(keepalive->timeout)));
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  return grpc::CreateCustomChannel(
      target, credentials ? credentials : grpc::InsecureChannelCredentials(), args);
}

absl::Status WaitConnected(grpc::ChannelInterface* channel, absl::Duration timeout,
                           const std::function<bool()>& stopping) {
  absl::Time deadline = absl::Now() + timeout;
  // `tried`: an attempt was made for this call, so TRANSIENT_FAILURE is its outcome. A channel
  // found in TRANSIENT_FAILURE (a long-lived one, in gRPC's own backoff) has not tried yet.
  bool tried = false, first = true;
  while (true) {
    grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
    if (state == GRPC_CHANNEL_READY) return absl::OkStatus();
    if (state == GRPC_CHANNEL_CONNECTING || (first && state == GRPC_CHANNEL_IDLE)) tried = true;
    first = false;
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE && tried) {
      return absl::UnavailableError("connection failed");
    }
    if (state == GRPC_CHANNEL_SHUTDOWN) return absl::UnavailableError("channel shut down");
    if (stopping()) return absl::CancelledError("shutting down");
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat("no connection within ", FormatSeconds(timeout)));
    }
    // A long-lived channel already in TRANSIENT_FAILURE (gRPC's own backoff, at most 5s
    // here) is waited on until it connects or the timeout. Wake every 100ms for Shutdown.
    absl::Time slice = std::min(deadline, absl::Now() + absl::Milliseconds(100));
    channel->WaitForStateChange(state, absl::ToChronoTime(slice));
  }
}

}  // namespace farm::worker::agent
