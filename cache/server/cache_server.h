// CacheServer: serves a BlobStore and an ActionCache as REAPI v2 (Capabilities,
// ContentAddressableStorage, ActionCache, google.bytestream.ByteStream) plus farm.v1.CacheAdmin
// (leases, stats, gc) and farm.v1.LayerInfo (the diff_ids of stored layers, from
// BlobStore::GetLayerInfo), all on one port. What `farm-cache` runs; tests and benchmarks start it
// in-process on port 0.
//
//   cache::server::CacheServerOptions o;
//   o.listen = "127.0.0.1:0";
//   o.cas = rocksdb_store;  o.action_cache = rocksdb_ac;  o.admin = rocksdb_store;
//   ASSIGN_OR_RETURN(auto server, cache::server::CacheServer::Start(std::move(o)));
//   std::cout << "listening on " << server->address() << "\n";
//   server->Wait();
//
// Behaviour (reapi.md is the spec): instance names map 1:1 to action-cache scopes; a
// GetActionResult in instance I reads scope I, then each fallback scope; UpdateActionResult
// writes scope I only. The CAS is shared by all instances. The empty blob is always present.
// FindMissingBlobs echoes the requested digests. ActionResults are stored and returned byte for
// byte (raw methods). Streaming calls (ByteStream Read/Write, GetTree) use gRPC's callback API:
// no thread is parked per stream. Interrupted ByteStream uploads are kept for resumption
// (QueryWriteStatus + Write at the committed offset) for `upload_resume_ttl`.
#ifndef FARM_CACHE_SERVER_CACHE_SERVER_H_
#define FARM_CACHE_SERVER_CACHE_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/authorizer.h"
#include "auth/grpc_auth.h"
#include "cache/action_cache.h"
#include "cache/admin.h"
#include "cache/blob_store.h"
#include "common/metrics/metrics.h"

namespace grpc {
class Server;
class ServerBuilder;
class Service;
}  // namespace grpc

namespace farm::cache::server {

struct CacheServerOptions {
  // "HOST:PORT" (port 0 picks a free one; see CacheServer::address()) or "unix:PATH".
  std::string listen = "127.0.0.1:0";
  BlobStore::Ptr cas;                 // required
  ActionCache::Ptr action_cache;      // required
  std::shared_ptr<CacheAdmin> admin;  // for GetStats/Gc; UNIMPLEMENTED without one
  // Scopes a GetActionResult reads after its own instance's scope, in order.
  std::vector<std::string> fallback_scopes;
  // If non-empty, the only instance names served; others are INVALID_ARGUMENT.
  std::vector<std::string> instance_names;
  // Advertised in GetCapabilities and enforced on batch calls (gRPC's default 4 MiB message
  // limit on the client, minus room for the envelope).
  int64_t max_batch_total_size = (4 << 20) - (64 << 10);
  // Lease TTLs above this are shortened.
  absl::Duration max_lease_ttl = absl::Hours(24);
  // How long an interrupted upload stays resumable.
  absl::Duration upload_resume_ttl = absl::Minutes(10);
  // Upper bound on the data in one ByteStream ReadResponse.
  int64_t max_read_chunk = 1 << 20;
  // Bytes one client's streaming uploads may claim at once (each reserves its blob's size in
  // the store when it starts); beyond, RESOURCE_EXHAUSTED. 0 = unlimited.
  int64_t max_upload_claims_per_client = int64_t{16} << 30;
  // Who may call what: TLS, tokens, worker certificates and CacheAuthRules() (auth/). Unset:
  // ServerAuth::AllowAll() (plaintext, loopback only, everyone trusted), for tests and
  // in-process servers.
  std::shared_ptr<const auth::ServerAuth> auth;
  // Called with the builder before the server starts: more services (health), interceptors.
  std::function<void(grpc::ServerBuilder&)> configure;
  // If set, GetActionResult lookups are counted in it as
  // farm_cache_action_cache_requests_total{scope, result="hit"|"miss"} (scope: the instance
  // name asked for; at most kMaxScopeSeries series, the rest in the overflow series). Must
  // outlive the server.
  common::metrics::Registry* metrics = nullptr;
};

// Series of farm_cache_action_cache_requests_total kept (scopes x {hit, miss}).
inline constexpr int kMaxScopeSeries = 128;

// farm-cache's authorization table: who may call each method, on which scope (auth/README.md).
auth::Authorizer::Ptr CacheAuthRules();

class CacheServer {
 public:
  // Binds and starts serving. FAILED_PRECONDITION with a one-line reason if the address is in
  // use or cannot be bound; INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<CacheServer>> Start(CacheServerOptions options);
  ~CacheServer();  // Shutdown(0) if still running

  // The bound address, "HOST:PORT" with the real port (or the unix: name).
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  // Stops accepting calls and waits up to `grace` for calls in flight, then cancels them.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  // Blocks until Shutdown.
  void Wait();
  ServerCounters counters() const;
  // The gRPC server (for grpc_health::HealthPublisher); valid until the CacheServer is destroyed.
  grpc::Server* grpc_server() const { return server_.get(); }

  struct State;  // internal

 private:
  CacheServer() = default;
  std::unique_ptr<State> state_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace farm::cache::server

#endif  // FARM_CACHE_SERVER_CACHE_SERVER_H_
