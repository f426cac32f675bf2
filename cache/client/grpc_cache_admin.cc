#include "cache/client/grpc_cache_admin.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "cache/client/grpc_blob_store.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::cache::client {

CacheStats FromProto(const farm::v1::CacheStats& p) {
  CacheStats s;
  s.location = p.location();
  s.max_size = p.max_size();
  s.disk_bytes = p.disk_bytes();
  s.blob_count = p.blob_count();
  s.blob_bytes = p.blob_bytes();
  s.pinned_blobs = p.pinned_blobs();
  s.pinned_bytes = p.pinned_bytes();
  s.leases = p.leases();
  s.reserved_bytes = p.reserved_bytes();
  s.evicted_blobs = p.evicted_blobs();
  s.evicted_bytes = p.evicted_bytes();
  s.ac_entries = p.ac_entries();
  for (const auto& sc : p.scopes()) s.scopes.push_back({sc.scope(), sc.entries(), sc.bytes()});
  const auto& c = p.server();
  s.server.ac_hits = c.ac_hits();
  s.server.ac_misses = c.ac_misses();
  s.server.ac_updates = c.ac_updates();
  s.server.find_missing_digests = c.find_missing_digests();
  s.server.find_missing_missing = c.find_missing_missing();
  s.server.bytes_read = c.bytes_read();
  s.server.bytes_written = c.bytes_written();
  return s;
}

absl::StatusOr<std::unique_ptr<GrpcCacheAdmin>> GrpcCacheAdmin::Create(const std::string& target,
                                                                       const Options& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   NewCacheChannel(target, options.security));
  return std::make_unique<GrpcCacheAdmin>(farm::v1::CacheAdmin::NewStub(channel), target, options);
}

absl::StatusOr<std::unique_ptr<GrpcCacheAdmin>> GrpcCacheAdmin::Create(const std::string& target) {
  return Create(target, Options());
}

GrpcCacheAdmin::GrpcCacheAdmin(std::unique_ptr<farm::v1::CacheAdmin::StubInterface> stub,
                               std::string target, const Options& options)
    : stub_(std::move(stub)), target_(std::move(target)), options_(options) {}

absl::StatusOr<CacheStats> GrpcCacheAdmin::Stats() {
  farm::v1::CacheStats resp;
  RETURN_IF_ERROR(common::Retry(options_.retry, [&]() -> absl::Status {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.rpc_timeout));
    resp.Clear();
    return common::Annotate(
        common::FromGrpcStatus(stub_->GetStats(&ctx, farm::v1::GetStatsRequest(), &resp)),
        absl::StrCat("cache ", target_));
  }));
  return FromProto(resp);
}

absl::StatusOr<GcResult> GrpcCacheAdmin::Gc(const GcOptions& options) {
  farm::v1::GcRequest req;
  req.set_max_size(options.max_size);
  farm::v1::GcResponse resp;
  RETURN_IF_ERROR(common::Retry(options_.retry, [&]() -> absl::Status {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.gc_timeout));
    resp.Clear();
    return common::Annotate(common::FromGrpcStatus(stub_->Gc(&ctx, req, &resp)),
                            absl::StrCat("cache ", target_));
  }));
  GcResult r;
  r.evicted_blobs = resp.evicted_blobs();
  r.evicted_bytes = resp.evicted_bytes();
  r.evicted_ac_entries = resp.evicted_ac_entries();
  r.after = FromProto(resp.after());
  return r;
}

}  // namespace farm::cache::client
