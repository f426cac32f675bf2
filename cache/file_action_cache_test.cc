#include "cache/file_action_cache.h"

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "cache/file_blob_store.h"
#include "common/fs.h"
#include "gtest/gtest.h"

namespace cache {
namespace {

namespace re = build::bazel::remote::execution::v2;

std::string ResultNaming(const Digest& d) {
  re::ActionResult r;
  re::OutputFile* f = r.add_output_files();
  f->set_path("layer.tar.gz");
  f->mutable_digest()->set_hash(d.hash);
  f->mutable_digest()->set_size_bytes(d.size_bytes);
  return r.SerializeAsString();
}

TEST(FileActionCacheTest, ScopesCompletenessAndDurability) {
  auto tmp = common::TempDir::Create("fac").value();
  std::shared_ptr<FileBlobStore> cas = FileBlobStore::Create(tmp.path() + "/cas").value();
  auto ac = FileActionCache::Create(tmp.path() + "/ac", cas).value();
  Digest key = common::DigestOf("step key");
  Digest blob = common::DigestOf("layer bytes");
  std::string result = ResultNaming(blob);

  // The blob must be in the CAS first.
  EXPECT_EQ(ac->Update("main", key, result).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(cas->Put("layer bytes").ok());
  ASSERT_TRUE(ac->Update("pr/123", key, result).ok());
  EXPECT_EQ(ac->Get({"pr/123"}, key).value(), result);
  // Read-through: the first scope that has it.
  EXPECT_EQ(ac->Get({"main", "pr/123"}, key).value(), result);
  EXPECT_EQ(ac->Get({"main"}, key).status().code(), absl::StatusCode::kNotFound);
  // Durable across reopening.
  auto again = FileActionCache::Create(tmp.path() + "/ac", cas).value();
  EXPECT_EQ(again->Get({"pr/123"}, key).value(), result);
  // A blob evicted from the CAS turns the entry into a miss.
  ASSERT_TRUE(cas->Remove(blob).ok());
  EXPECT_EQ(again->Get({"pr/123"}, key).status().code(), absl::StatusCode::kNotFound);
  // Bad input.
  EXPECT_EQ(ac->Update("main", key, "\xff\xff garbage").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ac->Update("../x", key, result).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ac->Update("", key, result).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace cache
