#include "cache/rocksdb_action_cache.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/action_result_refs.h"
#include "cache/testing/test_util.h"
#include "common/fs.h"
#include "farm/v1/build.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache {
namespace {

namespace reapi = build::bazel::remote::execution::v2;
using ::testing::HasSubstr;

class RocksDbActionCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("rocksdb-ac");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    Reopen();
  }
  void Reopen() {
    ac_.reset();
    cas_.reset();
    RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cache");
    o.max_size = 128 << 20;
    auto cas = RocksDbBlobStore::Create(o);
    ASSERT_TRUE(cas.ok()) << cas.status();
    cas_ = *std::move(cas);
    auto ac = RocksDbActionCache::Create(cas_);
    ASSERT_TRUE(ac.ok());
    ac_ = *std::move(ac);
  }
  common::Digest Put(const std::string& data) {
    auto d = cas_->Put(data);
    EXPECT_TRUE(d.ok()) << d.status();
    return *d;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::shared_ptr<RocksDbBlobStore> cas_;
  std::shared_ptr<RocksDbActionCache> ac_;
  const common::Digest key_ = common::DigestOf("action");
};

reapi::ActionResult ResultWith(const common::Digest& file) {
  reapi::ActionResult r;
  auto* f = r.add_output_files();
  f->set_path("out/a");
  ToProto(file, f->mutable_digest());
  return r;
}

TEST_F(RocksDbActionCacheTest, StoresBytesExactlyAndPersists) {
  common::Digest file = Put("file contents");
  reapi::ActionResult r = ResultWith(file);
  r.set_exit_code(0);
  // Unknown fields (from a newer client) must come back untouched, in place.
  std::string bytes = r.SerializeAsString() + std::string("\xf8\x07\x01", 3);  // field 127 varint
  ASSERT_TRUE(ac_->Update("main", key_, bytes).ok());
  auto got = ac_->Get({"main"}, key_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  Reopen();
  got = ac_->Get({"main"}, key_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
}

TEST_F(RocksDbActionCacheTest, ScopesReadThroughInOrderAndWritesStayInTheirScope) {
  common::Digest a = Put("a"), b = Put("b");
  std::string ra = ResultWith(a).SerializeAsString();
  std::string rb = ResultWith(b).SerializeAsString();
  ASSERT_TRUE(ac_->Update("main", key_, ra).ok());
  EXPECT_EQ(ac_->Get({"pr/1"}, key_).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(*ac_->Get({"pr/1", "main"}, key_), ra);
  ASSERT_TRUE(ac_->Update("pr/1", key_, rb).ok());
  EXPECT_EQ(*ac_->Get({"pr/1", "main"}, key_), rb);
  EXPECT_EQ(*ac_->Get({"main", "pr/1"}, key_), ra);
  EXPECT_EQ(*ac_->Get({"main"}, key_), ra);
  auto stats = cas_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->ac_entries, 2);
  ASSERT_EQ(stats->scopes.size(), 2u);
  EXPECT_EQ(stats->scopes[0].scope, "main");
  EXPECT_EQ(stats->scopes[0].entries, 1);
  EXPECT_EQ(stats->scopes[1].scope, "pr/1");
  // Overwriting keeps the count.
  ASSERT_TRUE(ac_->Update("pr/1", key_, ra).ok());
  EXPECT_EQ(cas_->Stats()->ac_entries, 2);
}

TEST_F(RocksDbActionCacheTest, UpdateRefusesResultsNamingMissingBlobs) {
  common::Digest absent = common::DigestOf("not stored");
  absl::Status s = ac_->Update("main", key_, ResultWith(absent).SerializeAsString());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(absent.hash));
  EXPECT_EQ(ac_->Update("main", key_, "\xff\xff garbage").code(),
            absl::StatusCode::kInvalidArgument);
  std::string nul("a\0b", 3);
  EXPECT_EQ(ac_->Update(nul, key_, "").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ac_->Get({"main"}, common::Digest{"zz", 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RocksDbActionCacheTest, CompletenessCoversTheStepLayerInAuxiliaryMetadata) {
  // The engine reads a step's layer from farm.v1.StepOutput, not from output_files: an entry
  // naming a layer nobody uploaded must be refused like any missing output.
  common::Digest present = Put("present");
  common::Digest absent = common::DigestOf("a layer nobody uploaded");
  reapi::ActionResult r = ResultWith(present);
  farm::v1::StepOutput step;
  step.mutable_layer()->set_digest("sha256:" + absent.hash);
  step.mutable_layer()->set_size(absent.size_bytes);
  r.mutable_execution_metadata()->add_auxiliary_metadata()->PackFrom(step);
  absl::Status s = ac_->Update("main", key_, r.SerializeAsString());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr(absent.hash));

  step.mutable_layer()->set_digest("sha256:" + present.hash);
  step.mutable_layer()->set_size(present.size_bytes);
  r.mutable_execution_metadata()->clear_auxiliary_metadata();
  r.mutable_execution_metadata()->add_auxiliary_metadata()->PackFrom(step);
  EXPECT_TRUE(ac_->Update("main", key_, r.SerializeAsString()).ok());

  step.mutable_layer()->set_digest("md5:abc");
  r.mutable_execution_metadata()->clear_auxiliary_metadata();
  r.mutable_execution_metadata()->add_auxiliary_metadata()->PackFrom(step);
  s = ac_->Update("main", key_, r.SerializeAsString());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("step layer"));
}

TEST_F(RocksDbActionCacheTest, CompletenessCoversStdStreamsTreesAndFilesInTrees) {
  common::Digest out = Put("out"), so = Put("stdout"), se = Put("stderr");
  common::Digest inner = Put("inner file");
  reapi::Tree tree;
  auto* f = tree.mutable_root()->add_files();
  f->set_name("x");
  ToProto(inner, f->mutable_digest());
  reapi::Directory child;
  auto* g = child.add_files();
  g->set_name("y");
  common::Digest absent = common::DigestOf("absent from the CAS");
  ToProto(absent, g->mutable_digest());

  auto make = [&](bool with_child, bool tree_stored) {
    reapi::Tree t = tree;
    if (with_child) *t.add_children() = child;
    if (!tree_stored) t.mutable_root()->add_symlinks()->set_name("never stored");
    std::string tbytes = t.SerializeAsString();
    common::Digest td = tree_stored ? Put(tbytes) : common::DigestOf(tbytes);
    reapi::ActionResult r = ResultWith(out);
    ToProto(so, r.mutable_stdout_digest());
    ToProto(se, r.mutable_stderr_digest());
    auto* d = r.add_output_directories();
    d->set_path("dir");
    ToProto(td, d->mutable_tree_digest());
    return r.SerializeAsString();
  };
  EXPECT_TRUE(ac_->Update("main", key_, make(false, true)).ok());
  EXPECT_TRUE(ac_->Get({"main"}, key_).ok());
  // A file inside the tree is missing.
  EXPECT_EQ(ac_->Update("main", key_, make(true, true)).code(),
            absl::StatusCode::kFailedPrecondition);
  // The tree blob itself is missing.
  EXPECT_EQ(ac_->Update("main", key_, make(false, false)).code(),
            absl::StatusCode::kFailedPrecondition);
  reapi::ActionResult missing_stderr = ResultWith(out);
  ToProto(absent, missing_stderr.mutable_stderr_digest());
  EXPECT_EQ(ac_->Update("main", key_, missing_stderr.SerializeAsString()).code(),
            absl::StatusCode::kFailedPrecondition);
  // The empty blob (Bazel's empty stdout) is always present.
  reapi::ActionResult empty_stdout = ResultWith(out);
  empty_stdout.mutable_stdout_digest()->set_hash(common::Digest::Empty().hash);
  EXPECT_TRUE(ac_->Update("main", key_, empty_stdout.SerializeAsString()).ok());
}

TEST_F(RocksDbActionCacheTest, AnEntryWhoseBlobsWereEvictedIsAMissAndIsDropped) {
  common::Digest a = Put("a"), b = Put("b");
  ASSERT_TRUE(ac_->Update("main", key_, ResultWith(a).SerializeAsString()).ok());
  ASSERT_TRUE(ac_->Update("pr/2", key_, ResultWith(b).SerializeAsString()).ok());
  auto removed = cas_->Remove({b});
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1);
  // pr/2's entry is dead: the read falls through to main.
  auto got = ac_->Get({"pr/2", "main"}, key_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, ResultWith(a).SerializeAsString());
  auto miss = ac_->Get({"pr/2"}, key_);
  EXPECT_EQ(miss.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cas_->Stats()->ac_entries, 1);  // the dead entry was removed
}

}  // namespace
}  // namespace farm::cache
