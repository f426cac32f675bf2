// Reaching farm-worker's peers (farm-scheduler's WorkerHub, farm-cache): checking an address,
// making a channel, and waiting for it to connect, so that the worker's own backoff (not
// gRPC's) decides when to try again.
//
//   ASSIGN_OR_RETURN(std::string target, ParsePeerAddress("--scheduler", flag_value));
//   std::shared_ptr<grpc::Channel> channel = NewChannel(target, keepalive);
//   RETURN_IF_ERROR(WaitConnected(channel.get(), absl::Seconds(10), [&] { return stopping; }));
#ifndef FARM_WORKER_AGENT_CONNECT_H_
#define FARM_WORKER_AGENT_CONNECT_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class Channel;
class ChannelCredentials;
class ChannelInterface;
}  // namespace grpc

namespace farm::worker::agent {

// Checks a peer address: "HOST:PORT", "[V6]:PORT", "grpc://HOST:PORT" or "unix:PATH". Returns
// the gRPC target; INVALID_ARGUMENT naming `what` (e.g. "--scheduler") otherwise.
absl::StatusOr<std::string> ParsePeerAddress(const std::string& what, const std::string& address);

// HTTP/2 keepalive for a long-lived stream (see Agent::Options::keepalive_time).
struct Keepalive {
  absl::Duration time;
  absl::Duration timeout;
};

// A channel of its own (no subchannel shared with earlier attempts, whose gRPC-internal
// backoff could delay this one), accepting 64 MiB messages (tasks carry inline files), with
// keepalive if given. `credentials`: TLS and the worker certificate (auth::ClientCredentials);
// null = plaintext.
std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& target, const std::optional<Keepalive>& keepalive,
    std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

// OK once `channel` is READY; UNAVAILABLE when a connection attempt failed or none succeeded
// within `timeout`; CANCELLED as soon as `stopping` returns true (polled every 100 ms).
absl::Status WaitConnected(grpc::ChannelInterface* channel, absl::Duration timeout,
                           const std::function<bool()>& stopping);

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_CONNECT_H_
