#include "scheduler/context/context.h"

#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "gtest/gtest.h"

namespace farm::scheduler::context {
namespace {

class UploadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("context-upload");
    ASSERT_TRUE(tmp.ok());
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    dir_ = common::JoinPath(tmp_->path(), "ctx");
    cache::RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cas");
    auto cas = cache::RocksDbBlobStore::Create(o);
    ASSERT_TRUE(cas.ok()) << cas.status();
    cas_ = *std::move(cas);
  }

  void Write(const std::string& rel, const std::string& data) {
    std::string p = common::JoinPath(dir_, rel);
    ASSERT_TRUE(common::MakeDirs(p.substr(0, p.rfind('/'))).ok());
    ASSERT_TRUE(common::WriteFileAtomic(p, data).ok());
  }

  std::unique_ptr<Snapshot> Snap() {
    auto s = Snapshot::FromDirectory(dir_, {}, {});
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::string dir_;
  std::shared_ptr<cache::RocksDbBlobStore> cas_;
};

TEST_F(UploadTest, UploadsOnlyWhatIsMissingInParallel) {
  // Many small files (batched), a few large ones (streamed), nested directories.
  for (int i = 0; i < 300; ++i) {
    Write(absl::StrCat("src/d", i % 7, "/f", i, ".txt"), absl::StrCat("file ", i, "\n"));
  }
  for (int i = 0; i < 3; ++i) {
    Write(absl::StrCat("big", i, ".bin"), std::string((3 << 20) + i, static_cast<char>('a' + i)));
  }
  Write("dup1", "same");
  Write("dup2", "same");
  auto snap = Snap();
  ASSERT_TRUE(snap);
  auto up = snap->Upload(*cas_, 4);
  ASSERT_TRUE(up.ok()) << up.status();
  // 300 + 3 + 1 distinct file blobs, plus the Directory protos (root, src, 7 dirs).
  EXPECT_EQ(up->blobs_written, 304 + 9);
  EXPECT_GT(up->bytes_written, 9 << 20);
  // Everything is there: the root and every blob it reaches.
  std::vector<common::Digest> all;
  for (const auto& [d, b] : snap->directories()) all.push_back(d);
  for (const auto& [d, p] : snap->files()) all.push_back(d);
  EXPECT_TRUE(cas_->FindMissing(all)->empty());
  auto big = cas_->ReadBlob(snap->files().rbegin()->first, 16 << 20);
  ASSERT_TRUE(big.ok());

  // Again: nothing to write.
  auto again = snap->Upload(*cas_, 4);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->blobs_written, 0);
  EXPECT_EQ(again->blobs_checked, up->blobs_written);

  // A one-file edit: that file's blob and the Directory protos on its path (f5 is in src/d5).
  Write("src/d5/f5.txt", "edited\n");
  auto edited = Snap();
  auto up2 = edited->Upload(*cas_, 4);
  ASSERT_TRUE(up2.ok());
  EXPECT_EQ(up2->blobs_written, 1 + 3);
}

TEST_F(UploadTest, AFileChangedSinceHashingIsNamed) {
  Write("a.txt", "original\n");
  Write("big.bin", std::string(2 << 20, 'x'));
  auto snap = Snap();
  Write("a.txt", "changed!!\n");
  auto up = snap->Upload(*cas_, 2);
  ASSERT_FALSE(up.ok());
  EXPECT_NE(up.status().message().find("a.txt"), absl::string_view::npos) << up.status();
}

}  // namespace
}  // namespace farm::scheduler::context
