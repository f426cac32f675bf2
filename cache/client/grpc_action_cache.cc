#include "cache/client/grpc_action_cache.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/action_result_refs.h"
#include "cache/client/grpc_blob_store.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/cache.pb.h"

namespace farm::cache::client {

namespace reapi = build::bazel::remote::execution::v2;

namespace {
constexpr char kGetMethod[] = "/build.bazel.remote.execution.v2.ActionCache/GetActionResult";
constexpr char kUpdateMethod[] = "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult";
}  // namespace

absl::StatusOr<std::unique_ptr<GrpcActionCache>> GrpcActionCache::Create(const std::string& target,
                                                                         const Options& options) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                   NewCacheChannel(target, options.security));
  return std::make_unique<GrpcActionCache>(channel, options);
}

GrpcActionCache::GrpcActionCache(std::shared_ptr<grpc::ChannelInterface> channel,
                                 const Options& options)
    : stub_(std::move(channel)), options_(options) {}

absl::StatusOr<std::string> GrpcActionCache::Call(const std::string& method,
                                                  const std::string& request) {
  return common::Retry(options_.retry, [&]() -> absl::StatusOr<std::string> {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options_.rpc_timeout));
    grpc::Slice slice(request);
    grpc::ByteBuffer req(&slice, 1);
    grpc::ByteBuffer resp;
    grpc::Status status;
    absl::Notification done;
    stub_.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();
    if (!status.ok()) return common::FromGrpcStatus(status);
    std::vector<grpc::Slice> slices;
    if (!resp.Dump(&slices).ok()) return absl::InternalError("unreadable response");
    std::string out;
    out.reserve(resp.Length());
    for (const grpc::Slice& s : slices)
      out.append(reinterpret_cast<const char*>(s.begin()), s.size());
    return out;
  });
}

absl::StatusOr<std::string> GrpcActionCache::Get(absl::Span<const std::string> scopes,
                                                 const common::Digest& key) {
  if (scopes.empty()) return absl::InvalidArgumentError("no action cache scope given");
  for (const std::string& scope : scopes) {
    reapi::GetActionResultRequest req;
    req.set_instance_name(scope);
    ToProto(key, req.mutable_action_digest());
    absl::StatusOr<std::string> result = Call(kGetMethod, req.SerializeAsString());
    if (absl::IsNotFound(result.status())) continue;
    if (!result.ok()) {
      return common::Annotate(
          result.status(), absl::StrCat("GetActionResult ", key.ToString(), " in \"", scope, "\""));
    }
    return result;
  }
  return absl::NotFoundError(absl::StrCat("no action result for ", key.ToString(), " in scopes [",
                                          absl::StrJoin(scopes, ", "), "]"));
}

absl::Status GrpcActionCache::Update(const std::string& scope, const common::Digest& key,
                                     absl::string_view action_result) {
  farm::v1::RawUpdateActionResultRequest req;
  req.set_instance_name(scope);
  ToProto(key, req.mutable_action_digest());
  req.set_action_result(action_result.data(), action_result.size());
  absl::StatusOr<std::string> stored = Call(kUpdateMethod, req.SerializeAsString());
  return common::Annotate(
      stored.status(), absl::StrCat("UpdateActionResult ", key.ToString(), " in \"", scope, "\""));
}

}  // namespace farm::cache::client
