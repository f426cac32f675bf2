// GrpcCacheAdmin: CacheAdmin (stats, gc) of a farm-cache server, over farm.v1.CacheAdmin. What
// `farm cache stats|gc --cache HOST:PORT` uses. Leases are on GrpcBlobStore.
//
//   ASSIGN_OR_RETURN(auto admin, cache::client::GrpcCacheAdmin::Create("127.0.0.1:9092"));
//   ASSIGN_OR_RETURN(cache::CacheStats s, admin->Stats());
#ifndef FARM_CACHE_CLIENT_GRPC_CACHE_ADMIN_H_
#define FARM_CACHE_CLIENT_GRPC_CACHE_ADMIN_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "auth/grpc_auth.h"
#include "cache/admin.h"
#include "common/backoff.h"
#include "farm/v1/cache.grpc.pb.h"

namespace farm::cache::client {

class GrpcCacheAdmin final : public CacheAdmin {
 public:
  struct Options {
    common::RetryOptions retry;
    absl::Duration rpc_timeout = absl::Seconds(60);
    absl::Duration gc_timeout = absl::Minutes(30);  // a gc may evict and compact a lot
    auth::ClientAuthOptions security;               // Create(): TLS and token (admin role)
  };
  static absl::StatusOr<std::unique_ptr<GrpcCacheAdmin>> Create(const std::string& target,
                                                                const Options& options);
  static absl::StatusOr<std::unique_ptr<GrpcCacheAdmin>> Create(const std::string& target);
  GrpcCacheAdmin(std::unique_ptr<farm::v1::CacheAdmin::StubInterface> stub, std::string target,
                 const Options& options);

  absl::StatusOr<CacheStats> Stats() override;
  absl::StatusOr<GcResult> Gc(const GcOptions& options) override;

 private:
  std::unique_ptr<farm::v1::CacheAdmin::StubInterface> stub_;
  std::string target_;
  Options options_;
};

// Conversions between the proto and the struct (shared with the server).
CacheStats FromProto(const farm::v1::CacheStats& proto);

}  // namespace farm::cache::client

#endif  // FARM_CACHE_CLIENT_GRPC_CACHE_ADMIN_H_
