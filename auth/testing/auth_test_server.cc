#include "auth/testing/auth_test_server.h"

#include <grpcpp/grpcpp.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "auth_test_service.grpc.pb.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"

namespace farm {
namespace auth {
namespace testing {

namespace {

constexpr char kService[] = "farm.auth.testing.AuthTest";

std::string Method(const char* name) { return FullMethodName(kService, name); }

void Fill(const Identity& id, EchoResponse* resp) {
  resp->set_subject(id.subject);
  resp->set_tenant(id.tenant);
  for (const std::string& s : id.read_scopes) resp->add_read_scopes(s);
  for (const std::string& s : id.write_scopes) resp->add_write_scopes(s);
  for (const std::string& r : id.roles) resp->add_roles(r);
  resp->set_worker_id(id.worker_id);
  resp->set_certificate(id.certificate);
}

}  // namespace

Authorizer::Ptr AuthTestRules() {
  auto rules = TableAuthorizer::Create({
      Rule(Method("Public")).Anyone(),
      Rule(Method("WhoAmI")).Tokens().Workers(),
      Rule(Method("Read")).Tokens().Workers().Reads(),
      Rule(Method("Write")).Tokens().Writes(),
      Rule(Method("Admin")).Role(kRoleAdmin),
      Rule(Method("Connect")).Workers(),
  });
  return std::shared_ptr<const Authorizer>(*std::move(rules));
}

class AuthTestServiceImpl final : public AuthTest::CallbackService {
 public:
  explicit AuthTestServiceImpl(std::shared_ptr<const ServerAuth> auth) : auth_(std::move(auth)) {}

  std::atomic<int64_t> calls{0};

  grpc::ServerUnaryReactor* Public(grpc::CallbackServerContext* ctx, const EchoRequest*,
                                   EchoResponse* resp) override {
    return Answer(ctx, "Public", RequestInfo(), resp);
  }
  grpc::ServerUnaryReactor* WhoAmI(grpc::CallbackServerContext* ctx, const EchoRequest*,
                                   EchoResponse* resp) override {
    return Answer(ctx, "WhoAmI", RequestInfo(), resp);
  }
  grpc::ServerUnaryReactor* Read(grpc::CallbackServerContext* ctx, const EchoRequest* req,
                                 EchoResponse* resp) override {
    return Answer(ctx, "Read", RequestInfo::Scope(req->instance_name()), resp);
  }
  grpc::ServerUnaryReactor* Write(grpc::CallbackServerContext* ctx, const EchoRequest* req,
                                  EchoResponse* resp) override {
    return Answer(ctx, "Write", RequestInfo::Scope(req->instance_name()), resp);
  }
  grpc::ServerUnaryReactor* Admin(grpc::CallbackServerContext* ctx, const EchoRequest*,
                                  EchoResponse* resp) override {
    grpc::ServerUnaryReactor* r = Answer(ctx, "Admin", RequestInfo(), resp);
    if (!resp->subject().empty()) {
      Identity who;
      who.has_token = true;
      who.subject = resp->subject();
      who.roles.assign(resp->roles().begin(), resp->roles().end());
      auth_->Audit(*ctx, who, "admin call");
    }
    return r;
  }

  grpc::ServerBidiReactor<EchoRequest, EchoResponse>* Connect(
      grpc::CallbackServerContext* ctx) override {
    ++calls;
    class Reactor : public grpc::ServerBidiReactor<EchoRequest, EchoResponse> {
     public:
      Reactor(grpc::CallbackServerContext* ctx, const ServerAuth& auth) {
        absl::StatusOr<Identity> who = auth.Authorize(*ctx, Method("Connect"), RequestInfo());
        if (!who.ok()) {
          Finish(common::ToGrpcStatus(who.status()));
          return;
        }
        Fill(*who, &resp_);
        StartRead(&req_);
      }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        StartWrite(&resp_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed"));
          return;
        }
        StartRead(&req_);
      }
      void OnDone() override { delete this; }

     private:
      EchoRequest req_;
      EchoResponse resp_;
    };
    return new Reactor(ctx, *auth_);
  }

 private:
  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const char* method,
                                   const RequestInfo& info, EchoResponse* resp) {
    ++calls;
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    absl::StatusOr<Identity> who = auth_->Authorize(*ctx, Method(method), info);
    if (!who.ok()) {
      r->Finish(common::ToGrpcStatus(who.status()));
      return r;
    }
    Fill(*who, resp);
    r->Finish(grpc::Status::OK);
    return r;
  }

  std::shared_ptr<const ServerAuth> auth_;
};

absl::StatusOr<std::unique_ptr<AuthTestServer>> AuthTestServer::Start(
    std::shared_ptr<const ServerAuth> auth, const std::string& listen) {
  ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> creds, auth->Credentials(listen));
  std::unique_ptr<AuthTestServer> s(new AuthTestServer());
  s->service_ = std::make_unique<AuthTestServiceImpl>(std::move(auth));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, creds, &s->port_);
  builder.RegisterService(s->service_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot serve on ", listen));
  }
  return s;
}

AuthTestServer::~AuthTestServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

int64_t AuthTestServer::handler_calls() const { return service_->calls.load(); }

std::string AuthTestServer::address() const { return absl::StrCat("127.0.0.1:", port_); }

}  // namespace testing
}  // namespace auth
}  // namespace farm
