// reapi_probe_server: a tiny in-memory REAPI v2 cache (Capabilities, ActionCache, CAS,
// ByteStream) behind ServerAuth, with the rules issue 12 gives farm-cache, printing who made
// each call. bazel_tls_test points Debian's Bazel at it to show that --tls_certificate,
// --tls_client_certificate/--tls_client_key and --remote_header=Authorization=Bearer reach
// ServerAuth as intended, before farm-cache itself is wired. Test-only; not farm-cache.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <iostream>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "auth/flags.h"
#include "auth/grpc_auth.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "common/flags.h"
#include "common/grpc_status.h"
#include "google/bytestream/bytestream.grpc.pb.h"

namespace {

namespace reapi = build::bazel::remote::execution::v2;
namespace bs = google::bytestream;
using farm::auth::FullMethodName;
using farm::auth::Identity;
using farm::auth::RequestInfo;
using farm::auth::Rule;
using farm::auth::ServerAuth;

constexpr char kCas[] = "build.bazel.remote.execution.v2.ContentAddressableStorage";
constexpr char kAc[] = "build.bazel.remote.execution.v2.ActionCache";
constexpr char kBs[] = "google.bytestream.ByteStream";

farm::auth::Authorizer::Ptr CacheRules() {
  auto t = farm::auth::TableAuthorizer::Create({
      Rule("/build.bazel.remote.execution.v2.Capabilities/*").Anyone(),
      Rule(FullMethodName(kAc, "GetActionResult")).Tokens().Reads(),
      Rule(FullMethodName(kAc, "UpdateActionResult")).Tokens().Writes(),
      Rule(FullMethodName(kCas, "FindMissingBlobs")).Tokens().Workers().Reads(),
      Rule(FullMethodName(kCas, "BatchReadBlobs")).Tokens().Workers().Reads(),
      Rule(FullMethodName(kCas, "BatchUpdateBlobs")).Tokens().Workers().Writes(),
      Rule(FullMethodName(kBs, "Read")).Tokens().Workers().Reads(),
      Rule(FullMethodName(kBs, "Write")).Tokens().Workers().Writes(),
      Rule(FullMethodName(kBs, "QueryWriteStatus")).Tokens().Workers().Writes(),
  });
  return std::shared_ptr<const farm::auth::Authorizer>(*std::move(t));
}

struct Store {
  std::mutex mu;
  std::map<std::string, std::string> blobs;                   // hash → bytes
  std::map<std::string, reapi::ActionResult> action_results;  // instance + "\n" + hash
};

// The instance name of "INSTANCE/blobs/H/S" or "INSTANCE/uploads/U/blobs/H/S"; also the hash.
bool ParseResource(const std::string& name, std::string* instance, std::string* hash) {
  std::vector<std::string> parts = absl::StrSplit(name, '/');
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i] == "blobs" && i + 2 < parts.size()) {
      size_t end = i;
      if (i >= 2 && parts[i - 2] == "uploads") end = i - 2;
      *instance = absl::StrJoin(parts.begin(), parts.begin() + end, "/");
      *hash = parts[i + 1];
      return true;
    }
  }
  return false;
}

class Services {
 public:
  explicit Services(std::shared_ptr<const ServerAuth> auth) : auth_(std::move(auth)) {}

  // Authorizes and logs one call.
  grpc::Status Check(grpc::ServerContext* ctx, const std::string& method, const RequestInfo& info) {
    absl::StatusOr<Identity> who = auth_->Authorize(*ctx, method, info);
    std::cout << "call " << method << " instance=\"" << info.instance_name.value_or("") << "\" "
              << (who.ok() ? absl::StrCat("by ", who->DebugString())
                           : absl::StrCat("refused: ", who.status().message()))
              << std::endl;
    return farm::common::ToGrpcStatus(who.status());
  }

  class Capabilities final : public reapi::Capabilities::Service {
    grpc::Status GetCapabilities(grpc::ServerContext*, const reapi::GetCapabilitiesRequest*,
                                 reapi::ServerCapabilities* resp) override {
      auto* c = resp->mutable_cache_capabilities();
      c->add_digest_functions(reapi::DigestFunction::SHA256);
      c->mutable_action_cache_update_capabilities()->set_update_enabled(true);
      c->set_max_batch_total_size_bytes(4 << 20);
      resp->mutable_low_api_version()->set_major(2);
      resp->mutable_high_api_version()->set_major(2);
      return grpc::Status::OK;
    }
  };

  class ActionCache final : public reapi::ActionCache::Service {
   public:
    ActionCache(Services* s, Store* st) : s_(s), st_(st) {}
    grpc::Status GetActionResult(grpc::ServerContext* ctx, const reapi::GetActionResultRequest* req,
                                 reapi::ActionResult* resp) override {
      grpc::Status ok = s_->Check(ctx, FullMethodName(kAc, "GetActionResult"),
                                  RequestInfo::Scope(req->instance_name()));
      if (!ok.ok()) return ok;
      std::lock_guard<std::mutex> lock(st_->mu);
      auto it = st_->action_results.find(req->instance_name() + "\n" + req->action_digest().hash());
      if (it == st_->action_results.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "");
      *resp = it->second;
      return grpc::Status::OK;
    }
    grpc::Status UpdateActionResult(grpc::ServerContext* ctx,
                                    const reapi::UpdateActionResultRequest* req,
                                    reapi::ActionResult* resp) override {
      grpc::Status ok = s_->Check(ctx, FullMethodName(kAc, "UpdateActionResult"),
                                  RequestInfo::Scope(req->instance_name()));
      if (!ok.ok()) return ok;
      std::lock_guard<std::mutex> lock(st_->mu);
      st_->action_results[req->instance_name() + "\n" + req->action_digest().hash()] =
          req->action_result();
      *resp = req->action_result();
      return grpc::Status::OK;
    }

   private:
    Services* s_;
    Store* st_;
  };

  class Cas final : public reapi::ContentAddressableStorage::Service {
   public:
    Cas(Services* s, Store* st) : s_(s), st_(st) {}
    grpc::Status FindMissingBlobs(grpc::ServerContext* ctx,
                                  const reapi::FindMissingBlobsRequest* req,
                                  reapi::FindMissingBlobsResponse* resp) override {
      grpc::Status ok = s_->Check(ctx, FullMethodName(kCas, "FindMissingBlobs"),
                                  RequestInfo::Scope(req->instance_name()));
      if (!ok.ok()) return ok;
      std::lock_guard<std::mutex> lock(st_->mu);
      for (const auto& d : req->blob_digests()) {
        if (d.size_bytes() != 0 && !st_->blobs.count(d.hash()))
          *resp->add_missing_blob_digests() = d;
      }
      return grpc::Status::OK;
    }
    grpc::Status BatchUpdateBlobs(grpc::ServerContext* ctx,
                                  const reapi::BatchUpdateBlobsRequest* req,
                                  reapi::BatchUpdateBlobsResponse* resp) override {
      grpc::Status ok = s_->Check(ctx, FullMethodName(kCas, "BatchUpdateBlobs"),
                                  RequestInfo::Scope(req->instance_name()));
      if (!ok.ok()) return ok;
      std::lock_guard<std::mutex> lock(st_->mu);
      for (const auto& r : req->requests()) {
        st_->blobs[r.digest().hash()] = r.data();
        *resp->add_responses()->mutable_digest() = r.digest();
      }
      return grpc::Status::OK;
    }
    grpc::Status BatchReadBlobs(grpc::ServerContext* ctx, const reapi::BatchReadBlobsRequest* req,
                                reapi::BatchReadBlobsResponse* resp) override {
      grpc::Status ok = s_->Check(ctx, FullMethodName(kCas, "BatchReadBlobs"),
                                  RequestInfo::Scope(req->instance_name()));
      if (!ok.ok()) return ok;
      std::lock_guard<std::mutex> lock(st_->mu);
      for (const auto& d : req->digests()) {
        auto* r = resp->add_responses();
        *r->mutable_digest() = d;
        auto it = st_->blobs.find(d.hash());
        if (it != st_->blobs.end()) {
          r->set_data(it->second);
        } else if (d.size_bytes() != 0) {
          r->mutable_status()->set_code(grpc::StatusCode::NOT_FOUND);
        }
      }
      return grpc::Status::OK;
    }
    grpc::Status GetTree(grpc::ServerContext*, const reapi::GetTreeRequest*,
                         grpc::ServerWriter<reapi::GetTreeResponse>*) override {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "");
    }

   private:
    Services* s_;
    Store* st_;
  };

  class ByteStream final : public bs::ByteStream::Service {
   public:
    ByteStream(Services* s, Store* st) : s_(s), st_(st) {}
    grpc::Status Read(grpc::ServerContext* ctx, const bs::ReadRequest* req,
                      grpc::ServerWriter<bs::ReadResponse>* writer) override {
      std::string instance, hash;
      if (!ParseResource(req->resource_name(), &instance, &hash)) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad resource name");
      }
      grpc::Status ok = s_->Check(ctx, FullMethodName(kBs, "Read"), RequestInfo::Scope(instance));
      if (!ok.ok()) return ok;
      std::string data;
      {
        std::lock_guard<std::mutex> lock(st_->mu);
        auto it = st_->blobs.find(hash);
        if (it == st_->blobs.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, hash);
        data = it->second;
      }
      for (size_t off = static_cast<size_t>(req->read_offset()); off < data.size();
           off += 1 << 20) {
        bs::ReadResponse r;
        r.set_data(data.substr(off, 1 << 20));
        writer->Write(r);
      }
      return grpc::Status::OK;
    }
    grpc::Status Write(grpc::ServerContext* ctx, grpc::ServerReader<bs::WriteRequest>* reader,
                       bs::WriteResponse* resp) override {
      bs::WriteRequest req;
      std::string data, instance, hash;
      bool first = true;
      while (reader->Read(&req)) {
        if (first) {
          if (!ParseResource(req.resource_name(), &instance, &hash)) {
            return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad resource name");
          }
          grpc::Status ok =
              s_->Check(ctx, FullMethodName(kBs, "Write"), RequestInfo::Scope(instance));
          if (!ok.ok()) return ok;
          first = false;
        }
        data += req.data();
        if (req.finish_write()) break;
      }
      resp->set_committed_size(static_cast<int64_t>(data.size()));
      std::lock_guard<std::mutex> lock(st_->mu);
      st_->blobs[hash] = std::move(data);
      return grpc::Status::OK;
    }
    grpc::Status QueryWriteStatus(grpc::ServerContext*, const bs::QueryWriteStatusRequest*,
                                  bs::QueryWriteStatusResponse*) override {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "");
    }

   private:
    Services* s_;
    Store* st_;
  };

 private:
  std::shared_ptr<const ServerAuth> auth_;
};

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  farm::auth::ServerAuthOptions sec;
  farm::common::FlagSet fs("reapi_probe_server [--listen HOST:PORT] [security flags]",
                           "An in-memory REAPI cache behind ServerAuth (tests only).");
  fs.String("listen", 0, &listen, "Address to serve on", "HOST:PORT");
  farm::auth::RegisterServerFlags(&fs, &sec);
  auto rest = fs.Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!rest.ok()) {
    std::cerr << rest.status().message() << std::endl;
    return 2;
  }
  sec.authorizer = CacheRules();
  sec.log = [](absl::string_view line) { std::cout << line << std::endl; };
  auto sa = ServerAuth::Create(sec);
  if (!sa.ok()) {
    std::cerr << "reapi_probe_server: " << sa.status().message() << std::endl;
    return 1;
  }
  std::shared_ptr<const ServerAuth> auth(*std::move(sa));
  auto creds = auth->Credentials(listen);
  if (!creds.ok()) {
    std::cerr << "reapi_probe_server: " << creds.status().message() << std::endl;
    return 1;
  }
  Store store;
  Services services(auth);
  Services::Capabilities caps;
  Services::ActionCache ac(&services, &store);
  Services::Cas cas(&services, &store);
  Services::ByteStream bytestream(&services, &store);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, *creds, &port);
  for (grpc::Service* s : std::initializer_list<grpc::Service*>{&caps, &ac, &cas, &bytestream}) {
    builder.RegisterService(s);
  }
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::cerr << "reapi_probe_server: cannot serve on " << listen << std::endl;
    return 1;
  }
  std::cout << "reapi_probe_server: listening on port " << port << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  server->Shutdown();
  return 0;
}
