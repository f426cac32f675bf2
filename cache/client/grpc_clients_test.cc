// GrpcBlobStore, GrpcActionCache and GrpcCacheAdmin against a real farm-cache server
// in-process (loopback), including retries and resumption after UNAVAILABLE, injected by a
// flaky store behind the server.
#include <atomic>

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/action_result_refs.h"
#include "cache/client/grpc_action_cache.h"
#include "cache/client/grpc_blob_store.h"
#include "cache/client/grpc_cache_admin.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/server/cache_server.h"
#include "cache/testing/test_util.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache::client {
namespace {

namespace reapi = build::bazel::remote::execution::v2;
using ::farm::cache::testing::RandomBytes;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A BlobStore decorator that fails on demand (the server turns its errors into RPC statuses).
class FlakyBlobStore : public BlobStore {
 public:
  explicit FlakyBlobStore(BlobStore::Ptr inner) : inner_(std::move(inner)) {}

  std::atomic<int> fail_find_missing{0};
  absl::StatusCode fail_code = absl::StatusCode::kUnavailable;
  std::atomic<int64_t> fail_read_after{-1};  // fail once after this many bytes were read
  std::atomic<int64_t> fail_write_at{-1};    // fail the Append that reaches this offset, once
  std::atomic<int> find_missing_calls{0};
  std::atomic<int> open_read_calls{0};

  absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests) override {
    ++find_missing_calls;
    if (fail_find_missing > 0) {
      --fail_find_missing;
      return absl::Status(fail_code, "injected failure");
    }
    return inner_->FindMissing(digests);
  }
  absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& d, int64_t offset,
                                                       int64_t limit) override {
    ++open_read_calls;
    auto r = inner_->OpenRead(d, offset, limit);
    if (!r.ok()) return r;
    return std::unique_ptr<BlobReader>(new Reader(this, *std::move(r)));
  }
  absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& d) override {
    auto w = inner_->BeginWrite(d);
    if (!w.ok()) return w;
    return std::unique_ptr<BlobWriter>(new Writer(this, *std::move(w)));
  }
  absl::StatusOr<std::vector<absl::Status>> BatchWrite(absl::Span<const BlobData> b) override {
    return inner_->BatchWrite(b);
  }
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BatchRead(
      absl::Span<const Digest> d) override {
    return inner_->BatchRead(d);
  }
  absl::StatusOr<Lease> AcquireLease(absl::Span<const Digest> d, absl::Duration ttl) override {
    return inner_->AcquireLease(d, ttl);
  }
  absl::Status ReleaseLease(const std::string& id) override { return inner_->ReleaseLease(id); }

 private:
  class Reader : public BlobReader {
   public:
    Reader(FlakyBlobStore* f, std::unique_ptr<BlobReader> r) : f_(f), r_(std::move(r)) {}
    absl::StatusOr<absl::string_view> Next() override {
      int64_t after = f_->fail_read_after.load();
      if (after >= 0 && delivered_ >= after &&
          f_->fail_read_after.compare_exchange_strong(after, -1)) {
        return absl::UnavailableError("injected read failure");
      }
      auto c = r_->Next();
      if (c.ok()) delivered_ += static_cast<int64_t>(c->size());
      return c;
    }

   private:
    FlakyBlobStore* f_;
    std::unique_ptr<BlobReader> r_;
    int64_t delivered_ = 0;
  };
  class Writer : public BlobWriter {
   public:
    Writer(FlakyBlobStore* f, std::unique_ptr<BlobWriter> w) : f_(f), w_(std::move(w)) {}
    absl::Status Append(absl::string_view data) override {
      int64_t at = f_->fail_write_at.load();
      if (at >= 0 && w_->committed_size() + static_cast<int64_t>(data.size()) > at &&
          f_->fail_write_at.compare_exchange_strong(at, -1)) {
        return absl::UnavailableError("injected write failure");
      }
      return w_->Append(data);
    }
    int64_t committed_size() const override { return w_->committed_size(); }
    absl::Status Commit() override { return w_->Commit(); }

   private:
    FlakyBlobStore* f_;
    std::unique_ptr<BlobWriter> w_;
  };

  BlobStore::Ptr inner_;
};

class GrpcClientsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("grpc-clients");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cache");
    o.max_size = 512 << 20;
    auto store = RocksDbBlobStore::Create(o);
    ASSERT_TRUE(store.ok()) << store.status();
    rocks_ = *std::move(store);
    flaky_ = std::make_shared<FlakyBlobStore>(rocks_);
    server::CacheServerOptions so;
    so.cas = flaky_;
    so.action_cache = *RocksDbActionCache::Create(rocks_);
    so.admin = rocks_;
    auto server = server::CacheServer::Start(std::move(so));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    options_.retry.initial_backoff = absl::Milliseconds(1);
    options_.write_chunk_size = 256 << 10;
    options_.max_batch_bytes = 64 << 10;
    Connect();
  }
  void Connect() {
    auto cas = GrpcBlobStore::Create(server_->address(), options_);
    ASSERT_TRUE(cas.ok()) << cas.status();
    cas_ = *std::move(cas);
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<RocksDbBlobStore> rocks_;
  std::shared_ptr<FlakyBlobStore> flaky_;
  std::unique_ptr<server::CacheServer> server_;
  GrpcBlobStore::Options options_;
  std::unique_ptr<GrpcBlobStore> cas_;
};

TEST_F(GrpcClientsTest, RoundTripsSmallAndLargeBlobs) {
  std::string small = RandomBytes(1000, 1), large = RandomBytes(5 << 20, 2);
  auto ds = cas_->Put(small);
  ASSERT_TRUE(ds.ok()) << ds.status();
  auto dl = cas_->Put(large);
  ASSERT_TRUE(dl.ok()) << dl.status();
  EXPECT_EQ(*cas_->ReadBlob(*ds), small);
  EXPECT_EQ(*cas_->ReadBlob(*dl), large);
  std::string part;
  ASSERT_TRUE(cas_->Read(*dl, (1 << 20) + 3, 300000,
                         [&part](absl::string_view c) {
                           part.append(c.data(), c.size());
                           return absl::OkStatus();
                         })
                  .ok());
  EXPECT_EQ(part, large.substr((1 << 20) + 3, 300000));
  Digest absent = common::DigestOf("absent");
  auto missing = cas_->FindMissing({absent, *dl, Digest::Empty(), *ds, absent});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, ElementsAre(absent));
  EXPECT_EQ(cas_->OpenRead(absent, 0, 0).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cas_->OpenRead(*ds, 1001, 0).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(*cas_->ReadBlob(Digest::Empty()), "");
  // Wrong bytes are refused by the server, whichever path they take.
  for (const std::string* data : {&small, &large}) {
    std::string wrong = *data;
    wrong[10] ^= 1;
    absl::Status s = cas_->WriteBlob(common::DigestOf(*data + "x"), wrong + "x");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
}

TEST_F(GrpcClientsTest, BatchesAreSplitAndReportPerBlob) {
  std::vector<std::string> datas;
  std::vector<BlobData> blobs;
  for (int i = 0; i < 30; ++i) datas.push_back(RandomBytes(5000, 100 + i));
  datas.push_back(RandomBytes(200000, 99));  // above max_batch_bytes: streamed
  for (const std::string& d : datas) blobs.push_back({common::DigestOf(d), d});
  blobs.push_back({common::DigestOf("right"), "wrong"});
  auto res = cas_->BatchWrite(blobs);
  ASSERT_TRUE(res.ok()) << res.status();
  for (size_t i = 0; i < datas.size(); ++i) EXPECT_TRUE((*res)[i].ok()) << i << ": " << (*res)[i];
  EXPECT_EQ(res->back().code(), absl::StatusCode::kInvalidArgument);
  std::vector<Digest> digests;
  for (const BlobData& b : blobs) digests.push_back(b.digest);
  auto read = cas_->BatchRead(digests);
  ASSERT_TRUE(read.ok());
  for (size_t i = 0; i < datas.size(); ++i) EXPECT_EQ(*(*read)[i], datas[i]);
  EXPECT_EQ(read->back().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(GrpcClientsTest, RetriesUnavailableOnly) {
  flaky_->fail_find_missing = 2;
  auto missing = cas_->FindMissing({common::DigestOf("x")});
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_EQ(flaky_->find_missing_calls.load(), 3);
  flaky_->find_missing_calls = 0;
  flaky_->fail_code = absl::StatusCode::kInternal;
  flaky_->fail_find_missing = 1;
  missing = cas_->FindMissing({common::DigestOf("x")});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(flaky_->find_missing_calls.load(), 1);
  // Attempts are bounded.
  flaky_->find_missing_calls = 0;
  flaky_->fail_code = absl::StatusCode::kUnavailable;
  flaky_->fail_find_missing = 100;
  missing = cas_->FindMissing({common::DigestOf("x")});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(flaky_->find_missing_calls.load(), options_.retry.max_attempts);
  flaky_->fail_find_missing = 0;
}

TEST_F(GrpcClientsTest, ReadResumesAtTheDeliveredOffset) {
  std::string large = RandomBytes(5 << 20, 3);
  auto d = rocks_->Put(large);
  ASSERT_TRUE(d.ok());
  flaky_->fail_read_after = 2 << 20;
  flaky_->open_read_calls = 0;
  auto got = cas_->ReadBlob(*d);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(*got == large);
  EXPECT_EQ(flaky_->open_read_calls.load(), 2);
}

TEST_F(GrpcClientsTest, WriteResumesFromTheServersCommittedOffset) {
  std::string large = RandomBytes(6 << 20, 4);
  Digest d = common::DigestOf(large);
  flaky_->fail_write_at = 3 << 20;
  auto w = cas_->BeginWrite(d);
  ASSERT_TRUE(w.ok());
  for (size_t off = 0; off < large.size(); off += 100000) {
    ASSERT_TRUE((*w)->Append(absl::string_view(large).substr(off, 100000)).ok());
  }
  absl::Status s = (*w)->Commit();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(flaky_->fail_write_at.load(), -1);  // the failure did happen
  EXPECT_EQ(*rocks_->ReadBlob(d), large);
  // Writing it again ends early (the server has it) and still succeeds.
  auto stats_before = server_->counters().bytes_written;
  ASSERT_TRUE(cas_->WriteBlob(d, large).ok());
  EXPECT_EQ(server_->counters().bytes_written, stats_before);
}

TEST_F(GrpcClientsTest, ActionCacheIsByteExactAndReadsThroughScopes) {
  auto ac = GrpcActionCache::Create(server_->address(), GrpcActionCache::Options());
  ASSERT_TRUE(ac.ok());
  auto out = cas_->Put("output");
  ASSERT_TRUE(out.ok());
  reapi::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("a");
  ToProto(*out, f->mutable_digest());
  // An unknown field (number 100) between known ones, as a newer client might send.
  std::string head = r.SerializeAsString();
  reapi::ActionResult tail;
  tail.set_exit_code(0);
  tail.mutable_stdout_digest()->set_hash(common::Digest::Empty().hash);
  std::string bytes = head + std::string("\xa0\x06\x01", 3) + tail.SerializeAsString();
  Digest key = common::DigestOf("action");
  ASSERT_TRUE((*ac)->Update("main", key, bytes).ok());
  auto got = (*ac)->Get({"pr/5", "main"}, key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  EXPECT_EQ((*ac)->Get({"pr/5"}, key).status().code(), absl::StatusCode::kNotFound);
  reapi::ActionResult bad = r;
  ToProto(common::DigestOf("never uploaded"), bad.mutable_output_files(0)->mutable_digest());
  absl::Status s = (*ac)->Update("main", key, bad.SerializeAsString());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("not in the CAS"));
}

TEST_F(GrpcClientsTest, LeasesStatsAndGcOverTheAdminService) {
  auto d = cas_->Put(RandomBytes(3 << 20, 5));
  ASSERT_TRUE(d.ok());
  Digest absent = common::DigestOf("absent");
  auto lease = cas_->AcquireLease({*d, absent}, absl::Minutes(5));
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_THAT(lease->missing, ElementsAre(absent));
  auto admin = GrpcCacheAdmin::Create(server_->address());
  ASSERT_TRUE(admin.ok());
  auto stats = (*admin)->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->pinned_blobs, 1);
  EXPECT_EQ(stats->pinned_bytes, 3 << 20);
  EXPECT_EQ(stats->blob_count, 1);
  EXPECT_EQ(stats->server.bytes_written, 3 << 20);
  ASSERT_TRUE(cas_->ReleaseLease(lease->id).ok());
  EXPECT_EQ(cas_->ReleaseLease(lease->id).code(), absl::StatusCode::kNotFound);
  auto gc = (*admin)->Gc({});
  ASSERT_TRUE(gc.ok()) << gc.status();
  EXPECT_EQ(gc->after.pinned_blobs, 0);
  EXPECT_EQ((*admin)->Gc({1000}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcClientsNoServerTest, UnreachableServerIsUnavailableAfterRetries) {
  GrpcBlobStore::Options o;
  o.retry.initial_backoff = absl::Milliseconds(1);
  o.retry.max_attempts = 2;
  o.rpc_timeout = absl::Seconds(2);
  // Port 1 on loopback: nothing listens there.
  auto cas = GrpcBlobStore::Create("grpc://127.0.0.1:1", o);
  ASSERT_TRUE(cas.ok());
  auto missing = (*cas)->FindMissing({common::DigestOf("x")});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kUnavailable) << missing.status();
  EXPECT_EQ(GrpcBlobStore::Create("https://host:1", o).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Plaintext beyond loopback needs --insecure (auth::ClientCredentials); grpcs:// is TLS.
  auto far = GrpcBlobStore::Create("grpc://192.0.2.1:1", o);
  EXPECT_EQ(far.status().code(), absl::StatusCode::kFailedPrecondition) << far.status();
  EXPECT_TRUE(GrpcBlobStore::Create("grpcs://192.0.2.1:1", o).ok());
}

}  // namespace
}  // namespace farm::cache::client
