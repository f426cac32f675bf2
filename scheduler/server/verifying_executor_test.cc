#include "scheduler/server/verifying_executor.h"

#include <atomic>

#include "cache/client/grpc_blob_store.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "cache/server/cache_server.h"
#include "cache/testing/test_util.h"
#include "common/byte_sink.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "oci/compression.h"
#include "oci/media_types.h"

namespace farm::scheduler::server {
namespace {

class Canned : public executor::StepExecutor {
 public:
  explicit Canned(absl::StatusOr<farm::v1::StepResult> r) : r_(std::move(r)) {}
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest&,
                                               const executor::LogSink&,
                                               const absl::Notification*) override {
    return r_;
  }

 private:
  absl::StatusOr<farm::v1::StepResult> r_;
};

// Forwards to a store and counts every read of blob bytes through it.
class CountingReads : public cache::BlobStore {
 public:
  explicit CountingReads(std::shared_ptr<cache::BlobStore> inner) : inner_(std::move(inner)) {}
  absl::StatusOr<std::vector<cache::Digest>> FindMissing(
      absl::Span<const cache::Digest> digests) override {
    return inner_->FindMissing(digests);
  }
  absl::StatusOr<std::unique_ptr<cache::BlobReader>> OpenRead(const cache::Digest& digest,
                                                              int64_t offset,
                                                              int64_t limit) override {
    ++reads;
    return inner_->OpenRead(digest, offset, limit);
  }
  absl::StatusOr<std::unique_ptr<cache::BlobWriter>> BeginWrite(
      const cache::Digest& digest) override {
    return inner_->BeginWrite(digest);
  }
  absl::StatusOr<std::vector<absl::Status>> BatchWrite(
      absl::Span<const cache::BlobData> blobs) override {
    return inner_->BatchWrite(blobs);
  }
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BatchRead(
      absl::Span<const cache::Digest> digests) override {
    ++reads;
    return inner_->BatchRead(digests);
  }
  absl::StatusOr<Lease> AcquireLease(absl::Span<const cache::Digest> digests,
                                     absl::Duration ttl) override {
    return inner_->AcquireLease(digests, ttl);
  }
  absl::Status ReleaseLease(const std::string& lease_id) override {
    return inner_->ReleaseLease(lease_id);
  }
  absl::StatusOr<std::vector<absl::StatusOr<cache::LayerInfo>>> GetLayerInfo(
      absl::Span<const cache::Digest> digests) override {
    return inner_->GetLayerInfo(digests);
  }
  std::atomic<int> reads{0};

 private:
  std::shared_ptr<cache::BlobStore> inner_;
};

class VerifyingExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("verifying");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    cache::RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cas");
    auto cas = cache::RocksDbBlobStore::Create(o);
    ASSERT_TRUE(cas.ok());
    store_ = *std::move(cas);
    cas_ = std::make_shared<CountingReads>(store_);
  }
  void TearDown() override {
    // The embedded store answers from what it computed while the layers were written.
    EXPECT_EQ(cas_->reads.load(), 0);
  }
  absl::StatusOr<farm::v1::StepResult> Run(absl::StatusOr<farm::v1::StepResult> r) {
    VerifyingExecutor v(std::make_shared<Canned>(std::move(r)), cas_);
    return v.Execute({}, nullptr, nullptr);
  }
  // An uncompressed layer: its diff_id is its digest.
  static farm::v1::StepResult WithLayer(const std::string& data) {
    farm::v1::StepResult r;
    common::Digest d = common::DigestOf(data);
    r.mutable_layer()->set_digest(d.OciString());
    r.mutable_layer()->set_size(d.size_bytes);
    r.mutable_layer()->set_diff_id(d.OciString());
    r.mutable_layer()->set_media_type(oci::LayerMediaType(oci::Compression::kNone, false));
    return r;
  }
  // `tar` gzipped and stored; the result claims `claimed_tar`'s diff_id.
  farm::v1::StepResult StoredGzipLayer(const std::string& tar, const std::string& claimed_tar) {
    return StoredGzipLayerIn(*cas_, tar, claimed_tar);
  }
  static farm::v1::StepResult StoredGzipLayerIn(cache::BlobStore& store, const std::string& tar,
                                                const std::string& claimed_tar) {
    std::string gz;
    common::FunctionSink sink([&](absl::string_view b) {
      gz.append(b.data(), b.size());
      return absl::OkStatus();
    });
    oci::CompressionOptions co;
    co.threads = 1;
    auto c = oci::Compressor::Create(co, &sink);
    EXPECT_TRUE(c.ok());
    EXPECT_TRUE((*c)->Write(tar).ok());
    EXPECT_TRUE((*c)->Finish().ok());
    EXPECT_TRUE(store.Put(gz).ok());
    farm::v1::StepResult r;
    common::Digest d = common::DigestOf(gz);
    r.mutable_layer()->set_digest(d.OciString());
    r.mutable_layer()->set_size(d.size_bytes);
    r.mutable_layer()->set_diff_id(common::DigestOf(claimed_tar).OciString());
    r.mutable_layer()->set_media_type(oci::LayerMediaType(oci::Compression::kGzip, false));
    return r;
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<cache::RocksDbBlobStore> store_;
  std::shared_ptr<CountingReads> cas_;
};

TEST_F(VerifyingExecutorTest, PassesResultsWhoseLayerIsInTheCache) {
  ASSERT_TRUE(cas_->Put("layer bytes").ok());
  auto r = Run(WithLayer("layer bytes"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->has_layer());
}

TEST_F(VerifyingExecutorTest, RejectsALayerTheCacheLacks) {
  auto r = Run(WithLayer("never uploaded"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("farm-cache lacks it"), absl::string_view::npos);
}

TEST_F(VerifyingExecutorTest, ChecksTheDiffIdAgainstTheStoredLayer) {
  std::string tar(100000, 't');
  auto good = Run(StoredGzipLayer(tar, tar));
  EXPECT_TRUE(good.ok()) << good.status();
  // A rogue worker uploads one layer and claims another's diff_id.
  auto lie = Run(StoredGzipLayer(tar + "evil", tar));
  ASSERT_FALSE(lie.ok());
  EXPECT_EQ(lie.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(lie.status().message().find("reported diff_id"), absl::string_view::npos)
      << lie.status();
  // Bytes that are not what the media type says.
  farm::v1::StepResult not_gzip = WithLayer("plain bytes");
  ASSERT_TRUE(cas_->Put("plain bytes").ok());
  not_gzip.mutable_layer()->set_media_type(oci::LayerMediaType(oci::Compression::kGzip, false));
  EXPECT_EQ(Run(not_gzip).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_F(VerifyingExecutorTest, TheRefusalNamesTheWorkerTheDispatcherSaysItCameFrom) {
  std::string tar(1000, 't');
  farm::v1::StepResult lie = StoredGzipLayer(tar + "evil", tar);
  lie.set_worker("rogue");
  auto r = Run(lie);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(r.status().message().find("worker rogue reported diff_id"), absl::string_view::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("result refused, nothing cached"), absl::string_view::npos)
      << r.status();
}

TEST_F(VerifyingExecutorTest, RejectsMalformedLayers) {
  farm::v1::StepResult bad = WithLayer("x");
  bad.mutable_layer()->set_digest("sha256:nothex");
  EXPECT_EQ(Run(bad).status().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(cas_->Put("y").ok());
  farm::v1::StepResult no_diff = WithLayer("y");
  no_diff.mutable_layer()->clear_diff_id();
  EXPECT_EQ(Run(no_diff).status().code(), absl::StatusCode::kInternal);
}

TEST_F(VerifyingExecutorTest, LeavesFailuresAndLayerlessResultsAlone) {
  farm::v1::StepResult failed = WithLayer("never uploaded");
  failed.set_exit_code(2);
  EXPECT_TRUE(Run(failed).ok());
  EXPECT_TRUE(Run(farm::v1::StepResult()).ok());
  EXPECT_EQ(Run(absl::CancelledError("x")).status().code(), absl::StatusCode::kCancelled);
}

// The farm: the scheduler talks to farm-cache over gRPC. The layers are uploaded over gRPC
// (a large one streams over ByteStream) and the verdicts come from farm.v1.LayerInfo: no byte
// of any layer is read back from farm-cache.
TEST_F(VerifyingExecutorTest, OnTheFarmNoLayerIsReadBack) {
  auto ac = cache::RocksDbActionCache::Create(store_);
  ASSERT_TRUE(ac.ok());
  cache::server::CacheServerOptions so;
  so.cas = cas_;  // counts what the server reads
  so.action_cache = *std::move(ac);
  auto server = cache::server::CacheServer::Start(std::move(so));
  ASSERT_TRUE(server.ok()) << server.status();
  auto remote = cache::client::GrpcBlobStore::Create((*server)->address(), {});
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::shared_ptr<cache::BlobStore> farm_cas = *std::move(remote);
  auto run = [&](farm::v1::StepResult r) {
    VerifyingExecutor v(std::make_shared<Canned>(std::move(r)), farm_cas);
    return v.Execute({}, nullptr, nullptr);
  };

  // Incompressible: its gzip is larger than a batch, so it streams over ByteStream Write.
  std::string big = cache::testing::RandomBytes(6 << 20, 9);
  auto good = run(StoredGzipLayerIn(*farm_cas, big, big));
  EXPECT_TRUE(good.ok()) << good.status();
  auto lie = run(StoredGzipLayerIn(*farm_cas, big + "evil", big));
  EXPECT_EQ(lie.status().code(), absl::StatusCode::kPermissionDenied) << lie.status();
  std::string small(100000, 's');
  EXPECT_TRUE(run(StoredGzipLayerIn(*farm_cas, small, small)).ok());
  EXPECT_EQ(run(WithLayer("never uploaded")).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(cas_->reads.load(), 0);
}

}  // namespace
}  // namespace farm::scheduler::server
