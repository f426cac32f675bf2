#include "cache/server/cache_server.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "auth/grpc_auth.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cache/action_result_refs.h"
#include "cache/server/resource_name.h"
#include "common/grpc_status.h"
#include "common/listen.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/cache.grpc.pb.h"
#include "google/bytestream/bytestream.grpc.pb.h"

namespace farm::cache::server {

namespace reapi = build::bazel::remote::execution::v2;
namespace bs = google::bytestream;

// Shared by the services of one server.
struct CacheServer::State {
  CacheServerOptions options;
  absl::flat_hash_set<std::string> allowed;

  std::atomic<int64_t> ac_hits{0}, ac_misses{0}, ac_updates{0};
  // farm_cache_action_cache_requests_total; null without CacheServerOptions::metrics.
  common::metrics::Family<common::metrics::Counter>* ac_requests = nullptr;
  std::atomic<int64_t> find_missing_digests{0}, find_missing_missing{0};
  std::atomic<int64_t> bytes_read{0}, bytes_written{0};

  // Uploads: those streaming now (for QueryWriteStatus) and interrupted ones kept for resuming.
  struct Parked {
    std::unique_ptr<BlobWriter> writer;
    absl::Time expiry;
  };
  absl::Mutex uploads_mu;
  absl::flat_hash_map<std::string, std::shared_ptr<std::atomic<int64_t>>> active
      ABSL_GUARDED_BY(uploads_mu);
  absl::flat_hash_map<std::string, Parked> parked ABSL_GUARDED_BY(uploads_mu);
  // Bytes claimed by each client's streaming uploads (identity, or peer address when
  // anonymous): BeginWrite reserves a blob's claimed size at once, so one client could
  // otherwise evict everyone's blobs with claims it never sends.
  absl::flat_hash_map<std::string, int64_t> claimed ABSL_GUARDED_BY(uploads_mu);

  absl::Status CheckInstance(absl::string_view instance) const {
    RETURN_IF_ERROR(ValidateInstanceName(instance));
    if (!allowed.empty() && !allowed.contains(instance)) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown instance name \"", instance, "\" (this server serves: ",
                       absl::StrJoin(options.instance_names, ", ",
                                     [](std::string* out, const std::string& s) {
                                       absl::StrAppend(out, s.empty() ? "\"\"" : s);
                                     }),
                       ")"));
    }
    return absl::OkStatus();
  }

  // Every handler's first check: the instance name is valid and served, and the caller may
  // call `method` on it (auth::ServerAuth: the token's scopes, a worker certificate, roles).
  absl::StatusOr<auth::Identity> Admit(const grpc::ServerContextBase& ctx, absl::string_view method,
                                       absl::string_view instance) const {
    RETURN_IF_ERROR(CheckInstance(instance));
    return options.auth->Authorize(ctx, method, auth::RequestInfo::Scope(std::string(instance)));
  }

  // Who an upload's claim counts against: the caller's identity, or (anonymous) its address.
  static std::string ClientOf(const grpc::ServerContextBase& ctx, const auth::Identity& who) {
    if (!who.anonymous()) return who.DebugString();
    std::string peer = ctx.peer();
    size_t colon = peer.rfind(':');
    return colon == std::string::npos ? peer : peer.substr(0, colon);
  }

  // The scopes a GetActionResult reads: the instance's, then each fallback scope the caller
  // may read (a token for pr/* with read access to main reads main; one without does not).
  std::vector<std::string> ReadScopes(const std::string& instance,
                                      const auth::Identity& who) const {
    std::vector<std::string> scopes = {instance};
    for (const std::string& s : options.fallback_scopes) {
      if (s == instance) continue;
      if (!options.auth->allows_all() && !who.CanRead(s)) continue;
      scopes.push_back(s);
    }
    return scopes;
  }

  // Drops expired parked uploads (their writers release their reservations and temp files).
  void ExpireParkedLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(uploads_mu) {
    for (auto it = parked.begin(); it != parked.end();) {
      if (it->second.expiry <= now) {
        parked.erase(it++);
      } else {
        ++it;
      }
    }
  }
};

namespace {

constexpr size_t kMaxParkedUploads = 256;

// The services' full method names, as ServerAuth and CacheAuthRules name them.
constexpr absl::string_view kCapabilities = "/build.bazel.remote.execution.v2.Capabilities/";
constexpr absl::string_view kCas = "/build.bazel.remote.execution.v2.ContentAddressableStorage/";
constexpr absl::string_view kAc = "/build.bazel.remote.execution.v2.ActionCache/";
constexpr absl::string_view kByteStream = "/google.bytestream.ByteStream/";
constexpr absl::string_view kAdmin = "/farm.v1.CacheAdmin/";
constexpr absl::string_view kLayerInfo = "/farm.v1.LayerInfo/";
constexpr int kMaxDigestsPerGetDiffIds = 1000;
constexpr absl::string_view kHealth = "/grpc.health.v1.Health/";

std::string Method(absl::string_view service, absl::string_view name) {
  return absl::StrCat(service, name);
}

absl::Status CheckDigestFunction(int value) {
  if (value == reapi::DigestFunction::UNKNOWN || value == reapi::DigestFunction::SHA256) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("digest function ",
                                                 reapi::DigestFunction::Value_Name(value),
                                                 " is not supported (SHA256 only)"));
}

void ToRpcStatus(const absl::Status& s, google::rpc::Status* out) {
  out->set_code(static_cast<int>(s.code()));
  out->set_message(std::string(s.message()));
}

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(common::ToGrpcStatus(s));
  return r;
}

// Finishes a unary call with the status of `expr` if it is an error.
#define RETURN_REACTOR_IF_ERROR(ctx, expr)                          \
  do {                                                              \
    ::absl::Status reactor_status_ = (expr);                        \
    if (!reactor_status_.ok()) return Done((ctx), reactor_status_); \
  } while (0)

bool ParseByteBuffer(const grpc::ByteBuffer& buffer, google::protobuf::Message* msg) {
  grpc::ByteBuffer copy(buffer);  // shares the slices
  grpc::ProtoBufferReader reader(&copy);
  return msg->ParseFromZeroCopyStream(&reader);
}

grpc::ByteBuffer ByteBufferOf(std::string bytes) {
  grpc::Slice slice(std::move(bytes));
  return grpc::ByteBuffer(&slice, 1);
}

// -------------------------------------------------------------------------------------------
// Capabilities.

class CapabilitiesService final : public reapi::Capabilities::CallbackService {
 public:
  explicit CapabilitiesService(CacheServer::State* st) : st_(st) {}
  grpc::ServerUnaryReactor* GetCapabilities(grpc::CallbackServerContext* ctx,
                                            const reapi::GetCapabilitiesRequest* req,
                                            reapi::ServerCapabilities* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx,
        st_->Admit(*ctx, Method(kCapabilities, "GetCapabilities"), req->instance_name()).status());
    auto* cache = resp->mutable_cache_capabilities();
    cache->add_digest_functions(reapi::DigestFunction::SHA256);
    cache->mutable_action_cache_update_capabilities()->set_update_enabled(true);
    cache->set_max_batch_total_size_bytes(st_->options.max_batch_total_size);
    cache->set_symlink_absolute_path_strategy(reapi::SymlinkAbsolutePathStrategy::ALLOWED);
    resp->mutable_low_api_version()->set_major(2);
    resp->mutable_high_api_version()->set_major(2);
    resp->mutable_high_api_version()->set_minor(3);
    return Done(ctx, absl::OkStatus());
  }

 private:
  CacheServer::State* st_;
};

// -------------------------------------------------------------------------------------------
// ContentAddressableStorage.

// Streams GetTree pages: breadth-first from the root, each directory once; missing
// directories below the root are omitted (as REAPI allows). The page token is the number of
// directories already returned.
class GetTreeReactor final : public grpc::ServerWriteReactor<reapi::GetTreeResponse> {
 public:
  GetTreeReactor(CacheServer::State* st, grpc::CallbackServerContext* ctx,
                 const reapi::GetTreeRequest& req)
      : st_(st), ctx_(ctx) {
    absl::Status s = Init(req);
    if (!s.ok()) {
      Finish(common::ToGrpcStatus(s));
      return;
    }
    NextPage();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    if (last_) {
      Finish(grpc::Status::OK);
      return;
    }
    NextPage();
  }
  void OnDone() override { delete this; }

 private:
  absl::Status Init(const reapi::GetTreeRequest& req) {
    RETURN_IF_ERROR(st_->Admit(*ctx_, Method(kCas, "GetTree"), req.instance_name()).status());
    RETURN_IF_ERROR(CheckDigestFunction(req.digest_function()));
    ASSIGN_OR_RETURN(common::Digest root, FromProto(req.root_digest(), "root_digest"));
    if (req.page_size() < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative page_size ", req.page_size()));
    }
    page_size_ = req.page_size() == 0 ? 1000 : std::min(req.page_size(), 10000);
    if (!req.page_token().empty() && (!absl::SimpleAtoi(req.page_token(), &skip_) || skip_ < 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid page_token \"", req.page_token(), "\""));
    }
    ASSIGN_OR_RETURN(std::vector<common::Digest> missing, st_->options.cas->FindMissing({root}));
    if (!missing.empty()) {
      return absl::NotFoundError(absl::StrCat("root directory ", root.ToString(), " not found"));
    }
    queue_.push_back(root);
    seen_.insert(root);
    return absl::OkStatus();
  }

  void NextPage() {
    response_.Clear();
    int64_t bytes = 0;
    while (!queue_.empty() && response_.directories_size() < page_size_ && bytes < (2 << 20)) {
      common::Digest d = queue_.front();
      queue_.pop_front();
      absl::StatusOr<std::string> data = st_->options.cas->ReadBlob(d, 64 << 20);
      if (absl::IsNotFound(data.status())) continue;
      if (!data.ok()) {
        Finish(common::ToGrpcStatus(data.status()));
        return;
      }
      reapi::Directory dir;
      if (!dir.ParseFromString(*data)) {
        Finish(common::ToGrpcStatus(
            absl::DataLossError(absl::StrCat("blob ", d.ToString(), " is not a Directory"))));
        return;
      }
      for (const reapi::DirectoryNode& child : dir.directories()) {
        absl::StatusOr<common::Digest> cd = FromProto(child.digest(), child.name());
        if (cd.ok() && seen_.insert(*cd).second) queue_.push_back(*cd);
      }
      if (index_++ < skip_) continue;
      bytes += static_cast<int64_t>(data->size());
      *response_.add_directories() = std::move(dir);
    }
    last_ = queue_.empty();
    if (!last_) response_.set_next_page_token(absl::StrCat(index_));
    if (response_.directories_size() == 0 && last_) {
      Finish(grpc::Status::OK);
      return;
    }
    StartWrite(&response_);
  }

  CacheServer::State* st_;
  grpc::CallbackServerContext* ctx_;
  int page_size_ = 1000;
  int64_t skip_ = 0;
  int64_t index_ = 0;
  bool last_ = false;
  std::deque<common::Digest> queue_;
  absl::flat_hash_set<common::Digest> seen_;
  reapi::GetTreeResponse response_;
};

class CasService final : public reapi::ContentAddressableStorage::CallbackService {
 public:
  explicit CasService(CacheServer::State* st) : st_(st) {}

  grpc::ServerUnaryReactor* FindMissingBlobs(grpc::CallbackServerContext* ctx,
                                             const reapi::FindMissingBlobsRequest* req,
                                             reapi::FindMissingBlobsResponse* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kCas, "FindMissingBlobs"), req->instance_name()).status());
    RETURN_REACTOR_IF_ERROR(ctx, CheckDigestFunction(req->digest_function()));
    std::vector<common::Digest> digests;
    digests.reserve(req->blob_digests_size());
    for (const reapi::Digest& d : req->blob_digests()) {
      absl::StatusOr<common::Digest> digest = FromProto(d, "blob_digests");
      RETURN_REACTOR_IF_ERROR(ctx, digest.status());
      digests.push_back(*std::move(digest));
    }
    absl::StatusOr<std::vector<common::Digest>> missing = st_->options.cas->FindMissing(digests);
    RETURN_REACTOR_IF_ERROR(ctx, missing.status());
    st_->find_missing_digests += static_cast<int64_t>(digests.size());
    st_->find_missing_missing += static_cast<int64_t>(missing->size());
    for (const common::Digest& d : *missing) ToProto(d, resp->add_missing_blob_digests());
    return Done(ctx, absl::OkStatus());
  }

  grpc::ServerUnaryReactor* BatchUpdateBlobs(grpc::CallbackServerContext* ctx,
                                             const reapi::BatchUpdateBlobsRequest* req,
                                             reapi::BatchUpdateBlobsResponse* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kCas, "BatchUpdateBlobs"), req->instance_name()).status());
    RETURN_REACTOR_IF_ERROR(ctx, CheckDigestFunction(req->digest_function()));
    int64_t total = 0;
    for (const auto& r : req->requests()) total += static_cast<int64_t>(r.data().size());
    if (total > st_->options.max_batch_total_size) {
      return Done(ctx, absl::InvalidArgumentError(absl::StrCat(
                           "batch of ", total, " bytes exceeds max_batch_total_size_bytes ",
                           st_->options.max_batch_total_size, "; use ByteStream Write")));
    }
    std::vector<BlobData> blobs;
    std::vector<int> index;
    for (int i = 0; i < req->requests_size(); ++i) {
      const auto& r = req->requests(i);
      auto* out = resp->add_responses();
      *out->mutable_digest() = r.digest();
      absl::StatusOr<common::Digest> d = FromProto(r.digest(), "digest");
      absl::Status s = d.status();
      if (s.ok() && r.compressor() != reapi::Compressor::IDENTITY) {
        s = absl::InvalidArgumentError(absl::StrCat(
            "compressor ", reapi::Compressor::Value_Name(r.compressor()), " is not supported"));
      }
      if (!s.ok()) {
        ToRpcStatus(s, out->mutable_status());
        continue;
      }
      blobs.push_back(BlobData{*std::move(d), r.data()});
      index.push_back(i);
    }
    absl::StatusOr<std::vector<absl::Status>> results = st_->options.cas->BatchWrite(blobs);
    RETURN_REACTOR_IF_ERROR(ctx, results.status());
    for (size_t j = 0; j < index.size(); ++j) {
      ToRpcStatus((*results)[j], resp->mutable_responses(index[j])->mutable_status());
      if ((*results)[j].ok()) st_->bytes_written += blobs[j].digest.size_bytes;
    }
    return Done(ctx, absl::OkStatus());
  }

  grpc::ServerUnaryReactor* BatchReadBlobs(grpc::CallbackServerContext* ctx,
                                           const reapi::BatchReadBlobsRequest* req,
                                           reapi::BatchReadBlobsResponse* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kCas, "BatchReadBlobs"), req->instance_name()).status());
    RETURN_REACTOR_IF_ERROR(ctx, CheckDigestFunction(req->digest_function()));
    int64_t total = 0;
    for (const reapi::Digest& d : req->digests()) total += std::max<int64_t>(0, d.size_bytes());
    if (total > st_->options.max_batch_total_size) {
      return Done(ctx, absl::InvalidArgumentError(absl::StrCat(
                           "batch of ", total, " bytes exceeds max_batch_total_size_bytes ",
                           st_->options.max_batch_total_size, "; use ByteStream Read")));
    }
    std::vector<common::Digest> digests;
    std::vector<int> index;
    for (int i = 0; i < req->digests_size(); ++i) {
      auto* out = resp->add_responses();
      *out->mutable_digest() = req->digests(i);
      absl::StatusOr<common::Digest> d = FromProto(req->digests(i), "digest");
      if (!d.ok()) {
        ToRpcStatus(d.status(), out->mutable_status());
        continue;
      }
      digests.push_back(*std::move(d));
      index.push_back(i);
    }
    absl::StatusOr<std::vector<absl::StatusOr<std::string>>> results =
        st_->options.cas->BatchRead(digests);
    RETURN_REACTOR_IF_ERROR(ctx, results.status());
    for (size_t j = 0; j < index.size(); ++j) {
      auto* out = resp->mutable_responses(index[j]);
      absl::StatusOr<std::string>& r = (*results)[j];
      ToRpcStatus(r.status(), out->mutable_status());
      if (r.ok()) {
        st_->bytes_read += static_cast<int64_t>(r->size());
        *out->mutable_data() = *std::move(r);
      }
    }
    return Done(ctx, absl::OkStatus());
  }

  grpc::ServerWriteReactor<reapi::GetTreeResponse>* GetTree(
      grpc::CallbackServerContext* ctx, const reapi::GetTreeRequest* req) override {
    return new GetTreeReactor(st_, ctx, *req);
  }

 private:
  CacheServer::State* st_;
};

// -------------------------------------------------------------------------------------------
// ActionCache: raw methods, so stored ActionResults go out exactly as they came in.

using RawActionCacheBase = reapi::ActionCache::WithRawCallbackMethod_GetActionResult<
    reapi::ActionCache::WithRawCallbackMethod_UpdateActionResult<reapi::ActionCache::Service>>;

class ActionCacheService final : public RawActionCacheBase {
 public:
  explicit ActionCacheService(CacheServer::State* st) : st_(st) {}

  grpc::ServerUnaryReactor* GetActionResult(grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) override {
    reapi::GetActionResultRequest req;
    if (!ParseByteBuffer(*request, &req)) {
      return Done(ctx, absl::InvalidArgumentError("GetActionResultRequest does not parse"));
    }
    absl::StatusOr<auth::Identity> who =
        st_->Admit(*ctx, Method(kAc, "GetActionResult"), req.instance_name());
    RETURN_REACTOR_IF_ERROR(ctx, who.status());
    RETURN_REACTOR_IF_ERROR(ctx, CheckDigestFunction(req.digest_function()));
    absl::StatusOr<common::Digest> key = FromProto(req.action_digest(), "action_digest");
    RETURN_REACTOR_IF_ERROR(ctx, key.status());
    absl::StatusOr<std::string> result =
        st_->options.action_cache->Get(st_->ReadScopes(req.instance_name(), *who), *key);
    if (absl::IsNotFound(result.status())) {
      ++st_->ac_misses;
      if (st_->ac_requests != nullptr) {
        st_->ac_requests->WithLabels({req.instance_name(), "miss"}).Increment();
      }
    } else if (result.ok()) {
      ++st_->ac_hits;
      if (st_->ac_requests != nullptr) {
        st_->ac_requests->WithLabels({req.instance_name(), "hit"}).Increment();
      }
      *response = ByteBufferOf(*std::move(result));
    }
    return Done(ctx, result.status());
  }

  grpc::ServerUnaryReactor* UpdateActionResult(grpc::CallbackServerContext* ctx,
                                               const grpc::ByteBuffer* request,
                                               grpc::ByteBuffer* response) override {
    farm::v1::RawUpdateActionResultRequest req;
    if (!ParseByteBuffer(*request, &req)) {
      return Done(ctx, absl::InvalidArgumentError("UpdateActionResultRequest does not parse"));
    }
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kAc, "UpdateActionResult"), req.instance_name()).status());
    RETURN_REACTOR_IF_ERROR(ctx, CheckDigestFunction(req.digest_function()));
    absl::StatusOr<common::Digest> key = FromProto(req.action_digest(), "action_digest");
    RETURN_REACTOR_IF_ERROR(ctx, key.status());
    absl::Status s =
        st_->options.action_cache->Update(req.instance_name(), *key, req.action_result());
    if (s.ok()) {
      ++st_->ac_updates;
      *response = ByteBufferOf(std::move(*req.mutable_action_result()));
    }
    return Done(ctx, s);
  }

 private:
  CacheServer::State* st_;
};

// -------------------------------------------------------------------------------------------
// ByteStream.

class ReadReactor final : public grpc::ServerWriteReactor<bs::ReadResponse> {
 public:
  ReadReactor(CacheServer::State* st, grpc::CallbackServerContext* ctx, const bs::ReadRequest& req)
      : st_(st), ctx_(ctx) {
    absl::Status s = Open(req);
    if (!s.ok()) {
      Finish(common::ToGrpcStatus(s));
      return;
    }
    Next();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "client went away"));
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  absl::Status Open(const bs::ReadRequest& req) {
    ASSIGN_OR_RETURN(ReadResource r, ParseReadResource(req.resource_name()));
    RETURN_IF_ERROR(st_->Admit(*ctx_, Method(kByteStream, "Read"), r.instance).status());
    if (req.read_offset() < 0 || req.read_offset() > r.digest.size_bytes) {
      return absl::OutOfRangeError(absl::StrCat("read_offset ", req.read_offset(),
                                                " is outside blob ", r.digest.ToString()));
    }
    if (req.read_limit() < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative read_limit ", req.read_limit()));
    }
    ASSIGN_OR_RETURN(reader_,
                     st_->options.cas->OpenRead(r.digest, req.read_offset(), req.read_limit()));
    return absl::OkStatus();
  }

  void Next() {
    if (pending_.empty()) {
      absl::StatusOr<absl::string_view> chunk = reader_->Next();
      if (!chunk.ok()) {
        Finish(common::ToGrpcStatus(chunk.status()));
        return;
      }
      if (chunk->empty()) {
        Finish(grpc::Status::OK);
        return;
      }
      pending_ = *chunk;
    }
    size_t n = std::min<size_t>(pending_.size(), st_->options.max_read_chunk);
    response_.set_data(pending_.data(), n);
    pending_.remove_prefix(n);
    st_->bytes_read += static_cast<int64_t>(n);
    StartWrite(&response_);
  }

  CacheServer::State* st_;
  grpc::CallbackServerContext* ctx_;
  std::unique_ptr<BlobReader> reader_;
  absl::string_view pending_;
  bs::ReadResponse response_;
};

class WriteReactor final : public grpc::ServerReadReactor<bs::WriteRequest> {
 public:
  WriteReactor(CacheServer::State* st, grpc::CallbackServerContext* ctx,
               bs::WriteResponse* response)
      : st_(st), ctx_(ctx), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The client half-closed or went away before finish_write.
      int64_t at = writer_ ? writer_->committed_size() : 0;
      Release(/*park=*/true);
      Finish(common::ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
          "the stream ended at offset ", at,
          " without finish_write; resume with QueryWriteStatus and Write at that offset"))));
      return;
    }
    absl::Status s = Handle();
    if (!s.ok()) {
      // A transient store failure keeps what was received, for the client to resume.
      Release(/*park=*/absl::IsUnavailable(s));
      Finish(common::ToGrpcStatus(s));
      return;
    }
    if (done_) {
      response_->set_committed_size(digest_.size_bytes);
      Release(/*park=*/false);
      Finish(grpc::Status::OK);
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override {
    Release(/*park=*/true);
    delete this;
  }

 private:
  absl::Status Handle() {
    if (name_.empty()) RETURN_IF_ERROR(Begin());
    if (done_) return absl::OkStatus();
    if (!request_.resource_name().empty() && request_.resource_name() != name_) {
      return absl::InvalidArgumentError(absl::StrCat("resource_name changed mid-stream from \"",
                                                     name_, "\" to \"", request_.resource_name(),
                                                     "\""));
    }
    if (request_.write_offset() != writer_->committed_size()) {
      return absl::InvalidArgumentError(absl::StrCat("write_offset ", request_.write_offset(),
                                                     " for ", name_, ": expected ",
                                                     writer_->committed_size()));
    }
    RETURN_IF_ERROR(writer_->Append(request_.data()));
    committed_->store(writer_->committed_size());
    if (request_.finish_write()) {
      RETURN_IF_ERROR(writer_->Commit());
      st_->bytes_written += digest_.size_bytes;
      done_ = true;
    }
    return absl::OkStatus();
  }

  absl::Status Begin() {
    if (request_.resource_name().empty()) {
      return absl::InvalidArgumentError("the first WriteRequest of a stream has no resource_name");
    }
    ASSIGN_OR_RETURN(WriteResource w, ParseWriteResource(request_.resource_name()));
    ASSIGN_OR_RETURN(auth::Identity who,
                     st_->Admit(*ctx_, Method(kByteStream, "Write"), w.instance));
    name_ = request_.resource_name();
    digest_ = w.digest;
    // Already stored: answer at once (the client may stop sending).
    ASSIGN_OR_RETURN(std::vector<common::Digest> missing, st_->options.cas->FindMissing({digest_}));
    if (missing.empty()) {
      done_ = true;
      return absl::OkStatus();
    }
    client_ = CacheServer::State::ClientOf(*ctx_, who);
    {
      absl::MutexLock lock(&st_->uploads_mu);
      if (st_->active.contains(name_)) {
        name_.clear();
        return absl::AbortedError(absl::StrCat("upload ", request_.resource_name(),
                                               " is already being written by another stream"));
      }
      int64_t& claimed = st_->claimed[client_];
      const int64_t limit = st_->options.max_upload_claims_per_client;
      if (limit > 0 && claimed + digest_.size_bytes > limit) {
        int64_t now = claimed;
        if (now == 0) st_->claimed.erase(client_);
        name_.clear();
        return absl::ResourceExhaustedError(
            absl::StrCat("upload of ", digest_.ToString(), ": ", client_, " already has ", now,
                         " bytes of uploads in progress; the limit per client is ", limit,
                         " (farm-cache --max-upload-per-client)"));
      }
      claimed += digest_.size_bytes;
      claimed_ = digest_.size_bytes;
      st_->ExpireParkedLocked(absl::Now());
      auto it = st_->parked.find(name_);
      if (it != st_->parked.end()) {
        writer_ = std::move(it->second.writer);
        st_->parked.erase(it);
      }
      committed_ = std::make_shared<std::atomic<int64_t>>(writer_ ? writer_->committed_size() : 0);
      st_->active[name_] = committed_;
    }
    if (!writer_) {
      if (request_.write_offset() != 0) {
        return absl::InvalidArgumentError(absl::StrCat("write_offset ", request_.write_offset(),
                                                       " for ", name_,
                                                       ": there is no upload to resume"));
      }
      ASSIGN_OR_RETURN(writer_, st_->options.cas->BeginWrite(digest_));
    }
    return absl::OkStatus();
  }

  // Ends this stream's claim on the upload; keeps the writer for resumption if asked and it
  // has received bytes.
  void Release(bool park) {
    if (name_.empty() || !committed_) return;
    absl::MutexLock lock(&st_->uploads_mu);
    st_->active.erase(name_);
    if (claimed_ > 0) {
      auto it = st_->claimed.find(client_);
      if (it != st_->claimed.end() && (it->second -= claimed_) <= 0) st_->claimed.erase(it);
      claimed_ = 0;
    }
    if (park && !done_ && writer_ && writer_->committed_size() > 0) {
      st_->ExpireParkedLocked(absl::Now());
      if (st_->parked.size() >= kMaxParkedUploads) {
        auto oldest = std::min_element(
            st_->parked.begin(), st_->parked.end(),
            [](const auto& a, const auto& b) { return a.second.expiry < b.second.expiry; });
        st_->parked.erase(oldest);
      }
      st_->parked[name_] = {std::move(writer_), absl::Now() + st_->options.upload_resume_ttl};
    }
    writer_.reset();
    committed_.reset();
  }

  CacheServer::State* st_;
  grpc::CallbackServerContext* ctx_;
  bs::WriteResponse* response_;
  bs::WriteRequest request_;
  std::string name_;
  std::string client_;   // whose claim this upload counts against
  int64_t claimed_ = 0;  // bytes of it in State::claimed
  common::Digest digest_;
  std::unique_ptr<BlobWriter> writer_;
  std::shared_ptr<std::atomic<int64_t>> committed_;
  bool done_ = false;
};

class ByteStreamService final : public bs::ByteStream::CallbackService {
 public:
  explicit ByteStreamService(CacheServer::State* st) : st_(st) {}

  grpc::ServerWriteReactor<bs::ReadResponse>* Read(grpc::CallbackServerContext* ctx,
                                                   const bs::ReadRequest* req) override {
    return new ReadReactor(st_, ctx, *req);
  }
  grpc::ServerReadReactor<bs::WriteRequest>* Write(grpc::CallbackServerContext* ctx,
                                                   bs::WriteResponse* resp) override {
    return new WriteReactor(st_, ctx, resp);
  }
  grpc::ServerUnaryReactor* QueryWriteStatus(grpc::CallbackServerContext* ctx,
                                             const bs::QueryWriteStatusRequest* req,
                                             bs::QueryWriteStatusResponse* resp) override {
    absl::StatusOr<WriteResource> w = ParseWriteResource(req->resource_name());
    RETURN_REACTOR_IF_ERROR(ctx, w.status());
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kByteStream, "QueryWriteStatus"), w->instance).status());
    absl::StatusOr<std::vector<common::Digest>> missing =
        st_->options.cas->FindMissing({w->digest});
    RETURN_REACTOR_IF_ERROR(ctx, missing.status());
    if (missing->empty()) {
      resp->set_committed_size(w->digest.size_bytes);
      resp->set_complete(true);
      return Done(ctx, absl::OkStatus());
    }
    absl::MutexLock lock(&st_->uploads_mu);
    st_->ExpireParkedLocked(absl::Now());
    if (auto a = st_->active.find(req->resource_name()); a != st_->active.end()) {
      resp->set_committed_size(a->second->load());
      return Done(ctx, absl::OkStatus());
    }
    if (auto p = st_->parked.find(req->resource_name()); p != st_->parked.end()) {
      resp->set_committed_size(p->second.writer->committed_size());
      return Done(ctx, absl::OkStatus());
    }
    return Done(ctx, absl::NotFoundError(absl::StrCat("no upload ", req->resource_name())));
  }

 private:
  CacheServer::State* st_;
};

// -------------------------------------------------------------------------------------------
// farm.v1.CacheAdmin.

void ToProto(const CacheStats& s, farm::v1::CacheStats* out) {
  out->set_location(s.location);
  out->set_max_size(s.max_size);
  out->set_disk_bytes(s.disk_bytes);
  out->set_blob_count(s.blob_count);
  out->set_blob_bytes(s.blob_bytes);
  out->set_pinned_blobs(s.pinned_blobs);
  out->set_pinned_bytes(s.pinned_bytes);
  out->set_leases(s.leases);
  out->set_reserved_bytes(s.reserved_bytes);
  out->set_evicted_blobs(s.evicted_blobs);
  out->set_evicted_bytes(s.evicted_bytes);
  out->set_ac_entries(s.ac_entries);
  for (const ScopeStats& sc : s.scopes) {
    auto* o = out->add_scopes();
    o->set_scope(sc.scope);
    o->set_entries(sc.entries);
    o->set_bytes(sc.bytes);
  }
  auto* c = out->mutable_server();
  c->set_ac_hits(s.server.ac_hits);
  c->set_ac_misses(s.server.ac_misses);
  c->set_ac_updates(s.server.ac_updates);
  c->set_find_missing_digests(s.server.find_missing_digests);
  c->set_find_missing_missing(s.server.find_missing_missing);
  c->set_bytes_read(s.server.bytes_read);
  c->set_bytes_written(s.server.bytes_written);
}

ServerCounters CountersOf(const CacheServer::State& st) {
  ServerCounters c;
  c.ac_hits = st.ac_hits.load();
  c.ac_misses = st.ac_misses.load();
  c.ac_updates = st.ac_updates.load();
  c.find_missing_digests = st.find_missing_digests.load();
  c.find_missing_missing = st.find_missing_missing.load();
  c.bytes_read = st.bytes_read.load();
  c.bytes_written = st.bytes_written.load();
  return c;
}

class AdminService final : public farm::v1::CacheAdmin::CallbackService {
 public:
  explicit AdminService(CacheServer::State* st) : st_(st) {}

  grpc::ServerUnaryReactor* AcquireLease(grpc::CallbackServerContext* ctx,
                                         const farm::v1::AcquireLeaseRequest* req,
                                         farm::v1::AcquireLeaseResponse* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kAdmin, "AcquireLease"), req->instance_name()).status());
    absl::Duration ttl =
        absl::Seconds(req->ttl().seconds()) + absl::Nanoseconds(req->ttl().nanos());
    if (ttl <= absl::ZeroDuration()) {
      return Done(ctx, absl::InvalidArgumentError("lease ttl must be positive"));
    }
    ttl = std::min(ttl, st_->options.max_lease_ttl);
    std::vector<common::Digest> digests;
    for (const reapi::Digest& d : req->digests()) {
      absl::StatusOr<common::Digest> digest = FromProto(d, "digests");
      RETURN_REACTOR_IF_ERROR(ctx, digest.status());
      digests.push_back(*std::move(digest));
    }
    absl::StatusOr<BlobStore::Lease> lease = st_->options.cas->AcquireLease(digests, ttl);
    RETURN_REACTOR_IF_ERROR(ctx, lease.status());
    resp->set_lease_id(lease->id);
    for (const common::Digest& d : lease->missing) cache::ToProto(d, resp->add_missing());
    absl::Time expiry = absl::Now() + ttl;
    resp->mutable_expire_time()->set_seconds(absl::ToUnixSeconds(expiry));
    return Done(ctx, absl::OkStatus());
  }

  grpc::ServerUnaryReactor* ReleaseLease(grpc::CallbackServerContext* ctx,
                                         const farm::v1::ReleaseLeaseRequest* req,
                                         farm::v1::ReleaseLeaseResponse*) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kAdmin, "ReleaseLease"), req->instance_name()).status());
    return Done(ctx, st_->options.cas->ReleaseLease(req->lease_id()));
  }

  grpc::ServerUnaryReactor* GetStats(grpc::CallbackServerContext* ctx,
                                     const farm::v1::GetStatsRequest* req,
                                     farm::v1::CacheStats* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kAdmin, "GetStats"), req->instance_name()).status());
    if (!st_->options.admin) return Done(ctx, absl::UnimplementedError("no stats on this server"));
    absl::StatusOr<CacheStats> stats = st_->options.admin->Stats();
    RETURN_REACTOR_IF_ERROR(ctx, stats.status());
    stats->server = CountersOf(*st_);
    ToProto(*stats, resp);
    return Done(ctx, absl::OkStatus());
  }

  grpc::ServerUnaryReactor* Gc(grpc::CallbackServerContext* ctx, const farm::v1::GcRequest* req,
                               farm::v1::GcResponse* resp) override {
    RETURN_REACTOR_IF_ERROR(ctx,
                            st_->Admit(*ctx, Method(kAdmin, "Gc"), req->instance_name()).status());
    if (!st_->options.admin) return Done(ctx, absl::UnimplementedError("no gc on this server"));
    absl::StatusOr<GcResult> r = st_->options.admin->Gc(GcOptions{req->max_size()});
    RETURN_REACTOR_IF_ERROR(ctx, r.status());
    resp->set_evicted_blobs(r->evicted_blobs);
    resp->set_evicted_bytes(r->evicted_bytes);
    resp->set_evicted_ac_entries(r->evicted_ac_entries);
    r->after.server = CountersOf(*st_);
    ToProto(r->after, resp->mutable_after());
    return Done(ctx, absl::OkStatus());
  }

 private:
  CacheServer::State* st_;
};

// -------------------------------------------------------------------------------------------
// farm.v1.LayerInfo.

class LayerInfoService final : public farm::v1::LayerInfo::CallbackService {
 public:
  explicit LayerInfoService(CacheServer::State* st) : st_(st) {}

  grpc::ServerUnaryReactor* GetDiffIds(grpc::CallbackServerContext* ctx,
                                       const farm::v1::GetDiffIdsRequest* req,
                                       farm::v1::GetDiffIdsResponse* resp) override {
    RETURN_REACTOR_IF_ERROR(
        ctx, st_->Admit(*ctx, Method(kLayerInfo, "GetDiffIds"), req->instance_name()).status());
    if (req->digests_size() > kMaxDigestsPerGetDiffIds) {
      return Done(ctx, absl::InvalidArgumentError(
                           absl::StrCat(req->digests_size(), " digests in one GetDiffIds; at most ",
                                        kMaxDigestsPerGetDiffIds)));
    }
    std::vector<common::Digest> digests;
    for (const reapi::Digest& d : req->digests()) {
      absl::StatusOr<common::Digest> digest = FromProto(d, "digests");
      RETURN_REACTOR_IF_ERROR(ctx, digest.status());
      digests.push_back(*std::move(digest));
    }
    absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> infos =
        st_->options.cas->GetLayerInfo(digests);
    RETURN_REACTOR_IF_ERROR(ctx, infos.status());
    for (size_t i = 0; i < digests.size(); ++i) {
      auto* out = resp->add_responses();
      *out->mutable_digest() = req->digests(static_cast<int>(i));
      const absl::StatusOr<LayerInfo>& info = (*infos)[i];
      ToRpcStatus(info.status(), out->mutable_status());
      if (!info.ok()) continue;
      switch (info->compression) {
        case oci::Compression::kNone:
          out->set_compression(farm::v1::LAYER_COMPRESSION_NONE);
          break;
        case oci::Compression::kGzip:
          out->set_compression(farm::v1::LAYER_COMPRESSION_GZIP);
          break;
        case oci::Compression::kZstd:
          out->set_compression(farm::v1::LAYER_COMPRESSION_ZSTD);
          break;
      }
      cache::ToProto(info->diff_id, out->mutable_diff_id());
    }
    return Done(ctx, absl::OkStatus());
  }

 private:
  CacheServer::State* st_;
};

#undef RETURN_REACTOR_IF_ERROR

}  // namespace

auth::Authorizer::Ptr CacheAuthRules() {
  using auth::Rule;
  absl::StatusOr<std::unique_ptr<auth::TableAuthorizer>> rules = auth::TableAuthorizer::Create({
      Rule(Method(kCapabilities, "*")).Anyone(),
      Rule(Method(kAc, "GetActionResult")).Tokens().Reads(),
      Rule(Method(kAc, "UpdateActionResult")).Tokens().Writes(),
      // The CAS is shared and content-addressed: a blob is what its digest says, whoever
      // wrote it. Workers upload their layers and read inputs with their certificates.
      Rule(Method(kCas, "FindMissingBlobs")).Tokens().Workers().Reads(),
      Rule(Method(kCas, "BatchReadBlobs")).Tokens().Workers().Reads(),
      Rule(Method(kCas, "GetTree")).Tokens().Workers().Reads(),
      Rule(Method(kCas, "BatchUpdateBlobs")).Tokens().Workers().Writes(),
      Rule(Method(kByteStream, "Read")).Tokens().Workers().Reads(),
      Rule(Method(kByteStream, "Write")).Tokens().Workers().Writes(),
      Rule(Method(kByteStream, "QueryWriteStatus")).Tokens().Workers().Writes(),
      // Pins for the scheduler's builds (a reader's right: they keep blobs it reads).
      Rule(Method(kAdmin, "AcquireLease")).Tokens().Workers().Reads(),
      Rule(Method(kAdmin, "ReleaseLease")).Tokens().Workers().Reads(),
      // What a stored blob is as a layer: a CAS read's right (it tells no more than reading it).
      Rule(Method(kLayerInfo, "GetDiffIds")).Tokens().Workers().Reads(),
      Rule(Method(kAdmin, "GetStats")).Role(auth::kRoleAdmin),
      Rule(Method(kAdmin, "Gc")).Role(auth::kRoleAdmin),
      Rule(Method(kHealth, "*")).Anyone(),
  });
  return *std::move(rules);  // a fixed table: Create cannot fail on it (cache_server_test)
}

// A clear error for an address that is taken, before gRPC logs its own.
absl::StatusOr<std::unique_ptr<CacheServer>> CacheServer::Start(CacheServerOptions options) {
  if (!options.cas || !options.action_cache) {
    return absl::InvalidArgumentError("CacheServer needs a BlobStore and an ActionCache");
  }
  for (const std::string& s : options.fallback_scopes) {
    RETURN_IF_ERROR(common::Annotate(ValidateInstanceName(s), "fallback scope"));
  }
  for (const std::string& s : options.instance_names) {
    RETURN_IF_ERROR(common::Annotate(ValidateInstanceName(s), "instance name"));
  }
  RETURN_IF_ERROR(common::ProbeListenAddress(options.listen));
  if (!options.auth) options.auth = auth::ServerAuth::AllowAll();

  std::unique_ptr<CacheServer> server(new CacheServer());
  server->state_ = std::make_unique<State>();
  State* st = server->state_.get();
  st->options = std::move(options);
  st->allowed.insert(st->options.instance_names.begin(), st->options.instance_names.end());
  if (st->options.metrics != nullptr) {
    ASSIGN_OR_RETURN(st->ac_requests,
                     st->options.metrics->AddCounter(
                         {"farm_cache_action_cache_requests_total",
                          "Action-cache lookups (GetActionResult) by the scope asked for and "
                          "result (hit, miss).",
                          {"scope", "result"},
                          kMaxScopeSeries}));
  }

  server->services_.push_back(std::make_unique<CapabilitiesService>(st));
  server->services_.push_back(std::make_unique<CasService>(st));
  server->services_.push_back(std::make_unique<ActionCacheService>(st));
  server->services_.push_back(std::make_unique<ByteStreamService>(st));
  server->services_.push_back(std::make_unique<AdminService>(st));
  server->services_.push_back(std::make_unique<LayerInfoService>(st));

  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds,
                   st->options.auth->Credentials(st->options.listen));
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(st->options.listen, creds, &port);
  if (st->options.configure) st->options.configure(builder);
  // Two servers on one port would split the traffic silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(64 << 20);
  for (auto& s : server->services_) builder.RegisterService(s.get());
  server->server_ = builder.BuildAndStart();
  if (!server->server_ || (port == 0 && st->options.listen.rfind("unix:", 0) != 0)) {
    return absl::FailedPreconditionError(absl::StrCat("cannot listen on ", st->options.listen));
  }
  server->port_ = port;
  if (st->options.listen.rfind("unix:", 0) == 0) {
    server->address_ = st->options.listen;
  } else {
    server->address_ =
        absl::StrCat(st->options.listen.substr(0, st->options.listen.rfind(':')), ":", port);
  }
  return server;
}

CacheServer::~CacheServer() { Shutdown(absl::ZeroDuration()); }

void CacheServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || !server_) return;
  shut_down_ = true;
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  server_->Wait();
}

void CacheServer::Wait() {
  if (server_) server_->Wait();
}

ServerCounters CacheServer::counters() const { return CountersOf(*state_); }

}  // namespace farm::cache::server
