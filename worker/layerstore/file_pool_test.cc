#include "worker/layerstore/file_pool.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <optional>
#include <vector>

#include "common/digest.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::layerstore {
namespace {

struct stat Stat(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st;
}

class FilePoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("file-pool");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_.emplace(std::move(*tmp));
    pool_.emplace(tmp_->path() + "/files");
  }

  // Writes `content` at `path` with the key's metadata, as COPY does.
  FilePool::Key Write(const std::string& path, const std::string& content, uint32_t mode = 0644,
                      uint32_t uid = 0, int64_t mtime = 0) {
    EXPECT_TRUE(worker::testing::WriteFile(path, content).ok());
    EXPECT_EQ(chown(path.c_str(), uid, uid), 0);
    EXPECT_EQ(chmod(path.c_str(), mode), 0);
    struct timespec t[2] = {{mtime, 0}, {mtime, 0}};
    EXPECT_EQ(utimensat(AT_FDCWD, path.c_str(), t, 0), 0);
    return FilePool::Key{"app/" + path.substr(path.rfind('/') + 1),
                         common::DigestOf(content),
                         mode,
                         uid,
                         uid,
                         mtime};
  }

  std::string Path(const std::string& name) { return tmp_->path() + "/" + name; }

  std::optional<common::TempDir> tmp_;
  std::optional<FilePool> pool_;
};

TEST_F(FilePoolTest, LinksWhatWasAddedAndNothingElse) {
  FilePool::Key key = Write(Path("a"), "alpha\n");
  EXPECT_FALSE(pool_->LinkInto(key, Path("b")));  // empty pool
  pool_->Add(key, Path("a"));
  ASSERT_TRUE(pool_->LinkInto(key, Path("b")));
  EXPECT_EQ(Stat(Path("a")).st_ino, Stat(Path("b")).st_ino);
  EXPECT_EQ(Stat(Path("a")).st_nlink, 3u);  // a, b and the pool

  // Any field of the key differs: another file.
  for (auto change : std::vector<std::function<void(FilePool::Key*)>>{
           [](FilePool::Key* k) { k->path = "app/other"; },
           [](FilePool::Key* k) { k->digest = common::DigestOf("beta\n"); },
           [](FilePool::Key* k) { k->mode = 0755; },
           [](FilePool::Key* k) { k->uid = 1000; },
           [](FilePool::Key* k) { k->gid = 1000; },
           [](FilePool::Key* k) { k->mtime = 5; },
       }) {
    FilePool::Key other = key;
    change(&other);
    EXPECT_NE(pool_->PathOf(other), pool_->PathOf(key));
    EXPECT_FALSE(pool_->LinkInto(other, Path("c")));
  }
  EXPECT_NE(access(Path("c").c_str(), F_OK), 0);
}

TEST_F(FilePoolTest, APooledFileWhoseMetadataChangedIsDroppedNotLinked) {
  FilePool::Key key = Write(Path("a"), "alpha\n");
  pool_->Add(key, Path("a"));
  ASSERT_EQ(chmod(Path("a").c_str(), 0600), 0);  // (nothing in Farm does this to a layer file)
  EXPECT_FALSE(pool_->LinkInto(key, Path("b")));
  EXPECT_NE(access(pool_->PathOf(key).c_str(), F_OK), 0);  // no longer pooled
  EXPECT_EQ(Stat(Path("a")).st_nlink, 1u);

  // Same for a size that does not match the digest.
  FilePool::Key grown = Write(Path("g"), "short\n");
  pool_->Add(grown, Path("g"));
  FILE* f = fopen(Path("g").c_str(), "a");  // in place: the pooled inode itself grows
  ASSERT_NE(f, nullptr);
  fputs("and longer\n", f);
  fclose(f);
  ASSERT_EQ(chmod(Path("g").c_str(), 0644), 0);
  struct timespec t[2] = {{0, 0}, {0, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, Path("g").c_str(), t, 0), 0);
  EXPECT_FALSE(pool_->LinkInto(grown, Path("h")));
}

TEST_F(FilePoolTest, SweepRemovesOnlyWhatNoLayerHolds) {
  FilePool::Key kept = Write(Path("kept"), "kept\n");
  FilePool::Key gone = Write(Path("gone"), "gone, and some bytes\n");
  pool_->Add(kept, Path("kept"));
  pool_->Add(gone, Path("gone"));
  ASSERT_EQ(unlink(Path("gone").c_str()), 0);  // its layer was evicted
  FilePool::SweepStats s = pool_->Sweep();
  EXPECT_EQ(s.removed, 1);
  EXPECT_EQ(s.removed_bytes, 21);
  EXPECT_EQ(s.kept, 1);
  EXPECT_EQ(access(pool_->PathOf(gone).c_str(), F_OK), -1);
  EXPECT_TRUE(pool_->LinkInto(kept, Path("again")));
  // A sweep of a pool that was never created does nothing.
  EXPECT_EQ(FilePool(Path("none")).Sweep().removed, 0);
}

TEST_F(FilePoolTest, AddingTwiceKeepsTheFirst) {
  FilePool::Key key = Write(Path("a"), "alpha\n");
  pool_->Add(key, Path("a"));
  Write(Path("b"), "alpha\n");
  pool_->Add(key, Path("b"));
  EXPECT_EQ(Stat(pool_->PathOf(key)).st_ino, Stat(Path("a")).st_ino);
  EXPECT_EQ(Stat(Path("b")).st_nlink, 1u);
}

}  // namespace
}  // namespace farm::worker::layerstore
