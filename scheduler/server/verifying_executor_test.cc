#include "scheduler/server/verifying_executor.h"

#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "gtest/gtest.h"

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
    cas_ = *std::move(cas);
  }
  absl::StatusOr<farm::v1::StepResult> Run(absl::StatusOr<farm::v1::StepResult> r) {
    VerifyingExecutor v(std::make_shared<Canned>(std::move(r)), cas_);
    return v.Execute({}, nullptr, nullptr);
  }
  static farm::v1::StepResult WithLayer(const std::string& data) {
    farm::v1::StepResult r;
    common::Digest d = common::DigestOf(data);
    r.mutable_layer()->set_digest(d.OciString());
    r.mutable_layer()->set_size(d.size_bytes);
    r.mutable_layer()->set_diff_id("sha256:" + std::string(64, 'a'));
    return r;
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<cache::RocksDbBlobStore> cas_;
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

}  // namespace
}  // namespace farm::scheduler::server
