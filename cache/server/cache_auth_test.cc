// farm-cache behind ServerAuth with CacheAuthRules (issue 12), over a real loopback channel:
// who may read and write which action-cache scope, CacheAdmin for admins only, and the errors
// the refused get. TLS and worker certificates are auth/mtls_test's; here, tokens.
#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>

#include "auth/grpc_auth.h"
#include "auth/jwk.h"
#include "auth/jwt.h"
#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cache/action_result_refs.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/server/cache_server.h"
#include "common/fs.h"
#include "farm/v1/cache.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache::server {
namespace {

namespace reapi = build::bazel::remote::execution::v2;
using ::testing::HasSubstr;

class CacheAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("cache-auth");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    ASSERT_NE(raw, nullptr);
    auto key = auth::SigningKey::FromEvp(std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free));
    ASSERT_TRUE(key.ok()) << key.status();
    key_ = std::make_unique<auth::SigningKey>(*std::move(key));
    std::string keys = tmp_->path() + "/token-keys.pem";
    ASSERT_TRUE(common::WriteFileAtomic(keys, key_->PublicKeyPem()).ok());

    RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cache");
    o.max_size = 64 << 20;
    auto store = RocksDbBlobStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    cas_ = *std::move(store);
    auto ac = RocksDbActionCache::Create(cas_);
    ASSERT_TRUE(ac.ok());

    auth::ServerAuthOptions sec;
    sec.tokens.key_file = keys;
    sec.authorizer = CacheAuthRules();
    sec.log = [this](absl::string_view line) { log_.emplace_back(line); };
    auto sa = auth::ServerAuth::Create(std::move(sec));
    ASSERT_TRUE(sa.ok()) << sa.status();

    CacheServerOptions so;
    so.cas = cas_;
    so.action_cache = *std::move(ac);
    so.admin = cas_;
    so.fallback_scopes = {"main"};
    so.auth = *std::move(sa);
    auto server = CacheServer::Start(std::move(so));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  std::string Mint(std::vector<std::string> read, std::vector<std::string> write,
                   std::vector<std::string> roles = {}, absl::Time issued = absl::Now()) {
    auth::TokenClaims c;
    c.subject = "test";
    c.read_scopes = std::move(read);
    c.write_scopes = std::move(write);
    c.roles = std::move(roles);
    c.lifetime = absl::Hours(1);
    auto t = auth::MintToken(*key_, c, issued);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }

  // A channel carrying `token` (none if empty), as farm's clients make it.
  std::shared_ptr<grpc::Channel> Channel(const std::string& token) {
    auth::ClientAuthOptions c;
    c.token = token;
    auto creds = auth::ClientCredentials(server_->address(), c);
    EXPECT_TRUE(creds.ok()) << creds.status();
    return grpc::CreateChannel(server_->address(), *creds);
  }

  // Stores a blob (with an admin token) and returns an ActionResult naming it.
  std::string ResultNaming(const std::string& content) {
    auto d = cas_->Put(content);
    EXPECT_TRUE(d.ok());
    reapi::ActionResult r;
    auto* f = r.add_output_files();
    f->set_path("out");
    ToProto(*d, f->mutable_digest());
    r.set_exit_code(0);
    return r.SerializeAsString();
  }

  grpc::Status Update(const std::shared_ptr<grpc::Channel>& ch, const std::string& instance,
                      const std::string& action, const std::string& result) {
    auto stub = reapi::ActionCache::NewStub(ch);
    reapi::UpdateActionResultRequest req;
    req.set_instance_name(instance);
    ToProto(common::DigestOf(action), req.mutable_action_digest());
    req.mutable_action_result()->ParseFromString(result);
    reapi::ActionResult out;
    grpc::ClientContext ctx;
    return stub->UpdateActionResult(&ctx, req, &out);
  }

  grpc::Status Get(const std::shared_ptr<grpc::Channel>& ch, const std::string& instance,
                   const std::string& action) {
    auto stub = reapi::ActionCache::NewStub(ch);
    reapi::GetActionResultRequest req;
    req.set_instance_name(instance);
    ToProto(common::DigestOf(action), req.mutable_action_digest());
    reapi::ActionResult out;
    grpc::ClientContext ctx;
    return stub->GetActionResult(&ctx, req, &out);
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::unique_ptr<auth::SigningKey> key_;
  std::shared_ptr<RocksDbBlobStore> cas_;
  std::unique_ptr<CacheServer> server_;
  std::vector<std::string> log_;
};

TEST_F(CacheAuthTest, NoTokenIsUnauthenticatedButCapabilitiesAnswerAnyone) {
  auto anonymous = Channel("");
  grpc::Status s = Get(anonymous, "main", "a");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("token"));

  auto caps = reapi::Capabilities::NewStub(anonymous);
  reapi::GetCapabilitiesRequest req;
  reapi::ServerCapabilities resp;
  grpc::ClientContext ctx;
  EXPECT_TRUE(caps->GetCapabilities(&ctx, req, &resp).ok());

  // Expired, and signed by another key.
  s = Get(Channel(Mint({"*"}, {"*"}, {}, absl::Now() - absl::Hours(2))), "main", "a");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("expired"));
  EVP_PKEY* raw = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  auto other = auth::SigningKey::FromEvp(std::shared_ptr<EVP_PKEY>(raw, EVP_PKEY_free));
  ASSERT_TRUE(other.ok());
  auth::TokenClaims c;
  c.subject = "mallory";
  c.read_scopes = {"*"};
  auto forged = auth::MintToken(*other, c, absl::Now());
  ASSERT_TRUE(forged.ok());
  s = Get(Channel(*forged), "main", "a");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
}

TEST_F(CacheAuthTest, APrTokenReadsMainButWritesOnlyItsOwnScope) {
  auto ci_main = Channel(Mint({"main"}, {"main"}));
  auto pr = Channel(Mint({"main", "pr/*"}, {"pr/*"}));
  std::string result = ResultNaming("layer bytes");

  ASSERT_TRUE(Update(ci_main, "main", "step", result).ok());
  grpc::Status s = Update(pr, "main", "poison", result);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("main"));
  EXPECT_EQ(Get(ci_main, "main", "poison").error_code(), grpc::StatusCode::NOT_FOUND);

  // pr/1 reads its own scope, then main through the fallback.
  EXPECT_TRUE(Get(pr, "pr/1", "step").ok());
  EXPECT_TRUE(Update(pr, "pr/1", "pr-step", result).ok());
  EXPECT_TRUE(Get(pr, "pr/1", "pr-step").ok());
  // main's token cannot read pr/1 at all, and a token without main's read right does not get
  // main's entries through the fallback.
  EXPECT_EQ(Get(ci_main, "pr/1", "pr-step").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto isolated = Channel(Mint({"pr/*"}, {"pr/*"}));
  EXPECT_EQ(Get(isolated, "pr/2", "step").error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CacheAuthTest, GcAndStatsNeedTheAdminRole) {
  auto user = farm::v1::CacheAdmin::NewStub(Channel(Mint({"*"}, {"*"})));
  auto admin = farm::v1::CacheAdmin::NewStub(Channel(Mint({}, {}, {"admin"})));
  farm::v1::GcRequest gc;
  gc.set_max_size(32 << 20);
  farm::v1::GcResponse out;
  {
    grpc::ClientContext ctx;
    grpc::Status s = user->Gc(&ctx, gc, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("admin"));
  }
  {
    grpc::ClientContext ctx;
    farm::v1::GetStatsRequest req;
    farm::v1::CacheStats stats;
    EXPECT_EQ(user->GetStats(&ctx, req, &stats).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    grpc::Status s = admin->Gc(&ctx, gc, &out);
    EXPECT_TRUE(s.ok()) << s.error_message();
  }
}

TEST_F(CacheAuthTest, BlobsNeedATokenThatMayReadOrWriteTheInstance) {
  std::string data = "blob";
  reapi::BatchUpdateBlobsRequest req;
  req.set_instance_name("main");
  auto* r = req.add_requests();
  ToProto(common::DigestOf(data), r->mutable_digest());
  r->set_data(data);
  reapi::BatchUpdateBlobsResponse resp;
  {
    auto reader = reapi::ContentAddressableStorage::NewStub(Channel(Mint({"main"}, {})));
    grpc::ClientContext ctx;
    EXPECT_EQ(reader->BatchUpdateBlobs(&ctx, req, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    auto writer = reapi::ContentAddressableStorage::NewStub(Channel(Mint({"main"}, {"main"})));
    grpc::ClientContext ctx;
    EXPECT_TRUE(writer->BatchUpdateBlobs(&ctx, req, &resp).ok());
  }
}

TEST_F(CacheAuthTest, DiffIdsNeedATokenThatMayReadTheInstance) {
  ASSERT_TRUE(cas_->Put("layer").ok());
  farm::v1::GetDiffIdsRequest req;
  req.set_instance_name("main");
  ToProto(common::DigestOf("layer"), req.add_digests());
  farm::v1::GetDiffIdsResponse resp;
  {
    // May write main, and read only pr/1: not a reader of main.
    auto writer = farm::v1::LayerInfo::NewStub(Channel(Mint({"pr/1"}, {"main"})));
    grpc::ClientContext ctx;
    grpc::Status s = writer->GetDiffIds(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  {
    auto reader = farm::v1::LayerInfo::NewStub(Channel(Mint({"main"}, {})));
    grpc::ClientContext ctx;
    grpc::Status s = reader->GetDiffIds(&ctx, req, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(resp.responses_size(), 1);
    EXPECT_EQ(resp.responses(0).status().code(), 0);
    EXPECT_EQ(resp.responses(0).compression(), farm::v1::LAYER_COMPRESSION_NONE);
    EXPECT_EQ(resp.responses(0).diff_id().hash(), common::DigestOf("layer").hash);
  }
}

}  // namespace
}  // namespace farm::cache::server
