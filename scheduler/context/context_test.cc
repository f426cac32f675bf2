#include "scheduler/context/context.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
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

// Docker keeps a context file's permission bits (a 0600 key stays 0600); farm does too unless
// normalize_permissions, and the Merkle tree a remote worker reads carries them.
TEST_F(UploadTest, PermissionBitsAreKeptUnlessNormalized) {
  Write("key", "secret");
  Write("run.sh", "#!/bin/sh");
  Write("suid", "s");
  Write("private/f", "f");
  ASSERT_EQ(chmod(common::JoinPath(dir_, "key").c_str(), 0600), 0);
  ASSERT_EQ(chmod(common::JoinPath(dir_, "run.sh").c_str(), 0700), 0);
  ASSERT_EQ(chmod(common::JoinPath(dir_, "suid").c_str(), 04755), 0);
  ASSERT_EQ(chmod(common::JoinPath(dir_, "private").c_str(), 01700), 0);
  auto mode = [](const Snapshot& s, const std::string& rel) {
    absl::StatusOr<worker::copy::FileInfo> fi = s.tree().Lstat(rel);
    EXPECT_TRUE(fi.ok()) << fi.status();
    return fi.ok() ? fi->mode : 0u;
  };
  std::unique_ptr<Snapshot> kept = Snap();
  ASSERT_NE(kept, nullptr);
  EXPECT_EQ(mode(*kept, "key"), 0600u);
  EXPECT_EQ(mode(*kept, "run.sh"), 0700u);
  EXPECT_EQ(mode(*kept, "suid"), 04755u);
  EXPECT_EQ(mode(*kept, "private"), 01700u);

  SnapshotOptions o;
  o.normalize_permissions = true;
  absl::StatusOr<std::unique_ptr<Snapshot>> normalized = Snapshot::FromDirectory(dir_, {}, o);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  EXPECT_EQ(mode(**normalized, "key"), 0644u);
  EXPECT_EQ(mode(**normalized, "run.sh"), 0755u);
  EXPECT_EQ(mode(**normalized, "suid"), 0755u);
  EXPECT_EQ(mode(**normalized, "private"), 0755u);
  // The Merkle trees differ (the kept modes are node properties), so do their roots.
  EXPECT_NE(kept->root().digest(), (*normalized)->root().digest());
}

// Hard links in the context: a group per inode, named by its first name in walk order, in the
// tree the planner keys on and in the Merkle tree a worker copies from.
TEST_F(UploadTest, HardLinksAreGroupedByTheirFirstName) {
  Write("dir/one", "same");
  Write("dir/single", "single");
  ASSERT_EQ(
      link(common::JoinPath(dir_, "dir/one").c_str(), common::JoinPath(dir_, "dir/two").c_str()),
      0);
  ASSERT_EQ(
      link(common::JoinPath(dir_, "dir/one").c_str(), common::JoinPath(dir_, "a-first").c_str()),
      0);
  std::unique_ptr<Snapshot> s = Snap();
  ASSERT_NE(s, nullptr);
  for (const char* name : {"a-first", "dir/one", "dir/two"}) {
    absl::StatusOr<worker::copy::FileInfo> fi = s->tree().Lstat(name);
    ASSERT_TRUE(fi.ok()) << fi.status();
    EXPECT_EQ(fi->hardlink_group, "a-first") << name;
  }
  EXPECT_EQ(s->tree().Lstat("dir/single")->hardlink_group, "");
  bool recorded = false;
  for (const auto& [digest, bytes] : s->directories()) {
    build::bazel::remote::execution::v2::Directory d;
    ASSERT_TRUE(d.ParseFromString(bytes));
    for (const auto& f : d.files()) {
      for (const auto& p : f.node_properties().properties()) {
        recorded |= p.name() == worker::copy::kHardlinkProperty && p.value() == "a-first";
      }
    }
  }
  EXPECT_TRUE(recorded);
}

// The walk lists directories on several threads; the snapshot must not depend on how many.
TEST_F(UploadTest, TheWalkIsTheSameOnOneThreadOrMany) {
  for (int d = 0; d < 12; ++d) {
    for (int f = 0; f < 5; ++f) {
      Write("src/d" + std::to_string(d) + "/sub/f" + std::to_string(f), std::to_string(d * f));
    }
  }
  Write("logs/old.log", "x");
  Write("logs/keep.txt", "kept");
  Write("tmp/a/b/c.txt", "excluded with nothing re-included below");
  Write("skip.me", "x");
  ASSERT_EQ(symlink("src/d1", common::JoinPath(dir_, "link").c_str()), 0);
  std::vector<std::string> ignore = {"logs", "!logs/keep.txt", "tmp", "*.me"};
  std::vector<std::string> paths;
  std::string root;
  for (int threads : {1, 2, 4, 16}) {
    SnapshotOptions o;
    o.threads = threads;
    auto s = Snapshot::FromDirectory(dir_, ignore, o);
    ASSERT_TRUE(s.ok()) << s.status();
    if (threads == 1) {
      paths = (*s)->tree().Paths();
      root = (*s)->root().digest();
      continue;
    }
    EXPECT_EQ((*s)->tree().Paths(), paths) << threads;
    EXPECT_EQ((*s)->root().digest(), root) << threads;
  }
  auto has = [&](const std::string& p) {
    return std::find(paths.begin(), paths.end(), p) != paths.end();
  };
  EXPECT_TRUE(has("logs"));
  EXPECT_TRUE(has("logs/keep.txt"));
  EXPECT_FALSE(has("logs/old.log"));
  EXPECT_FALSE(has("tmp"));  // excluded, and nothing below it re-included
  EXPECT_FALSE(has("skip.me"));
  EXPECT_TRUE(has("link"));
  EXPECT_TRUE(has("src/d11/sub/f4"));
  EXPECT_EQ(paths.size(), 1u + 12 * 2 + 12 * 5 + 2 + 1);  // src, dirs, files, logs/*, link
}

// The stat cache: unchanged files reuse their digests, a changed one is read again, and the
// result is the same as hashing everything.
TEST_F(UploadTest, TheStatCacheReadsOnlyChangedFiles) {
  for (int f = 0; f < 19; ++f) Write("d/f" + std::to_string(f), "content " + std::to_string(f));
  Write("d/f19-caf\xe9", "a name that is not UTF-8");
  // Old mtimes: the cache trusts only files not changed within 2 s of being written.
  auto age = [&](const std::string& rel) {
    struct timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, common::JoinPath(dir_, rel).c_str(), times, 0), 0);
  };
  for (int f = 0; f < 19; ++f) age("d/f" + std::to_string(f));
  age("d/f19-caf\xe9");
  SnapshotOptions o;
  o.stat_cache = common::JoinPath(tmp_->path(), "stat-cache");
  auto first = Snapshot::FromDirectory(dir_, {}, o);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->files_hashed(), 20);
  auto again = Snapshot::FromDirectory(dir_, {}, o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->files_hashed(), 0);
  EXPECT_EQ((*again)->root().digest(), (*first)->root().digest());

  Write("d/f7", "changed, and longer than before");
  age("d/f7");
  auto edited = Snapshot::FromDirectory(dir_, {}, o);
  ASSERT_TRUE(edited.ok()) << edited.status();
  EXPECT_EQ((*edited)->files_hashed(), 1);
  auto uncached = Snapshot::FromDirectory(dir_, {}, {});
  ASSERT_TRUE(uncached.ok()) << uncached.status();
  EXPECT_EQ((*edited)->root().digest(), (*uncached)->root().digest());
  EXPECT_NE((*edited)->root().digest(), (*first)->root().digest());
  EXPECT_EQ((*edited)->files().size(), 20u);
}

}  // namespace
}  // namespace farm::scheduler::context
