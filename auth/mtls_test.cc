// End to end over loopback: deploy/make-certs.sh makes a farm's CAs, certificates and token
// key; a real gRPC server (AuthTestServer) behind ServerAuth and real clients with
// ClientCredentials then show who gets in, as whom, and with what error when not.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "auth/grpc_auth.h"
#include "auth/jwk.h"
#include "auth/jwt.h"
#include "auth/testing/auth_test_server.h"
#include "auth_test_service.grpc.pb.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm {
namespace auth {
namespace {

using testing::AuthTest;
using testing::AuthTestRules;
using testing::AuthTestServer;
using testing::EchoRequest;
using testing::EchoResponse;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kStart = absl::FromUnixSeconds(1800000000);
std::atomic<int64_t> g_now_us{absl::ToUnixMicros(kStart)};
absl::Time Now() { return absl::FromUnixMicros(g_now_us.load()); }
void Advance(absl::Duration d) { g_now_us += absl::ToInt64Microseconds(d); }

std::string* g_dir = nullptr;    // the farm's certificates (make-certs.sh output)
std::string* g_rogue = nullptr;  // another farm's: same layout, other CAs

void RunMakeCerts(const std::string& dir, const std::string& args) {
  std::string script = absl::StrCat(getenv("TEST_SRCDIR"), "/farm/deploy/make-certs.sh");
  std::string cmd = absl::StrCat(script, " --dir ", dir, " ", args, " >", dir, ".log 2>&1");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd << "\n" << *common::ReadFile(dir + ".log");
}

std::string F(const std::string& rel) { return absl::StrCat(*g_dir, "/", rel); }

class MtlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = getenv("TEST_TMPDIR");
    g_dir = new std::string(absl::StrCat(tmp ? tmp : "/tmp", "/farm-tls"));
    g_rogue = new std::string(absl::StrCat(tmp ? tmp : "/tmp", "/rogue-tls"));
    RunMakeCerts(*g_dir, "--server farm-test=localhost,127.0.0.1 --worker w1 --client bazel");
    // A second run adds an RS256 key for the rotation test, keeping the rest.
    RunMakeCerts(*g_dir, "--jwt-key next --jwt-alg RS256");
    RunMakeCerts(*g_rogue, "--server farm-test=localhost,127.0.0.1 --worker w1");
  }

  void SetUp() override {
    g_now_us = absl::ToUnixMicros(kStart);
    // The server's key file, which tests rotate.
    key_file_ =
        absl::StrCat(*g_dir, "/server-keys-",
                     ::testing::UnitTest::GetInstance()->current_test_info()->name(), ".pem");
    ASSERT_TRUE(common::WriteFileAtomic(key_file_, *common::ReadFile(F("jwt/signing.pub"))).ok());
    signing_ =
        std::make_unique<SigningKey>(*SigningKey::FromPem(*common::ReadFile(F("jwt/signing.key"))));
  }

  // A server in the scheduler's shape: TLS, client certificates verified when sent (workers),
  // tokens for everyone else.
  ServerAuthOptions Options(TlsServerOptions::ClientCerts certs) {
    ServerAuthOptions o;
    o.tls.cert_file = F("servers/farm-test.crt");
    o.tls.key_file = F("servers/farm-test.key");
    o.tls.client_ca_file = F("client-cas.crt");
    o.tls.client_certs = certs;
    o.worker_ca_file = F("worker-ca.crt");
    o.tokens.key_file = key_file_;
    o.tokens.clock = Now;
    o.tokens.reload_interval = absl::Seconds(10);
    o.tokens.log = [this](absl::string_view line) { log_.emplace_back(line); };
    o.log = o.tokens.log;
    o.authorizer = AuthTestRules();
    return o;
  }

  void Start(ServerAuthOptions o) {
    auto sa = ServerAuth::Create(std::move(o));
    ASSERT_TRUE(sa.ok()) << sa.status();
    auth_ = std::shared_ptr<const ServerAuth>(*std::move(sa));
    auto server = AuthTestServer::Start(auth_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::unique_ptr<AuthTest::Stub> Stub(const ClientAuthOptions& o) {
    auto creds = ClientCredentials(server_->address(), o);
    EXPECT_TRUE(creds.ok()) << creds.status();
    if (!creds.ok()) return nullptr;
    return AuthTest::NewStub(grpc::CreateChannel(server_->address(), *creds));
  }

  ClientAuthOptions Client(const std::string& cert = "", const std::string& token = "") {
    ClientAuthOptions o;
    o.tls.ca_file = F("ca.crt");
    if (!cert.empty()) {
      o.tls.cert_file = F(cert + ".crt");
      o.tls.key_file = F(cert + ".key");
    }
    o.token = token;
    return o;
  }

  std::string Token(TokenClaims c, const SigningKey* key = nullptr,
                    absl::Time issued = absl::InfinitePast()) {
    if (c.subject.empty()) c.subject = "alice";
    auto t = MintToken(key ? *key : *signing_, c, issued == absl::InfinitePast() ? Now() : issued);
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  }

  static grpc::Status Call(AuthTest::Stub* stub, const char* method,
                           const std::string& instance = "", EchoResponse* out = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    EchoRequest req;
    req.set_instance_name(instance);
    EchoResponse resp;
    grpc::Status s;
    std::string m = method;
    if (m == "Public") s = stub->Public(&ctx, req, &resp);
    if (m == "WhoAmI") s = stub->WhoAmI(&ctx, req, &resp);
    if (m == "Read") s = stub->Read(&ctx, req, &resp);
    if (m == "Write") s = stub->Write(&ctx, req, &resp);
    if (m == "Admin") s = stub->Admin(&ctx, req, &resp);
    if (out) *out = resp;
    return s;
  }

  std::string key_file_;
  std::unique_ptr<SigningKey> signing_;
  std::vector<std::string> log_;
  std::shared_ptr<const ServerAuth> auth_;
  std::unique_ptr<AuthTestServer> server_;
};

TEST_F(MtlsTest, RequiredClientCertificates) {
  Start(Options(TlsServerOptions::ClientCerts::kRequire));

  // No certificate: the handshake fails.
  auto none = Stub(Client());
  grpc::Status s = Call(none.get(), "Public");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  // A worker certificate from another farm's worker CA: refused too.
  ClientAuthOptions rogue = Client();
  rogue.tls.cert_file = absl::StrCat(*g_rogue, "/workers/w1.crt");
  rogue.tls.key_file = absl::StrCat(*g_rogue, "/workers/w1.key");
  s = Call(Stub(rogue).get(), "Public");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();

  // Our worker: accepted, and the worker id is the certificate's CN.
  EchoResponse who;
  s = Call(Stub(Client("workers/w1")).get(), "WhoAmI", "", &who);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(who.worker_id(), "w1");
  EXPECT_EQ(who.certificate(), "w1");
  EXPECT_EQ(who.subject(), "w1");
  EXPECT_THAT(who.roles(), ElementsAre("worker"));

  // A client certificate from the farm CA is not a worker.
  s = Call(Stub(Client("clients/bazel")).get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("the caller is certificate CN=bazel"));
}

TEST_F(MtlsTest, WorkerStreamsOnlyForWorkers) {
  Start(Options(TlsServerOptions::ClientCerts::kOptional));
  auto connect = [&](const ClientAuthOptions& o, EchoResponse* first) {
    auto stub = Stub(o);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->Connect(&ctx);
    EchoRequest req;
    stream->Write(req);
    stream->Read(first);
    stream->WritesDone();
    return stream->Finish();
  };
  EchoResponse who;
  grpc::Status s = connect(Client("workers/w1"), &who);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(who.worker_id(), "w1");
  TokenClaims admin;
  admin.roles = {"admin"};
  int64_t handled = server_->handler_calls();
  s = connect(Client("", Token(admin)), &who);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("needs a worker certificate"));
  s = connect(Client(), &who);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(server_->handler_calls(), handled);  // refused before the handler
}

TEST_F(MtlsTest, BearerTokens) {
  Start(Options(TlsServerOptions::ClientCerts::kOptional));

  // No token (and no certificate): only Public.
  auto anon = Stub(Client());
  EXPECT_TRUE(Call(anon.get(), "Public").ok());
  grpc::Status s = Call(anon.get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("needs a bearer token or a worker certificate"));

  // A valid token: its claims reach the handler.
  TokenClaims c;
  c.subject = "ci-web-pr-1";
  c.tenant = "web";
  c.read_scopes = {"main", "pr/1"};
  c.write_scopes = {"pr/1"};
  c.roles = {"submit"};
  auto stub = Stub(Client("", Token(c)));
  EchoResponse who;
  s = Call(stub.get(), "WhoAmI", "", &who);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(who.subject(), "ci-web-pr-1");
  EXPECT_EQ(who.tenant(), "web");
  EXPECT_THAT(who.read_scopes(), ElementsAre("main", "pr/1"));
  EXPECT_THAT(who.write_scopes(), ElementsAre("pr/1"));
  EXPECT_THAT(who.roles(), ElementsAre("submit"));
  EXPECT_EQ(who.worker_id(), "");

  // Scopes, checked by the handler with the request's instance name.
  EXPECT_TRUE(Call(stub.get(), "Read", "main").ok());
  EXPECT_TRUE(Call(stub.get(), "Write", "pr/1").ok());
  s = Call(stub.get(), "Write", "main");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("ci-web-pr-1 may not write scope \"main\""));
  // Roles, checked before the handler: it never runs.
  int64_t handled = server_->handler_calls();
  s = Call(stub.get(), "Admin");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("needs a bearer token with role \"admin\""));
  EXPECT_EQ(server_->handler_calls(), handled);

  // An admin: allowed, and audited.
  TokenClaims root;
  root.subject = "root";
  root.roles = {"admin"};
  ASSERT_TRUE(Call(Stub(Client("", Token(root))).get(), "Admin").ok());
  ASSERT_FALSE(log_.empty());
  EXPECT_THAT(log_.back(), HasSubstr("audit: admin call by token sub=root roles=admin from "
                                     "ipv4:127.0.0.1:"));

  // Expired.
  TokenClaims old;
  old.lifetime = absl::Hours(1);
  std::string expired = Token(old, nullptr, Now() - absl::Hours(2));
  s = Call(Stub(Client("", expired)).get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("token expired at 2027-01-15T07:00:00Z"));

  // Signed by another key that claims our kid.
  auto rogue_pem = common::ReadFile(absl::StrCat(*g_rogue, "/jwt/signing.key"));
  SigningKey forger = *SigningKey::FromPem(*rogue_pem, signing_->kid());
  s = Call(Stub(Client("", Token(c, &forger))).get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("signature does not verify with key kid=", signing_->kid())));
  EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr(Token(c, &forger).substr(0, 40))));

  // A key the server does not have.
  SigningKey unknown = *SigningKey::FromPem(*rogue_pem);
  s = Call(Stub(Client("", Token(c, &unknown))).get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat("unknown key id kid=", unknown.kid())));

  // A bad token is refused even where no token is needed.
  s = Call(Stub(Client("", "bm9wZQ.e30.AA")).get(), "Public");  // header "nope"
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("part 1 (header) is not a JSON object"));

  // A worker certificate and a token together: both facts.
  s = Call(Stub(Client("workers/w1", Token(c))).get(), "WhoAmI", "", &who);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(who.subject(), "ci-web-pr-1");
  EXPECT_EQ(who.worker_id(), "w1");
  EXPECT_THAT(who.roles(), ElementsAre("submit", "worker"));
}

TEST_F(MtlsTest, KeyFileRotationIsPickedUp) {
  Start(Options(TlsServerOptions::ClientCerts::kOptional));
  SigningKey next = *SigningKey::FromPem(*common::ReadFile(F("jwt/next.key")));
  EXPECT_EQ(next.alg(), JwsAlg::kRS256);
  TokenClaims c;
  std::string old_token = Token(c);
  std::string new_token = Token(c, &next);
  EXPECT_TRUE(Call(Stub(Client("", old_token)).get(), "WhoAmI").ok());
  grpc::Status s = Call(Stub(Client("", new_token)).get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);

  // Rotate the server's key file to the next key (written beside, renamed over).
  ASSERT_TRUE(common::WriteFileAtomic(key_file_, *common::ReadFile(F("jwt/next.pub"))).ok());
  Advance(absl::Seconds(11));
  s = Call(Stub(Client("", new_token)).get(), "WhoAmI");
  EXPECT_TRUE(s.ok()) << s.error_message();
  s = Call(Stub(Client("", old_token)).get(), "WhoAmI");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown key id"));
  ASSERT_FALSE(log_.empty());
  EXPECT_THAT(log_.back(), HasSubstr(absl::StrCat("reloaded 1 token keys from ", key_file_)));
}

TEST_F(MtlsTest, TheIdentityOfOneCallDoesNotLeakIntoTheNext) {
  // gRPC's AuthContext is per connection; ServerAuth must not use it to carry tokens.
  Start(Options(TlsServerOptions::ClientCerts::kOptional));
  auto channel =
      grpc::CreateChannel(server_->address(), *ClientCredentials(server_->address(), Client()));
  auto stub = AuthTest::NewStub(channel);
  TokenClaims a;
  a.subject = "alice";
  TokenClaims b;
  b.subject = "bob";
  auto call = [&](const std::string& token, EchoResponse* who) {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    return stub->WhoAmI(&ctx, EchoRequest(), who);
  };
  EchoResponse who;
  ASSERT_TRUE(call(Token(a), &who).ok());
  EXPECT_EQ(who.subject(), "alice");
  EXPECT_EQ(call("", &who).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  ASSERT_TRUE(call(Token(b), &who).ok());
  EXPECT_EQ(who.subject(), "bob");
  EXPECT_EQ(who.roles_size(), 0);
}

TEST_F(MtlsTest, PlaintextOnLoopback) {
  ServerAuthOptions o = Options(TlsServerOptions::ClientCerts::kOptional);
  o.tls = TlsServerOptions();
  o.worker_ca_file.clear();
  Start(std::move(o));
  TokenClaims c;
  c.subject = "dev";
  c.write_scopes = {"*"};
  // ClientCredentials sends the token over local credentials.
  ClientAuthOptions plain;
  plain.token = Token(c);
  auto stub = Stub(plain);
  EchoResponse who;
  grpc::Status s = Call(stub.get(), "Write", "main", &who);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(who.subject(), "dev");
  // What Bazel does with grpc:// and --remote_header: the header on a plain channel.
  auto raw = AuthTest::NewStub(
      grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer " + Token(c));
  ASSERT_TRUE(raw->WhoAmI(&ctx, EchoRequest(), &who).ok());
  EXPECT_EQ(who.subject(), "dev");
  // And nothing without it.
  EXPECT_EQ(Call(raw.get(), "WhoAmI").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Call(raw.get(), "Public").ok());
}

TEST_F(MtlsTest, PlaintextBeyondLoopbackOnlyWhenInsecure) {
  ServerAuthOptions o = Options(TlsServerOptions::ClientCerts::kOptional);
  o.tls = TlsServerOptions();
  o.worker_ca_file.clear();
  auto sa = ServerAuth::Create(o);
  ASSERT_TRUE(sa.ok()) << sa.status();
  auto creds = (*sa)->Credentials("0.0.0.0:0");
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(creds.status().message(),
              HasSubstr("refusing to serve plaintext on 0.0.0.0:0 (not a loopback address): give "
                        "--tls-cert and --tls-key"));
  EXPECT_THAT(creds.status().message(), HasSubstr("--insecure"));

  // With insecure: served, and the per-call check still runs.
  o.insecure = true;
  auto insecure = ServerAuth::Create(o);
  ASSERT_TRUE(insecure.ok());
  auth_ = std::shared_ptr<const ServerAuth>(*std::move(insecure));
  auto server = AuthTestServer::Start(auth_, "0.0.0.0:0");
  ASSERT_TRUE(server.ok()) << server.status();
  auto raw = AuthTest::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  EXPECT_EQ(Call(raw.get(), "WhoAmI").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Call(raw.get(), "Public").ok());

  // A client never sends a token in plaintext beyond loopback.
  ClientAuthOptions c;
  c.token = "x.y.z";
  c.insecure = true;
  auto cc = ClientCredentials("10.1.2.3:9092", c);
  ASSERT_FALSE(cc.ok());
  EXPECT_THAT(cc.status().message(), HasSubstr("not sending a bearer token to 10.1.2.3:9092"));
  c.token.clear();
  c.insecure = false;
  cc = ClientCredentials("sched.farm.internal:9091", c);
  ASSERT_FALSE(cc.ok());
  EXPECT_EQ(cc.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(cc.status().message(), HasSubstr("give --tls-ca"));
}

TEST_F(MtlsTest, AllowAllLetsAnyoneInAsAnonymous) {
  auth_ = ServerAuth::AllowAll();
  auto server = AuthTestServer::Start(auth_);
  ASSERT_TRUE(server.ok()) << server.status();
  auto raw = AuthTest::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  EchoResponse who;
  grpc::Status s = Call(raw.get(), "Admin", "main", &who);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(who.subject(), "");
  EXPECT_FALSE(ServerAuth::AllowAll()->Credentials("0.0.0.0:0").ok());
  EXPECT_TRUE(ServerAuth::AllowAll(/*insecure=*/true)->Credentials("0.0.0.0:0").ok());
}

TEST_F(MtlsTest, ServerAuthChecksItsFiles) {
  ServerAuthOptions o = Options(TlsServerOptions::ClientCerts::kOptional);
  o.tls.client_ca_file = F("ca.crt");  // without the worker CA
  auto sa = ServerAuth::Create(o);
  ASSERT_FALSE(sa.ok());
  EXPECT_THAT(sa.status().message(), HasSubstr("is not among the client CAs"));
  o = Options(TlsServerOptions::ClientCerts::kOptional);
  o.tls.key_file = F("workers/w1.key");
  sa = ServerAuth::Create(o);
  ASSERT_FALSE(sa.ok());
  EXPECT_THAT(sa.status().message(), HasSubstr(absl::StrCat("TLS key ", F("workers/w1.key"),
                                                            " does not match the certificate ",
                                                            F("servers/farm-test.crt"))));
  o = Options(TlsServerOptions::ClientCerts::kOptional);
  o.tokens.key_file = F("jwt/signing.key");
  sa = ServerAuth::Create(o);
  ASSERT_FALSE(sa.ok());
  EXPECT_THAT(sa.status().message(), HasSubstr("a private key; servers need only the public key"));
  o = Options(TlsServerOptions::ClientCerts::kOptional);
  o.authorizer = nullptr;
  EXPECT_FALSE(ServerAuth::Create(o).ok());
}

}  // namespace
}  // namespace auth
}  // namespace farm
