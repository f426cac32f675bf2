// GrpcBlobStore: a BlobStore backed by a remote REAPI v2 server (farm-cache, or any REAPI
// cache for the CAS part). The scheduler and remote workers use it to talk to farm-cache.
//
//   cache::client::GrpcBlobStore::Options o;
//   o.instance_name = "main";
//   ASSIGN_OR_RETURN(auto cas, cache::client::GrpcBlobStore::Create("127.0.0.1:9092", o));
//   ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas->FindMissing(digests));
//
// How each call maps onto the wire:
//   FindMissing   FindMissingBlobs, split into requests of at most 10000 digests.
//   BatchWrite / BatchRead   BatchUpdateBlobs / BatchReadBlobs, split so each request stays
//                 under max_batch_bytes; blobs larger than that go through ByteStream.
//   OpenRead / Read   ByteStream Read, streamed (never whole in memory); an UNAVAILABLE in the
//                 middle of a read resumes at the offset already delivered.
//   BeginWrite    blobs up to max_batch_bytes are buffered and sent with BatchUpdateBlobs at
//                 Commit; larger ones stream over ByteStream Write as they are appended. If the
//                 stream breaks with UNAVAILABLE, the writer asks QueryWriteStatus and resumes
//                 from the server's committed offset, re-sending from the last `resume_window`
//                 bytes it keeps; if the server kept less than that, Commit fails UNAVAILABLE
//                 (the caller must write again from the start). A server that already has the
//                 blob may end the stream early: the write then succeeds.
//   AcquireLease / ReleaseLease   farm.v1.CacheAdmin (a farm-cache extension).
//   GetLayerInfo  farm.v1.LayerInfo.GetDiffIds (a farm-cache extension: no blob is read); a
//                 server without it (UNIMPLEMENTED) gets the default: each blob read back.
// Every unary RPC (and the opening of a stream) is retried with backoff on UNAVAILABLE only.
// Thread-safe (writers and readers are single-threaded objects).
#ifndef FARM_CACHE_CLIENT_GRPC_BLOB_STORE_H_
#define FARM_CACHE_CLIENT_GRPC_BLOB_STORE_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "auth/grpc_auth.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cache/blob_store.h"
#include "common/backoff.h"
#include "farm/v1/cache.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"

namespace farm::cache::client {

// A channel to a cache server: "HOST:PORT", "grpc://HOST:PORT", "grpcs://HOST:PORT" (TLS, with
// `security.tls` or the system's CAs) or "unix:PATH", with `security`'s TLS and bearer token
// (auth::ClientCredentials: errors for unreadable files, or plaintext beyond loopback without
// `security.insecure`). Raises the receive limit to 64 MiB.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewCacheChannel(
    const std::string& target, const auth::ClientAuthOptions& security = {});

class GrpcBlobStore final : public BlobStore {
 public:
  struct Options {
    std::string instance_name;
    // Blobs up to this size use the batch RPCs; batches are split to stay under it.
    int64_t max_batch_bytes = (4 << 20) - (64 << 10);
    // Data per ByteStream WriteRequest.
    int64_t write_chunk_size = 1 << 20;
    // Bytes a streaming writer keeps to re-send after a broken stream.
    int64_t resume_window = 16 << 20;
    common::RetryOptions retry;
    absl::Duration rpc_timeout = absl::Seconds(60);     // each unary call
    absl::Duration stream_timeout = absl::Minutes(30);  // each ByteStream call
    auth::ClientAuthOptions security;                   // Create(): TLS and token
  };

  static absl::StatusOr<std::unique_ptr<GrpcBlobStore>> Create(const std::string& target,
                                                               const Options& options);
  GrpcBlobStore(std::shared_ptr<grpc::ChannelInterface> channel, const Options& options);
  // For tests: stubs (e.g. fakes that fail) instead of a channel. `admin` may be null.
  GrpcBlobStore(
      std::unique_ptr<build::bazel::remote::execution::v2::ContentAddressableStorage::StubInterface>
          cas,
      std::unique_ptr<google::bytestream::ByteStream::StubInterface> bytestream,
      std::unique_ptr<farm::v1::CacheAdmin::StubInterface> admin, const Options& options);
  // `layer_info` may be null: GetLayerInfo then reads the blobs back.
  GrpcBlobStore(
      std::unique_ptr<build::bazel::remote::execution::v2::ContentAddressableStorage::StubInterface>
          cas,
      std::unique_ptr<google::bytestream::ByteStream::StubInterface> bytestream,
      std::unique_ptr<farm::v1::CacheAdmin::StubInterface> admin,
      std::unique_ptr<farm::v1::LayerInfo::StubInterface> layer_info, const Options& options);
  ~GrpcBlobStore() override;

  absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests) override;
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest, int64_t offset,
                                                       int64_t limit) override;
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& digest) override;
  absl::StatusOr<std::vector<absl::Status>> BatchWrite(absl::Span<const BlobData> blobs) override;
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BatchRead(
      absl::Span<const Digest> digests) override;
  absl::StatusOr<Lease> AcquireLease(absl::Span<const Digest> digests, absl::Duration ttl) override;
  absl::Status ReleaseLease(const std::string& lease_id) override;
  absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> GetLayerInfo(
      absl::Span<const Digest> digests) override;

  const Options& options() const { return options_; }

  // Internal to the readers and writers.
  struct Stubs;
  Stubs* stubs() { return stubs_.get(); }

 private:
  std::unique_ptr<Stubs> stubs_;
  Options options_;
};

}  // namespace farm::cache::client

#endif  // FARM_CACHE_CLIENT_GRPC_BLOB_STORE_H_
