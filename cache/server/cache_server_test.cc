// The REAPI services in-process over a real loopback channel: behaviour and the status codes of
// reapi.md §5.
#include "cache/server/cache_server.h"

#include <grpcpp/grpcpp.h>

#include "build/bazel/remote/execution/v2/remote_execution.grpc.pb.h"
#include "cache/action_result_refs.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/testing/test_util.h"
#include "common/fs.h"
#include "farm/v1/cache.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/bytestream/bytestream.grpc.pb.h"
#include "gtest/gtest.h"

namespace farm::cache::server {
namespace {

namespace reapi = build::bazel::remote::execution::v2;
namespace bs = google::bytestream;
using ::farm::cache::testing::RandomBytes;
using ::testing::HasSubstr;

class CacheServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}, {}); }

  void Start(std::vector<std::string> fallback, std::vector<std::string> instances) {
    server_.reset();
    auto tmp = common::TempDir::Create("cache-server");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cache");
    o.max_size = 256 << 20;
    auto store = RocksDbBlobStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    cas_ = *std::move(store);
    auto ac = RocksDbActionCache::Create(cas_);
    ASSERT_TRUE(ac.ok());
    CacheServerOptions so;
    so.cas = cas_;
    so.action_cache = *std::move(ac);
    so.admin = cas_;
    so.fallback_scopes = std::move(fallback);
    so.instance_names = std::move(instances);
    so.max_batch_total_size = 1 << 20;
    so.max_upload_claims_per_client = max_claims_;
    registry_ = std::make_unique<common::metrics::Registry>();
    so.metrics = registry_.get();
    auto server = CacheServer::Start(std::move(so));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto channel = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    caps_ = reapi::Capabilities::NewStub(channel);
    cas_stub_ = reapi::ContentAddressableStorage::NewStub(channel);
    ac_stub_ = reapi::ActionCache::NewStub(channel);
    bs_ = bs::ByteStream::NewStub(channel);
    admin_ = farm::v1::CacheAdmin::NewStub(channel);
  }

  int64_t max_claims_ = 0;  // CacheServerOptions::max_upload_claims_per_client for Start
  static reapi::Digest D(const std::string& data) {
    reapi::Digest d;
    ToProto(common::DigestOf(data), &d);
    return d;
  }
  static std::string BlobName(const reapi::Digest& d, const std::string& instance = "") {
    return absl::StrCat(instance.empty() ? "" : instance + "/", "blobs/", d.hash(), "/",
                        d.size_bytes());
  }
  static std::string UploadName(const reapi::Digest& d, const std::string& uuid = "u-1") {
    return absl::StrCat("uploads/", uuid, "/blobs/", d.hash(), "/", d.size_bytes());
  }

  // Writes `data` over ByteStream in `chunk`-byte messages; returns the status and committed.
  grpc::Status Write(const std::string& name, const std::string& data, size_t chunk,
                     int64_t* committed, int64_t first_offset = 0, bool finish = true) {
    grpc::ClientContext ctx;
    bs::WriteResponse resp;
    auto w = bs_->Write(&ctx, &resp);
    size_t off = static_cast<size_t>(first_offset);
    bool first = true;
    do {
      bs::WriteRequest req;
      if (first) req.set_resource_name(name);
      first = false;
      req.set_write_offset(static_cast<int64_t>(off));
      size_t n = std::min(chunk, data.size() - off);
      req.set_data(data.substr(off, n));
      off += n;
      req.set_finish_write(finish && off == data.size());
      if (!w->Write(req)) break;
    } while (off < data.size());
    w->WritesDone();
    grpc::Status s = w->Finish();
    if (committed) *committed = resp.committed_size();
    return s;
  }

  grpc::Status Read(const std::string& name, int64_t offset, int64_t limit, std::string* out) {
    grpc::ClientContext ctx;
    bs::ReadRequest req;
    req.set_resource_name(name);
    req.set_read_offset(offset);
    req.set_read_limit(limit);
    auto r = bs_->Read(&ctx, req);
    bs::ReadResponse resp;
    out->clear();
    while (r->Read(&resp)) out->append(resp.data());
    return r->Finish();
  }

  void PutBlob(const std::string& data) { ASSERT_TRUE(cas_->Put(data).ok()); }

  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<RocksDbBlobStore> cas_;
  std::unique_ptr<common::metrics::Registry> registry_;  // outlives server_
  std::unique_ptr<CacheServer> server_;
  std::unique_ptr<reapi::Capabilities::Stub> caps_;
  std::unique_ptr<reapi::ContentAddressableStorage::Stub> cas_stub_;
  std::unique_ptr<reapi::ActionCache::Stub> ac_stub_;
  std::unique_ptr<bs::ByteStream::Stub> bs_;
  std::unique_ptr<farm::v1::CacheAdmin::Stub> admin_;
};

TEST_F(CacheServerTest, CapabilitiesSatisfyBazel) {
  grpc::ClientContext ctx;
  reapi::ServerCapabilities caps;
  ASSERT_TRUE(caps_->GetCapabilities(&ctx, reapi::GetCapabilitiesRequest(), &caps).ok());
  EXPECT_THAT(caps.cache_capabilities().digest_functions(),
              ::testing::ElementsAre(reapi::DigestFunction::SHA256));
  EXPECT_TRUE(caps.cache_capabilities().action_cache_update_capabilities().update_enabled());
  EXPECT_EQ(caps.cache_capabilities().max_batch_total_size_bytes(), 1 << 20);
  EXPECT_EQ(caps.low_api_version().major(), 2);
  EXPECT_EQ(caps.low_api_version().minor(), 0);
  EXPECT_EQ(caps.high_api_version().major(), 2);
  EXPECT_GE(caps.high_api_version().minor(), 0);
  EXPECT_FALSE(caps.has_deprecated_api_version());
}

TEST_F(CacheServerTest, FindMissingEchoesDigestsAndNeverReportsTheEmptyBlob) {
  PutBlob("present");
  reapi::FindMissingBlobsRequest req;
  *req.add_blob_digests() = D("absent-1");
  *req.add_blob_digests() = D("present");
  *req.add_blob_digests() = D("");
  *req.add_blob_digests() = D("absent-2");
  reapi::FindMissingBlobsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(cas_stub_->FindMissingBlobs(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.missing_blob_digests_size(), 2);
  EXPECT_EQ(resp.missing_blob_digests(0).SerializeAsString(), D("absent-1").SerializeAsString());
  EXPECT_EQ(resp.missing_blob_digests(1).SerializeAsString(), D("absent-2").SerializeAsString());
}

TEST_F(CacheServerTest, StatusCodesForBadInput) {
  struct Case {
    std::string what;
    grpc::StatusCode want;
    std::function<grpc::Status()> call;
  };
  reapi::Digest bad_hash;
  bad_hash.set_hash("ABC");
  bad_hash.set_size_bytes(3);
  reapi::Digest negative = D("x");
  negative.set_size_bytes(-1);
  std::string big(600 << 10, 'b');
  std::vector<Case> cases = {
      {"FindMissing bad hash", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::FindMissingBlobsRequest r;
         *r.add_blob_digests() = bad_hash;
         reapi::FindMissingBlobsResponse out;
         grpc::ClientContext c;
         return cas_stub_->FindMissingBlobs(&c, r, &out);
       }},
      {"FindMissing negative size", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::FindMissingBlobsRequest r;
         *r.add_blob_digests() = negative;
         reapi::FindMissingBlobsResponse out;
         grpc::ClientContext c;
         return cas_stub_->FindMissingBlobs(&c, r, &out);
       }},
      {"FindMissing SHA1", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::FindMissingBlobsRequest r;
         r.set_digest_function(reapi::DigestFunction::SHA1);
         reapi::FindMissingBlobsResponse out;
         grpc::ClientContext c;
         return cas_stub_->FindMissingBlobs(&c, r, &out);
       }},
      {"FindMissing reserved instance", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::FindMissingBlobsRequest r;
         r.set_instance_name("a/blobs");
         reapi::FindMissingBlobsResponse out;
         grpc::ClientContext c;
         return cas_stub_->FindMissingBlobs(&c, r, &out);
       }},
      {"BatchUpdate oversized", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::BatchUpdateBlobsRequest r;
         for (int i = 0; i < 2; ++i) {
           auto* q = r.add_requests();
           *q->mutable_digest() = D(big + char('0' + i));
           q->set_data(big + char('0' + i));
         }
         reapi::BatchUpdateBlobsResponse out;
         grpc::ClientContext c;
         return cas_stub_->BatchUpdateBlobs(&c, r, &out);
       }},
      {"BatchRead oversized", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::BatchReadBlobsRequest r;
         reapi::Digest d = D("x");
         d.set_size_bytes(2 << 20);
         *r.add_digests() = d;
         reapi::BatchReadBlobsResponse out;
         grpc::ClientContext c;
         return cas_stub_->BatchReadBlobs(&c, r, &out);
       }},
      {"GetActionResult absent", grpc::StatusCode::NOT_FOUND,
       [&] {
         reapi::GetActionResultRequest r;
         *r.mutable_action_digest() = D("action");
         reapi::ActionResult out;
         grpc::ClientContext c;
         return ac_stub_->GetActionResult(&c, r, &out);
       }},
      {"GetActionResult bad digest", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::GetActionResultRequest r;
         *r.mutable_action_digest() = bad_hash;
         reapi::ActionResult out;
         grpc::ClientContext c;
         return ac_stub_->GetActionResult(&c, r, &out);
       }},
      {"UpdateActionResult names a missing blob", grpc::StatusCode::FAILED_PRECONDITION,
       [&] {
         reapi::UpdateActionResultRequest r;
         *r.mutable_action_digest() = D("action");
         auto* f = r.mutable_action_result()->add_output_files();
         f->set_path("out");
         *f->mutable_digest() = D("not uploaded");
         reapi::ActionResult out;
         grpc::ClientContext c;
         return ac_stub_->UpdateActionResult(&c, r, &out);
       }},
      {"UpdateActionResult bad output digest", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         reapi::UpdateActionResultRequest r;
         *r.mutable_action_digest() = D("action");
         *r.mutable_action_result()->add_output_files()->mutable_digest() = bad_hash;
         reapi::ActionResult out;
         grpc::ClientContext c;
         return ac_stub_->UpdateActionResult(&c, r, &out);
       }},
      {"Read absent", grpc::StatusCode::NOT_FOUND,
       [&] {
         std::string out;
         return Read(BlobName(D("absent")), 0, 0, &out);
       }},
      {"Read offset beyond size", grpc::StatusCode::OUT_OF_RANGE,
       [&] {
         std::string out;
         return Read(BlobName(D("present")), 8, 0, &out);
       }},
      {"Read negative offset", grpc::StatusCode::OUT_OF_RANGE,
       [&] {
         std::string out;
         return Read(BlobName(D("present")), -1, 0, &out);
       }},
      {"Read negative limit", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         std::string out;
         return Read(BlobName(D("present")), 0, -1, &out);
       }},
      {"Read compressed", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         std::string out;
         reapi::Digest d = D("present");
         return Read(absl::StrCat("compressed-blobs/zstd/", d.hash(), "/", d.size_bytes()), 0, 0,
                     &out);
       }},
      {"Read malformed names", grpc::StatusCode::INVALID_ARGUMENT,
       [&] {
         std::string out;
         for (const char* name :
              {"", "blobs", "blobs/abc/3", "blobs/" /* no hash */,
               "x//blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0",
               "blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/-1",
               "blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/zero",
               "blobs/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0/extra",
               "blobs/blake3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0"}) {
           grpc::Status s = Read(name, 0, 0, &out);
           if (s.error_code() != grpc::StatusCode::INVALID_ARGUMENT) {
             return grpc::Status(grpc::StatusCode::UNKNOWN,
                                 absl::StrCat("for \"", name, "\": ", s.error_message()));
           }
         }
         return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "all invalid");
       }},
      {"Write hash mismatch", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return Write(UploadName(D("right")), "wrong", 16, nullptr); }},
      {"Write too long", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return Write(UploadName(D("abc")), "abcd", 16, nullptr); }},
      {"Write wrong offset", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return Write(UploadName(D("abcdef")), "abcdef", 2, nullptr, /*first_offset=*/2); }},
      {"Write malformed name", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return Write("uploads/u/blobs/nothex/3", "abc", 16, nullptr); }},
      {"Write no name", grpc::StatusCode::INVALID_ARGUMENT,
       [&] { return Write("", "abc", 16, nullptr); }},
      {"QueryWriteStatus unknown upload", grpc::StatusCode::NOT_FOUND,
       [&] {
         bs::QueryWriteStatusRequest r;
         r.set_resource_name(UploadName(D("never"), "u-9"));
         bs::QueryWriteStatusResponse out;
         grpc::ClientContext c;
         return bs_->QueryWriteStatus(&c, r, &out);
       }},
      {"ReleaseLease unknown", grpc::StatusCode::NOT_FOUND,
       [&] {
         farm::v1::ReleaseLeaseRequest r;
         r.set_lease_id("nope");
         farm::v1::ReleaseLeaseResponse out;
         grpc::ClientContext c;
         return admin_->ReleaseLease(&c, r, &out);
       }},
  };
  PutBlob("present");
  for (const Case& c : cases) {
    grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), c.want) << c.what << ": " << s.error_message();
  }
}

TEST_F(CacheServerTest, UnknownInstanceWhenInstancesAreListed) {
  Start({}, {"main", "pr/1"});
  grpc::ClientContext ctx;
  reapi::GetCapabilitiesRequest req;
  req.set_instance_name("other");
  reapi::ServerCapabilities caps;
  grpc::Status s = caps_->GetCapabilities(&ctx, req, &caps);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("unknown instance name \"other\""));
  std::string out;
  EXPECT_EQ(Read(BlobName(D("x"), "other"), 0, 0, &out).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx2;
  req.set_instance_name("pr/1");
  EXPECT_TRUE(caps_->GetCapabilities(&ctx2, req, &caps).ok());
}

TEST_F(CacheServerTest, BatchUpdateAndReadReportPerBlob) {
  reapi::BatchUpdateBlobsRequest req;
  auto* a = req.add_requests();
  *a->mutable_digest() = D("alpha");
  a->set_data("alpha");
  auto* b = req.add_requests();
  *b->mutable_digest() = D("beta");
  b->set_data("BETA");
  auto* c = req.add_requests();
  *c->mutable_digest() = D("gamma");
  c->set_data("gamma");
  c->set_compressor(reapi::Compressor::ZSTD);
  reapi::BatchUpdateBlobsResponse resp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(cas_stub_->BatchUpdateBlobs(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.responses_size(), 3);
  EXPECT_EQ(resp.responses(0).status().code(), 0);
  EXPECT_EQ(resp.responses(1).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(resp.responses(2).status().code(), grpc::StatusCode::INVALID_ARGUMENT);

  reapi::BatchReadBlobsRequest rreq;
  *rreq.add_digests() = D("alpha");
  *rreq.add_digests() = D("beta");
  reapi::BatchReadBlobsResponse rresp;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(cas_stub_->BatchReadBlobs(&ctx2, rreq, &rresp).ok());
  ASSERT_EQ(rresp.responses_size(), 2);
  EXPECT_EQ(rresp.responses(0).data(), "alpha");
  EXPECT_EQ(rresp.responses(0).status().code(), 0);
  EXPECT_EQ(rresp.responses(1).status().code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CacheServerTest, UploadClaimsAreBoundedPerClient) {
  max_claims_ = 300000;
  Start({}, {});
  std::string big = RandomBytes(400000, 5), small = RandomBytes(200000, 6);
  int64_t committed = 0;
  grpc::Status s = Write(UploadName(D(big)), big, 16 << 10, &committed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_NE(s.error_message().find("limit per client is 300000"), std::string::npos)
      << s.error_message();
  // Within the limit, and again afterwards: finished uploads give their claim back.
  ASSERT_TRUE(Write(UploadName(D(small)), small, 16 << 10, &committed).ok());
  std::string small2 = RandomBytes(200000, 7);
  s = Write(UploadName(D(small2), "u-2"), small2, 16 << 10, &committed);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(CacheServerTest, ByteStreamWriteReadWithInstancesAndOffsets) {
  std::string data = RandomBytes(200000, 3);
  reapi::Digest d = D(data);
  int64_t committed = 0;
  // Bazel's shape: 16 KiB messages, the name only on the first.
  grpc::Status s = Write("team/a/" + UploadName(d), data, 16 << 10, &committed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(committed, 200000);
  std::string out;
  ASSERT_TRUE(Read(BlobName(d, "team/a"), 0, 0, &out).ok());
  EXPECT_EQ(out, data);
  ASSERT_TRUE(Read(BlobName(d), 12345, 0, &out).ok());
  EXPECT_EQ(out, data.substr(12345));
  ASSERT_TRUE(Read(BlobName(d), 100, 1000, &out).ok());
  EXPECT_EQ(out, data.substr(100, 1000));
  ASSERT_TRUE(Read(BlobName(d), 200000, 0, &out).ok());
  EXPECT_EQ(out, "");
  // The empty blob reads as an empty OK stream.
  ASSERT_TRUE(Read(BlobName(D("")), 0, 0, &out).ok());
  EXPECT_EQ(out, "");
  // Writing it again is answered at once with the full size.
  s = Write(UploadName(d, "u-2"), data, 16 << 10, &committed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(committed, 200000);
  bs::QueryWriteStatusRequest q;
  q.set_resource_name(UploadName(d, "u-3"));
  bs::QueryWriteStatusResponse qr;
  grpc::ClientContext ctx;
  ASSERT_TRUE(bs_->QueryWriteStatus(&ctx, q, &qr).ok());
  EXPECT_TRUE(qr.complete());
  EXPECT_EQ(qr.committed_size(), 200000);
}

TEST_F(CacheServerTest, InterruptedWriteResumesFromQueryWriteStatus) {
  std::string data = RandomBytes(3 << 20, 4);  // a large (chunked) blob
  reapi::Digest d = D(data);
  const std::string name = UploadName(d, "resume-me");
  const std::string half = data.substr(0, 1 << 20);
  // A stream that ends without finish_write.
  grpc::Status s = Write(name, half, 64 << 10, nullptr, 0, /*finish=*/false);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("without finish_write"));
  bs::QueryWriteStatusRequest q;
  q.set_resource_name(name);
  bs::QueryWriteStatusResponse qr;
  grpc::ClientContext ctx;
  ASSERT_TRUE(bs_->QueryWriteStatus(&ctx, q, &qr).ok());
  EXPECT_FALSE(qr.complete());
  EXPECT_EQ(qr.committed_size(), 1 << 20);
  int64_t committed = 0;
  s = Write(name, data, 64 << 10, &committed, /*first_offset=*/1 << 20);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(committed, 3 << 20);
  std::string out;
  ASSERT_TRUE(Read(BlobName(d), 0, 0, &out).ok());
  EXPECT_EQ(out, data);
}

TEST_F(CacheServerTest, ActionCacheScopesAndFallback) {
  Start({"main"}, {});
  PutBlob("output");
  reapi::UpdateActionResultRequest up;
  up.set_instance_name("main");
  *up.mutable_action_digest() = D("action");
  auto* f = up.mutable_action_result()->add_output_files();
  f->set_path("out");
  *f->mutable_digest() = D("output");
  reapi::ActionResult stored;
  grpc::ClientContext ctx;
  ASSERT_TRUE(ac_stub_->UpdateActionResult(&ctx, up, &stored).ok());
  EXPECT_EQ(stored.SerializeAsString(), up.action_result().SerializeAsString());

  auto get = [&](const std::string& instance, reapi::ActionResult* out) {
    reapi::GetActionResultRequest r;
    r.set_instance_name(instance);
    *r.mutable_action_digest() = D("action");
    grpc::ClientContext c;
    return ac_stub_->GetActionResult(&c, r, out);
  };
  reapi::ActionResult got;
  ASSERT_TRUE(get("main", &got).ok());
  EXPECT_EQ(got.SerializeAsString(), up.action_result().SerializeAsString());
  ASSERT_TRUE(get("pr/7", &got).ok());  // falls back to main
  // pr/7 writes its own scope only.
  up.set_instance_name("pr/7");
  up.mutable_action_result()->set_exit_code(0);
  up.mutable_action_result()->mutable_output_files(0)->set_is_executable(true);
  grpc::ClientContext ctx2;
  ASSERT_TRUE(ac_stub_->UpdateActionResult(&ctx2, up, &stored).ok());
  ASSERT_TRUE(get("pr/7", &got).ok());
  EXPECT_TRUE(got.output_files(0).is_executable());
  ASSERT_TRUE(get("main", &got).ok());
  EXPECT_FALSE(got.output_files(0).is_executable());

  // Lookups are counted per scope asked for: main 2 hits; pr/7 2 hits (one through the
  // fallback) and, for another action, a miss.
  reapi::GetActionResultRequest r;
  r.set_instance_name("pr/7");
  *r.mutable_action_digest() = D("another action");
  grpc::ClientContext c;
  EXPECT_EQ(ac_stub_->GetActionResult(&c, r, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  const std::string text = registry_->TextExposition();
  EXPECT_THAT(
      text, HasSubstr("farm_cache_action_cache_requests_total{scope=\"main\",result=\"hit\"} 2\n"));
  EXPECT_THAT(
      text, HasSubstr("farm_cache_action_cache_requests_total{scope=\"pr/7\",result=\"hit\"} 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr("farm_cache_action_cache_requests_total{scope=\"pr/7\",result=\"miss\"} 1\n"));
}

TEST_F(CacheServerTest, GetTreePagesBreadthFirst) {
  // root -> a -> c, root -> b
  reapi::Directory c, a, b, root;
  c.add_files()->set_name("c.txt");
  std::string cs = c.SerializeAsString();
  PutBlob(cs);
  auto* an = a.add_directories();
  an->set_name("c");
  *an->mutable_digest() = D(cs);
  std::string as = a.SerializeAsString();
  PutBlob(as);
  b.add_files()->set_name("b.txt");
  std::string bsr = b.SerializeAsString();
  PutBlob(bsr);
  auto* ra = root.add_directories();
  ra->set_name("a");
  *ra->mutable_digest() = D(as);
  auto* rb = root.add_directories();
  rb->set_name("b");
  *rb->mutable_digest() = D(bsr);
  std::string rs = root.SerializeAsString();
  PutBlob(rs);

  reapi::GetTreeRequest req;
  *req.mutable_root_digest() = D(rs);
  req.set_page_size(2);
  grpc::ClientContext ctx;
  auto stream = cas_stub_->GetTree(&ctx, req);
  reapi::GetTreeResponse page;
  std::vector<int> sizes;
  std::vector<std::string> tokens;
  std::vector<std::string> dirs;
  while (stream->Read(&page)) {
    sizes.push_back(page.directories_size());
    tokens.push_back(page.next_page_token());
    for (const auto& d : page.directories()) dirs.push_back(d.SerializeAsString());
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_THAT(sizes, ::testing::ElementsAre(2, 2));
  EXPECT_THAT(tokens, ::testing::ElementsAre("2", ""));
  EXPECT_THAT(dirs, ::testing::ElementsAre(rs, as, bsr, cs));
  // Resuming from a token.
  req.set_page_token("3");
  grpc::ClientContext ctx2;
  stream = cas_stub_->GetTree(&ctx2, req);
  dirs.clear();
  while (stream->Read(&page)) {
    for (const auto& d : page.directories()) dirs.push_back(d.SerializeAsString());
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_THAT(dirs, ::testing::ElementsAre(cs));
  // An absent root.
  *req.mutable_root_digest() = D("no such directory");
  req.clear_page_token();
  grpc::ClientContext ctx3;
  stream = cas_stub_->GetTree(&ctx3, req);
  while (stream->Read(&page)) {
  }
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CacheServerTest, AdminLeasesStatsAndGc) {
  PutBlob("pinned");
  farm::v1::AcquireLeaseRequest lr;
  *lr.add_digests() = D("pinned");
  *lr.add_digests() = D("absent");
  lr.mutable_ttl()->set_seconds(600);
  farm::v1::AcquireLeaseResponse lresp;
  grpc::ClientContext ctx;
  ASSERT_TRUE(admin_->AcquireLease(&ctx, lr, &lresp).ok());
  ASSERT_EQ(lresp.missing_size(), 1);
  EXPECT_EQ(lresp.missing(0).hash(), D("absent").hash());
  EXPECT_FALSE(lresp.lease_id().empty());

  farm::v1::CacheStats stats;
  grpc::ClientContext ctx2;
  ASSERT_TRUE(admin_->GetStats(&ctx2, farm::v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.blob_count(), 1);
  EXPECT_EQ(stats.pinned_blobs(), 1);
  EXPECT_EQ(stats.leases(), 1);
  EXPECT_EQ(stats.max_size(), 256 << 20);

  farm::v1::ReleaseLeaseRequest rr;
  rr.set_lease_id(lresp.lease_id());
  farm::v1::ReleaseLeaseResponse rresp;
  grpc::ClientContext ctx3;
  ASSERT_TRUE(admin_->ReleaseLease(&ctx3, rr, &rresp).ok());

  farm::v1::GcRequest gr;
  farm::v1::GcResponse gresp;
  grpc::ClientContext ctx4;
  ASSERT_TRUE(admin_->Gc(&ctx4, gr, &gresp).ok());
  EXPECT_EQ(gresp.after().leases(), 0);
  EXPECT_EQ(gresp.after().blob_count(), 1);

  farm::v1::AcquireLeaseRequest zero;
  farm::v1::AcquireLeaseResponse zresp;
  grpc::ClientContext ctx5;
  EXPECT_EQ(admin_->AcquireLease(&ctx5, zero, &zresp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(CacheServerStartTest, PortInUseIsAClearError) {
  auto tmp = common::TempDir::Create("cache-server-port");
  ASSERT_TRUE(tmp.ok());
  RocksDbStoreOptions o;
  o.dir = common::JoinPath(tmp->path(), "cache");
  o.max_size = 64 << 20;
  std::shared_ptr<RocksDbBlobStore> cas = *RocksDbBlobStore::Create(o);
  CacheServerOptions so;
  so.cas = cas;
  so.action_cache = *RocksDbActionCache::Create(cas);
  auto first = CacheServer::Start(so);
  ASSERT_TRUE(first.ok()) << first.status();
  so.listen = (*first)->address();
  auto second = CacheServer::Start(so);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("address already in use"));
  so.listen = "nonsense";
  EXPECT_EQ(CacheServer::Start(so).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace farm::cache::server
