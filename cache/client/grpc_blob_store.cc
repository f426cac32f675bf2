#include "cache/client/grpc_blob_store.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <deque>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cache/action_result_refs.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::cache::client {

namespace reapi = build::bazel::remote::execution::v2;
namespace bs = google::bytestream;

struct GrpcBlobStore::Stubs {
  std::unique_ptr<reapi::ContentAddressableStorage::StubInterface> cas;
  std::unique_ptr<bs::ByteStream::StubInterface> bytestream;
  std::unique_ptr<farm::v1::CacheAdmin::StubInterface> admin;
  std::unique_ptr<farm::v1::LayerInfo::StubInterface> layer_info;
};

namespace {

constexpr int kMaxDigestsPerFindMissing = 10000;
constexpr int kMaxDigestsPerGetDiffIds = 1000;  // the server's limit

void SetDeadline(grpc::ClientContext* ctx, absl::Duration timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
}

absl::Status FromRpc(const grpc::Status& s, absl::string_view what) {
  return common::Annotate(common::FromGrpcStatus(s), what);
}

absl::Status FromRpcStatus(const google::rpc::Status& s) {
  if (s.code() == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

absl::Status ValidateDigest(const Digest& d) {
  if (!common::IsValidSha256Hex(d.hash) || d.size_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", d.hash, "/", d.size_bytes, "\""));
  }
  return absl::OkStatus();
}

std::string NewUuid() {
  absl::BitGen gen;
  uint64_t hi = absl::Uniform<uint64_t>(gen), lo = absl::Uniform<uint64_t>(gen);
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;  // version 4
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;  // variant 1
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", hi >> 32, (hi >> 16) & 0xffff, hi & 0xffff,
                         lo >> 48, lo & 0xffffffffffffULL);
}

std::string InstancePrefix(const std::string& instance) {
  return instance.empty() ? "" : absl::StrCat(instance, "/");
}

class EmptyReader : public BlobReader {
 public:
  absl::StatusOr<absl::string_view> Next() override { return absl::string_view(); }
};

// Streams [pos, end) of a blob over ByteStream Read, reopening at the delivered offset when the
// stream fails with UNAVAILABLE.
class GrpcBlobReader : public BlobReader {
 public:
  GrpcBlobReader(GrpcBlobStore* store, Digest digest, int64_t offset, int64_t end)
      : store_(store), digest_(std::move(digest)), pos_(offset), end_(end) {}

  // Opens the stream and reads the first message, so that NOT_FOUND and friends surface here.
  absl::Status Start() {
    absl::StatusOr<bool> got = ReadMessage();
    if (!got.ok()) return got.status();
    have_first_ = *got;
    return absl::OkStatus();
  }

  absl::StatusOr<absl::string_view> Next() override {
    if (have_first_) {
      have_first_ = false;
      return absl::string_view(response_.data());
    }
    ASSIGN_OR_RETURN(bool got, ReadMessage());
    if (!got) return absl::string_view();
    return absl::string_view(response_.data());
  }

 private:
  // Reads the next non-empty message into response_ (advancing pos_); false at the end.
  absl::StatusOr<bool> ReadMessage() {
    const common::RetryOptions& retry = store_->options().retry;
    common::Backoff backoff(retry.backoff());
    int attempt = 1;
    for (;;) {
      if (pos_ >= end_ && !stream_) return false;
      if (!stream_) Open();
      if (stream_->Read(&response_)) {
        if (response_.data().empty()) continue;
        int64_t n = static_cast<int64_t>(response_.data().size());
        if (pos_ + n > end_) {
          return absl::DataLossError(absl::StrCat("server sent more than the ", end_ - pos_,
                                                  " bytes left of blob ", digest_.ToString()));
        }
        pos_ += n;
        return true;
      }
      grpc::Status s = stream_->Finish();
      stream_.reset();
      ctx_.reset();
      if (s.ok()) {
        if (pos_ < end_) {
          return absl::DataLossError(absl::StrCat("the read of blob ", digest_.ToString(),
                                                  " ended at offset ", pos_, " before ", end_));
        }
        return false;
      }
      absl::Status status = FromRpc(s, absl::StrCat("ByteStream.Read of ", digest_.ToString()));
      if (!absl::IsUnavailable(status) || attempt >= retry.max_attempts) return status;
      ++attempt;
      absl::SleepFor(backoff.Next());
    }
  }

  void Open() {
    bs::ReadRequest req;
    req.set_resource_name(absl::StrCat(InstancePrefix(store_->options().instance_name), "blobs/",
                                       digest_.hash, "/", digest_.size_bytes));
    req.set_read_offset(pos_);
    req.set_read_limit(end_ == digest_.size_bytes ? 0 : end_ - pos_);
    ctx_ = std::make_unique<grpc::ClientContext>();
    SetDeadline(ctx_.get(), store_->options().stream_timeout);
    stream_ = store_->stubs()->bytestream->Read(ctx_.get(), req);
  }

  GrpcBlobStore* store_;
  Digest digest_;
  int64_t pos_;
  int64_t end_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientReaderInterface<bs::ReadResponse>> stream_;
  bs::ReadResponse response_;
  bool have_first_ = false;
};

// A small blob: buffered, sent with BatchUpdateBlobs at Commit.
class BatchBlobWriter : public BlobWriter {
 public:
  BatchBlobWriter(GrpcBlobStore* store, Digest digest)
      : store_(store), digest_(std::move(digest)) {}
  absl::Status Append(absl::string_view data) override {
    if (static_cast<int64_t>(data_.size() + data.size()) > digest_.size_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("write of ", digest_.ToString(), " exceeds its size"));
    }
    data_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return static_cast<int64_t>(data_.size()); }
  absl::Status Commit() override {
    if (static_cast<int64_t>(data_.size()) != digest_.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("blob ", digest_.ToString(), ": received ",
                                                     data_.size(), " bytes, expected ",
                                                     digest_.size_bytes));
    }
    BlobData blob{digest_, data_};
    ASSIGN_OR_RETURN(std::vector<absl::Status> r,
                     store_->BatchWrite(absl::MakeConstSpan(&blob, 1)));
    return r.at(0);
  }

 private:
  GrpcBlobStore* store_;
  Digest digest_;
  std::string data_;
};

// A large blob: streamed over ByteStream Write as it is appended.
class StreamBlobWriter : public BlobWriter {
 public:
  StreamBlobWriter(GrpcBlobStore* store, Digest digest)
      : store_(store),
        digest_(std::move(digest)),
        name_(absl::StrCat(InstancePrefix(store->options().instance_name), "uploads/", NewUuid(),
                           "/blobs/", digest_.hash, "/", digest_.size_bytes)) {}

  ~StreamBlobWriter() override {
    if (stream_) {
      ctx_->TryCancel();
      stream_->Finish().ok();
    }
  }

  absl::Status Append(absl::string_view data) override {
    if (received_ + static_cast<int64_t>(data.size()) > digest_.size_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("write of ", digest_.ToString(), " exceeds its size"));
    }
    received_ += static_cast<int64_t>(data.size());
    if (complete_) return absl::OkStatus();  // the server already has it
    const size_t chunk = static_cast<size_t>(store_->options().write_chunk_size);
    while (!data.empty()) {
      size_t n = std::min(chunk - buffer_.size(), data.size());
      buffer_.append(data.data(), n);
      data.remove_prefix(n);
      if (buffer_.size() == chunk) {
        std::string out;
        out.swap(buffer_);
        RETURN_IF_ERROR(Send(std::move(out), /*finish=*/false));
        if (complete_) return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  int64_t committed_size() const override { return received_; }

  absl::Status Commit() override {
    if (received_ != digest_.size_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("blob ", digest_.ToString(), ": received ",
                                                     received_, " bytes, expected ",
                                                     digest_.size_bytes));
    }
    if (complete_) return absl::OkStatus();
    std::string out;
    out.swap(buffer_);
    return Send(std::move(out), /*finish=*/true);
  }

 private:
  // Queues `data` after what was appended before and sends everything not yet sent (ending
  // the stream if `finish`), resuming after UNAVAILABLE.
  absl::Status Send(std::string data, bool finish) {
    Remember(std::move(data));
    const common::RetryOptions& retry = store_->options().retry;
    common::Backoff backoff(retry.backoff());
    for (int attempt = 1;; ++attempt) {
      absl::Status s = Flush(finish);
      if (s.ok() || complete_) return absl::OkStatus();
      if (!absl::IsUnavailable(s) || attempt >= retry.max_attempts) return s;
      absl::SleepFor(backoff.Next());
      // Where did the server get to? The next Flush re-sends from there.
      s = Resume();
      if (complete_) return absl::OkStatus();
      if (!s.ok() && !absl::IsUnavailable(s)) return s;
    }
  }

  // Writes window bytes [sent_, queued_end) on the current stream (opening one if needed).
  absl::Status Flush(bool finish) {
    if (!stream_) Open();
    const int64_t queued_end = window_start_ + window_bytes_;
    int64_t pos = window_start_;
    bool finish_sent = false;
    for (const std::string& chunk : window_) {
      int64_t chunk_end = pos + static_cast<int64_t>(chunk.size());
      if (chunk_end > sent_) {
        bs::WriteRequest req;
        if (first_message_) req.set_resource_name(name_);
        req.set_write_offset(sent_);
        finish_sent = finish && chunk_end == queued_end;
        req.set_finish_write(finish_sent);
        req.set_data(chunk.data() + (sent_ - pos), static_cast<size_t>(chunk_end - sent_));
        if (!stream_->Write(req)) return FinishStream();
        first_message_ = false;
        sent_ = chunk_end;
      }
      pos = chunk_end;
    }
    if (!finish) return absl::OkStatus();
    if (!finish_sent) {  // everything was sent before: an empty final message
      bs::WriteRequest req;
      if (first_message_) req.set_resource_name(name_);
      req.set_write_offset(sent_);
      req.set_finish_write(true);
      if (!stream_->Write(req)) return FinishStream();
      first_message_ = false;
    }
    stream_->WritesDone();
    return FinishStream();
  }

  // Ends the current stream and interprets its outcome.
  absl::Status FinishStream() {
    grpc::Status s = stream_->Finish();
    stream_.reset();
    ctx_.reset();
    if (s.ok() && response_.committed_size() == digest_.size_bytes) {
      complete_ = true;
      return absl::OkStatus();
    }
    if (s.ok()) {
      return absl::DataLossError(absl::StrCat("server committed ", response_.committed_size(),
                                              " bytes of ", digest_.ToString()));
    }
    return FromRpc(s, absl::StrCat("ByteStream.Write of ", digest_.ToString()));
  }

  // Asks the server how much of the upload it kept and rewinds sent_ to it.
  absl::Status Resume() {
    if (stream_) {
      ctx_->TryCancel();
      stream_->Finish().ok();
      stream_.reset();
      ctx_.reset();
    }
    bs::QueryWriteStatusRequest req;
    req.set_resource_name(name_);
    bs::QueryWriteStatusResponse resp;
    grpc::ClientContext ctx;
    SetDeadline(&ctx, store_->options().rpc_timeout);
    grpc::Status gs = store_->stubs()->bytestream->QueryWriteStatus(&ctx, req, &resp);
    int64_t committed = 0;
    if (gs.ok()) {
      if (resp.complete()) {
        complete_ = true;
        return absl::OkStatus();
      }
      committed = resp.committed_size();
    } else if (gs.error_code() != grpc::StatusCode::NOT_FOUND &&
               gs.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
      return FromRpc(gs, "ByteStream.QueryWriteStatus");
    }
    if (committed < window_start_) {
      return absl::UnavailableError(
          absl::StrCat("upload of ", digest_.ToString(), " broke and the server kept ", committed,
                       " bytes, before the ", store_->options().resume_window,
                       "-byte resume window; write the blob again"));
    }
    if (committed > sent_) {
      return absl::DataLossError(absl::StrCat("server reports ", committed, " bytes of ",
                                              digest_.ToString(), ", more than the ", sent_,
                                              " sent"));
    }
    sent_ = committed;
    return absl::OkStatus();
  }

  // Appends to the window of queued/sent bytes, dropping the oldest beyond resume_window.
  void Remember(std::string data) {
    if (data.empty()) return;
    window_bytes_ += static_cast<int64_t>(data.size());
    window_.push_back(std::move(data));
    while (window_.size() > 1 &&
           window_bytes_ - static_cast<int64_t>(window_.front().size()) >=
               store_->options().resume_window &&
           window_start_ + static_cast<int64_t>(window_.front().size()) <= sent_) {
      window_bytes_ -= static_cast<int64_t>(window_.front().size());
      window_start_ += static_cast<int64_t>(window_.front().size());
      window_.pop_front();
    }
  }

  void Open() {
    ctx_ = std::make_unique<grpc::ClientContext>();
    SetDeadline(ctx_.get(), store_->options().stream_timeout);
    response_.Clear();
    stream_ = store_->stubs()->bytestream->Write(ctx_.get(), &response_);
    first_message_ = true;
  }

  GrpcBlobStore* store_;
  Digest digest_;
  std::string name_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  std::unique_ptr<grpc::ClientWriterInterface<bs::WriteRequest>> stream_;
  bs::WriteResponse response_;
  bool first_message_ = true;
  bool complete_ = false;
  int64_t received_ = 0;            // appended by the caller
  int64_t sent_ = 0;                // written to a stream
  std::string buffer_;              // appended, less than a chunk, not queued yet
  std::deque<std::string> window_;  // queued bytes: the last ones sent (for resuming) + unsent
  int64_t window_start_ = 0;
  int64_t window_bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> NewCacheChannel(
    const std::string& target, const auth::ClientAuthOptions& security) {
  std::string t = target;
  auth::ClientAuthOptions sec = security;
  if (absl::StartsWith(t, "grpc://")) t = t.substr(7);
  if (absl::StartsWith(t, "grpcs://")) {
    t = t.substr(8);
    sec.tls.use_tls = true;
  }
  if (absl::StartsWith(t, "https://") || absl::StartsWith(t, "http://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cache address \"", target, "\": want HOST:PORT, grpc://HOST:PORT or grpcs://HOST:PORT"));
  }
  if (t.empty()) return absl::InvalidArgumentError("empty cache address");
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = auth::ClientCredentials(t, sec);
  if (!creds.ok()) {
    return common::Annotate(creds.status(), absl::StrCat("cache ", target));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(t, *creds, args);
}

absl::StatusOr<std::unique_ptr<GrpcBlobStore>> GrpcBlobStore::Create(const std::string& target,
                                                                     const Options& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   NewCacheChannel(target, options.security));
  return std::make_unique<GrpcBlobStore>(channel, options);
}

GrpcBlobStore::GrpcBlobStore(std::shared_ptr<grpc::ChannelInterface> channel,
                             const Options& options)
    : GrpcBlobStore(reapi::ContentAddressableStorage::NewStub(channel),
                    bs::ByteStream::NewStub(channel), farm::v1::CacheAdmin::NewStub(channel),
                    farm::v1::LayerInfo::NewStub(channel), options) {}

GrpcBlobStore::GrpcBlobStore(std::unique_ptr<reapi::ContentAddressableStorage::StubInterface> cas,
                             std::unique_ptr<bs::ByteStream::StubInterface> bytestream,
                             std::unique_ptr<farm::v1::CacheAdmin::StubInterface> admin,
                             const Options& options)
    : GrpcBlobStore(std::move(cas), std::move(bytestream), std::move(admin), nullptr, options) {}

GrpcBlobStore::GrpcBlobStore(std::unique_ptr<reapi::ContentAddressableStorage::StubInterface> cas,
                             std::unique_ptr<bs::ByteStream::StubInterface> bytestream,
                             std::unique_ptr<farm::v1::CacheAdmin::StubInterface> admin,
                             std::unique_ptr<farm::v1::LayerInfo::StubInterface> layer_info,
                             const Options& options)
    : stubs_(new Stubs{std::move(cas), std::move(bytestream), std::move(admin),
                       std::move(layer_info)}),
      options_(options) {}

GrpcBlobStore::~GrpcBlobStore() = default;

absl::StatusOr<std::vector<Digest>> GrpcBlobStore::FindMissing(absl::Span<const Digest> digests) {
  std::vector<const Digest*> unique;
  absl::flat_hash_set<Digest> seen;
  for (const Digest& d : digests) {
    RETURN_IF_ERROR(ValidateDigest(d));
    if (!d.empty_blob() && seen.insert(d).second) unique.push_back(&d);
  }
  absl::flat_hash_set<Digest> missing;
  for (size_t start = 0; start < unique.size(); start += kMaxDigestsPerFindMissing) {
    reapi::FindMissingBlobsRequest req;
    req.set_instance_name(options_.instance_name);
    size_t end = std::min(unique.size(), start + kMaxDigestsPerFindMissing);
    for (size_t i = start; i < end; ++i) ToProto(*unique[i], req.add_blob_digests());
    reapi::FindMissingBlobsResponse resp;
    RETURN_IF_ERROR(common::Retry(options_.retry, [&]() -> absl::Status {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, options_.rpc_timeout);
      resp.Clear();
      return FromRpc(stubs_->cas->FindMissingBlobs(&ctx, req, &resp), "FindMissingBlobs");
    }));
    for (const reapi::Digest& d : resp.missing_blob_digests()) {
      missing.insert(Digest{d.hash(), d.size_bytes()});
    }
  }
  std::vector<Digest> out;
  for (const Digest* d : unique) {
    if (missing.contains(*d)) out.push_back(*d);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BlobReader>> GrpcBlobStore::OpenRead(const Digest& digest,
                                                                    int64_t offset, int64_t limit) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (offset < 0 || limit < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("negative read offset ", offset, " or limit ", limit));
  }
  if (offset > digest.size_bytes) {
    return absl::OutOfRangeError(
        absl::StrCat("read offset ", offset, " is beyond the size of ", digest.ToString()));
  }
  int64_t end = limit == 0 ? digest.size_bytes : std::min(digest.size_bytes, offset + limit);
  if (digest.empty_blob() || offset == end) {
    // Still report a missing blob as NOT_FOUND.
    if (!digest.empty_blob()) {
      ASSIGN_OR_RETURN(std::vector<Digest> missing, FindMissing({digest}));
      if (!missing.empty()) {
        return absl::NotFoundError(absl::StrCat("blob ", digest.ToString(), " not found"));
      }
    }
    return std::unique_ptr<BlobReader>(new EmptyReader());
  }
  auto reader = std::make_unique<GrpcBlobReader>(this, digest, offset, end);
  RETURN_IF_ERROR(reader->Start());
  return std::unique_ptr<BlobReader>(std::move(reader));
}

absl::StatusOr<std::unique_ptr<BlobWriter>> GrpcBlobStore::BeginWrite(const Digest& digest) {
  RETURN_IF_ERROR(ValidateDigest(digest));
  if (digest.size_bytes <= options_.max_batch_bytes) {
    return std::unique_ptr<BlobWriter>(new BatchBlobWriter(this, digest));
  }
  return std::unique_ptr<BlobWriter>(new StreamBlobWriter(this, digest));
}

absl::StatusOr<std::vector<absl::Status>> GrpcBlobStore::BatchWrite(
    absl::Span<const BlobData> blobs) {
  std::vector<absl::Status> out(blobs.size());
  // Group small blobs into requests under max_batch_bytes; large ones stream on their own.
  std::vector<std::vector<size_t>> groups;
  int64_t group_bytes = 0;
  for (size_t i = 0; i < blobs.size(); ++i) {
    const BlobData& b = blobs[i];
    if (absl::Status s = ValidateDigest(b.digest); !s.ok()) {
      out[i] = s;
      continue;
    }
    int64_t n = static_cast<int64_t>(b.data.size());
    if (b.digest.empty_blob() && n == 0) continue;
    if (n > options_.max_batch_bytes) {
      absl::StatusOr<std::unique_ptr<BlobWriter>> w =
          std::unique_ptr<BlobWriter>(new StreamBlobWriter(this, b.digest));
      absl::Status s = (*w)->Append(b.data);
      out[i] = s.ok() ? (*w)->Commit() : s;
      continue;
    }
    if (groups.empty() || group_bytes + n > options_.max_batch_bytes) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().push_back(i);
    group_bytes += n;
  }
  for (const std::vector<size_t>& group : groups) {
    reapi::BatchUpdateBlobsRequest req;
    req.set_instance_name(options_.instance_name);
    for (size_t i : group) {
      auto* r = req.add_requests();
      ToProto(blobs[i].digest, r->mutable_digest());
      r->set_data(blobs[i].data.data(), blobs[i].data.size());
    }
    reapi::BatchUpdateBlobsResponse resp;
    RETURN_IF_ERROR(common::Retry(options_.retry, [&]() -> absl::Status {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, options_.rpc_timeout);
      resp.Clear();
      return FromRpc(stubs_->cas->BatchUpdateBlobs(&ctx, req, &resp), "BatchUpdateBlobs");
    }));
    absl::flat_hash_map<Digest, absl::Status> by_digest;
    for (const auto& r : resp.responses()) {
      by_digest[Digest{r.digest().hash(), r.digest().size_bytes()}] = FromRpcStatus(r.status());
    }
    for (size_t i : group) {
      auto it = by_digest.find(blobs[i].digest);
      out[i] = it != by_digest.end()
                   ? it->second
                   : absl::InternalError(absl::StrCat("BatchUpdateBlobs response lacks ",
                                                      blobs[i].digest.ToString()));
    }
  }
  return out;
}

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> GrpcBlobStore::BatchRead(
    absl::Span<const Digest> digests) {
  std::vector<absl::StatusOr<std::string>> out(digests.size(), std::string());
  std::vector<std::vector<size_t>> groups;
  int64_t group_bytes = 0;
  for (size_t i = 0; i < digests.size(); ++i) {
    const Digest& d = digests[i];
    if (absl::Status s = ValidateDigest(d); !s.ok()) {
      out[i] = s;
      continue;
    }
    if (d.empty_blob()) continue;
    if (d.size_bytes > options_.max_batch_bytes) {
      out[i] = ReadBlob(d, std::numeric_limits<int64_t>::max());
      continue;
    }
    if (groups.empty() || group_bytes + d.size_bytes > options_.max_batch_bytes) {
      groups.emplace_back();
      group_bytes = 0;
    }
    groups.back().push_back(i);
    group_bytes += d.size_bytes;
  }
  for (const std::vector<size_t>& group : groups) {
    reapi::BatchReadBlobsRequest req;
    req.set_instance_name(options_.instance_name);
    for (size_t i : group) ToProto(digests[i], req.add_digests());
    reapi::BatchReadBlobsResponse resp;
    RETURN_IF_ERROR(common::Retry(options_.retry, [&]() -> absl::Status {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, options_.rpc_timeout);
      resp.Clear();
      return FromRpc(stubs_->cas->BatchReadBlobs(&ctx, req, &resp), "BatchReadBlobs");
    }));
    absl::flat_hash_map<Digest, int> by_digest;
    for (int j = 0; j < resp.responses_size(); ++j) {
      const auto& r = resp.responses(j);
      by_digest[Digest{r.digest().hash(), r.digest().size_bytes()}] = j;
    }
    for (size_t i : group) {
      auto it = by_digest.find(digests[i]);
      if (it == by_digest.end()) {
        out[i] = absl::InternalError(
            absl::StrCat("BatchReadBlobs response lacks ", digests[i].ToString()));
        continue;
      }
      auto* r = resp.mutable_responses(it->second);
      absl::Status s = FromRpcStatus(r->status());
      if (!s.ok()) {
        out[i] = s;
      } else if (static_cast<int64_t>(r->data().size()) != digests[i].size_bytes ||
                 common::DigestOf(r->data()) != digests[i]) {
        out[i] = absl::DataLossError(
            absl::StrCat("server returned bytes that do not match ", digests[i].ToString()));
      } else {
        out[i] = std::string(r->data());
      }
    }
  }
  return out;
}

absl::StatusOr<BlobStore::Lease> GrpcBlobStore::AcquireLease(absl::Span<const Digest> digests,
                                                             absl::Duration ttl) {
  if (!stubs_->admin) return absl::UnimplementedError("no farm.v1.CacheAdmin stub");
  farm::v1::AcquireLeaseRequest req;
  req.set_instance_name(options_.instance_name);
  for (const Digest& d : digests) {
    RETURN_IF_ERROR(ValidateDigest(d));
    ToProto(d, req.add_digests());
  }
  req.mutable_ttl()->set_seconds(absl::IDivDuration(ttl, absl::Seconds(1), &ttl));
  req.mutable_ttl()->set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(ttl)));
  farm::v1::AcquireLeaseResponse resp;
  RETURN_IF_ERROR(common::Retry(options_.retry, [&]() -> absl::Status {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout);
    resp.Clear();
    return FromRpc(stubs_->admin->AcquireLease(&ctx, req, &resp), "AcquireLease");
  }));
  Lease lease;
  lease.id = resp.lease_id();
  for (const reapi::Digest& d : resp.missing()) lease.missing.push_back({d.hash(), d.size_bytes()});
  return lease;
}

absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> GrpcBlobStore::GetLayerInfo(
    absl::Span<const Digest> digests) {
  for (const Digest& d : digests) RETURN_IF_ERROR(ValidateDigest(d));
  if (!stubs_->layer_info) return BlobStore::GetLayerInfo(digests);
  std::vector<absl::StatusOr<LayerInfo>> out;
  out.reserve(digests.size());
  for (size_t start = 0; start < digests.size(); start += kMaxDigestsPerGetDiffIds) {
    farm::v1::GetDiffIdsRequest req;
    req.set_instance_name(options_.instance_name);
    size_t end = std::min(digests.size(), start + kMaxDigestsPerGetDiffIds);
    for (size_t i = start; i < end; ++i) ToProto(digests[i], req.add_digests());
    farm::v1::GetDiffIdsResponse resp;
    absl::Status s = common::Retry(options_.retry, [&]() -> absl::Status {
      grpc::ClientContext ctx;
      SetDeadline(&ctx, options_.rpc_timeout);
      resp.Clear();
      return FromRpc(stubs_->layer_info->GetDiffIds(&ctx, req, &resp), "GetDiffIds");
    });
    if (absl::IsUnimplemented(s)) {
      // Not a farm-cache, or one older than farm.v1.LayerInfo: read the blobs back instead.
      return BlobStore::GetLayerInfo(digests);
    }
    RETURN_IF_ERROR(s);
    if (resp.responses_size() != static_cast<int>(end - start)) {
      return absl::InternalError(
          absl::StrCat("GetDiffIds answered ", resp.responses_size(), " digests of ", end - start));
    }
    for (size_t i = start; i < end; ++i) {
      const auto& r = resp.responses(static_cast<int>(i - start));
      if (r.digest().hash() != digests[i].hash ||
          r.digest().size_bytes() != digests[i].size_bytes) {
        return absl::InternalError("GetDiffIds answered digests out of order");
      }
      if (absl::Status st = FromRpcStatus(r.status()); !st.ok()) {
        out.push_back(st);
        continue;
      }
      LayerInfo info;
      switch (r.compression()) {
        case farm::v1::LAYER_COMPRESSION_NONE:
          info.compression = oci::Compression::kNone;
          break;
        case farm::v1::LAYER_COMPRESSION_GZIP:
          info.compression = oci::Compression::kGzip;
          break;
        case farm::v1::LAYER_COMPRESSION_ZSTD:
          info.compression = oci::Compression::kZstd;
          break;
        default:
          out.push_back(
              absl::InternalError(absl::StrCat("GetDiffIds: unknown compression ", r.compression(),
                                               " for ", digests[i].ToString())));
          continue;
      }
      absl::StatusOr<Digest> diff_id = FromProto(r.diff_id(), "diff_id");
      if (!diff_id.ok()) {
        out.push_back(common::Annotate(diff_id.status(), "GetDiffIds"));
        continue;
      }
      info.diff_id = *std::move(diff_id);
      out.push_back(std::move(info));
    }
  }
  return out;
}

absl::Status GrpcBlobStore::ReleaseLease(const std::string& lease_id) {
  if (!stubs_->admin) return absl::UnimplementedError("no farm.v1.CacheAdmin stub");
  farm::v1::ReleaseLeaseRequest req;
  req.set_instance_name(options_.instance_name);
  req.set_lease_id(lease_id);
  return common::Retry(options_.retry, [&]() -> absl::Status {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, options_.rpc_timeout);
    farm::v1::ReleaseLeaseResponse resp;
    return FromRpc(stubs_->admin->ReleaseLease(&ctx, req, &resp), "ReleaseLease");
  });
}

}  // namespace farm::cache::client
