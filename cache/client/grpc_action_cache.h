// GrpcActionCache: an ActionCache backed by a remote REAPI v2 ActionCache service (farm-cache
// or any REAPI cache). The instance name of each call is the scope; Get with several scopes
// asks each in order (a NOT_FOUND moves on to the next). Results travel as raw bytes both
// ways, so what Get returns is exactly what the server stored.
//
//   ASSIGN_OR_RETURN(auto ac, cache::client::GrpcActionCache::Create("127.0.0.1:9092", {}));
//   RETURN_IF_ERROR(ac->Update("pr/123", key, result_bytes));
//   absl::StatusOr<std::string> hit = ac->Get({"pr/123", "main"}, key);
//
// Calls are retried with backoff on UNAVAILABLE only. Thread-safe.
#ifndef FARM_CACHE_CLIENT_GRPC_ACTION_CACHE_H_
#define FARM_CACHE_CLIENT_GRPC_ACTION_CACHE_H_

#include <grpcpp/generic/generic_stub.h>

#include <memory>
#include <string>

#include "auth/grpc_auth.h"
#include "cache/action_cache.h"
#include "common/backoff.h"

namespace farm::cache::client {

class GrpcActionCache final : public ActionCache {
 public:
  struct Options {
    common::RetryOptions retry;
    absl::Duration rpc_timeout = absl::Seconds(60);
    auth::ClientAuthOptions security;  // Create(): TLS and token
  };
  static absl::StatusOr<std::unique_ptr<GrpcActionCache>> Create(const std::string& target,
                                                                 const Options& options);
  GrpcActionCache(std::shared_ptr<grpc::ChannelInterface> channel, const Options& options);

  absl::StatusOr<std::string> Get(absl::Span<const std::string> scopes,
                                  const common::Digest& key) override;
  absl::Status Update(const std::string& scope, const common::Digest& key,
                      absl::string_view action_result) override;

 private:
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& request);
  grpc::GenericStub stub_;
  Options options_;
};

}  // namespace farm::cache::client

#endif  // FARM_CACHE_CLIENT_GRPC_ACTION_CACHE_H_
