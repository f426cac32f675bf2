// LayerTree: the directories of a new layer, as the image has them or as the step creates them,
// and their mtimes restored after their content is written.
#include "worker/copy/layer_tree.h"

#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/copy/materialize.h"
#include "worker/copy/source_tree.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::copy {
namespace {

namespace fs = farm::worker::testing;

class LayerTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("layer-tree");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    img_ = tmp_->path() + "/image";
    out_ = tmp_->path() + "/out";
    ASSERT_OK(common::MakeDirs(img_ + "/usr/local", 0755));
    ASSERT_EQ(chmod((img_ + "/usr").c_str(), 0711), 0);
    ASSERT_EQ(lchown((img_ + "/usr").c_str(), 3, 4), 0);
    ASSERT_OK(fs::SetMtime(img_ + "/usr", 1111));
    ASSERT_OK(fs::SetXattr(img_ + "/usr", "user.farm-test", "kept"));
    ASSERT_OK(fs::WriteFile(img_ + "/etc", "a file here\n"));
    ASSERT_OK(common::MakeDirs(out_, 0755));
    image_ = std::make_unique<layerstore::StackView>(std::vector<std::string>{img_});
  }
  struct stat Stat(const std::string& rel) {
    struct stat st = {};
    EXPECT_EQ(lstat((out_ + "/" + rel).c_str(), &st), 0) << rel;
    return st;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::string img_, out_;
  std::unique_ptr<layerstore::StackView> image_;
};

TEST_F(LayerTreeTest, DirectoriesTheImageHasAreCopiedAsItHasThem) {
  LayerTree tree(out_, image_.get());
  ASSERT_OK(tree.EnsureDir("usr/local/bin", Attrs{0700, 9, 9, 42}));
  struct stat usr = Stat("usr");
  EXPECT_EQ(usr.st_mode & 07777, 0711u);  // from the image
  EXPECT_EQ(usr.st_uid, 3u);
  EXPECT_EQ(usr.st_gid, 4u);
  struct stat bin = Stat("usr/local/bin");  // new: the attributes given
  EXPECT_EQ(bin.st_mode & 07777, 0700u);
  EXPECT_EQ(bin.st_uid, 9u);
  ASSERT_OK(tree.Finish());
  EXPECT_EQ(Stat("usr").st_mtim.tv_sec, 1111);
  EXPECT_EQ(Stat("usr/local/bin").st_mtim.tv_sec, 42);
  EXPECT_EQ(tree.HostPath("usr/local"), out_ + "/usr/local");
  EXPECT_EQ(tree.HostPath(""), out_);
}

TEST_F(LayerTreeTest, FinishRestoresMtimesThatWritingChanged) {
  LayerTree tree(out_, image_.get());
  ASSERT_OK(tree.EnsureDir("app", Attrs{0755, 0, 0, 100}));
  ASSERT_OK(common::WriteFileAtomic(out_ + "/app/new", "x"));  // bumps app's mtime
  EXPECT_NE(Stat("app").st_mtim.tv_sec, 100);
  tree.AddDir("app", Attrs{0755, 0, 0, 200});  // the caller's say wins
  ASSERT_OK(tree.Finish());
  EXPECT_EQ(Stat("app").st_mtim.tv_sec, 200);
}

TEST_F(LayerTreeTest, WithoutAnImageEveryDirectoryIsNew) {
  LayerTree tree(out_, nullptr);
  ASSERT_OK(tree.EnsureDir("usr/x", Attrs{0750, 1, 2, 0}));
  EXPECT_EQ(Stat("usr").st_mode & 07777, 0750u);  // not the image's 0711: --link
  EXPECT_EQ(Stat("usr").st_uid, 1u);
}

TEST_F(LayerTreeTest, AFileInTheLayerOnTheWayIsNotADirectory) {
  LayerTree tree(out_, image_.get());
  ASSERT_OK(common::WriteFileAtomic(out_ + "/blocker", "f"));
  absl::Status s = tree.EnsureDir("blocker/x", Attrs{});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "/blocker is not a directory");
}

TEST_F(LayerTreeTest, ApplySetsOwnerModeAndTimeWithoutFollowingLinks) {
  ASSERT_OK(fs::WriteFile(out_ + "/target", "t", 0644));
  ASSERT_OK(fs::Symlink("target", out_ + "/link"));
  ASSERT_OK(LayerTree::Apply(out_ + "/link", Attrs{0600, 5, 6, 300}, /*is_symlink=*/true));
  EXPECT_EQ(Stat("link").st_uid, 5u);
  EXPECT_EQ(Stat("link").st_mtim.tv_sec, 300);
  EXPECT_EQ(Stat("target").st_uid, 0u);  // untouched
  EXPECT_EQ(Stat("target").st_mode & 07777, 0644u);
  ASSERT_OK(LayerTree::Apply(out_ + "/target", Attrs{04750, 7, 8, 400}, false));
  EXPECT_EQ(Stat("target").st_mode & 07777, 04750u);
}

// Materialize writes a source subtree to the host as the tree has it (RUN --mount=type=bind
// from the context, cache seeds).
TEST(MaterializeTest, KeepsModesOwnersTimesAndSymlinks) {
  auto t = common::TempDir::Create("materialize");
  ASSERT_OK(t);
  std::map<std::string, std::string> content = {{"d/f", "data"}};
  IndexedTree tree(SymlinkPolicy::kContained,
                   [&](absl::string_view path, const FileInfo&, const ReadSink& sink) {
                     return sink(content.at(std::string(path)));
                   });
  FileInfo dir;
  dir.type = FileType::kDirectory;
  dir.mode = 0750;
  dir.uid = 11;
  dir.mtime_sec = 500;
  tree.Add("d", dir);
  FileInfo f;
  f.mode = 0604;
  f.uid = 12;
  f.gid = 13;
  f.size = 4;
  f.mtime_sec = 600;
  tree.Add("d/f", f);
  FileInfo link;
  link.type = FileType::kSymlink;
  link.link_target = "../elsewhere";
  tree.Add("d/l", link);
  std::string dest = t->path() + "/out";
  ASSERT_OK(Materialize(tree, "d", dest));
  struct stat st;
  ASSERT_EQ(lstat(dest.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_uid, 11u);
  EXPECT_EQ(st.st_mtim.tv_sec, 500);
  ASSERT_EQ(lstat((dest + "/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0604u);
  EXPECT_EQ(st.st_gid, 13u);
  EXPECT_EQ(st.st_mtim.tv_sec, 600);
  EXPECT_EQ(*common::ReadFile(dest + "/f"), "data");
  char buf[64];
  ssize_t n = readlink((dest + "/l").c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "../elsewhere");
  // The destination must not exist yet.
  EXPECT_FALSE(Materialize(tree, "d", dest).ok());
}

}  // namespace
}  // namespace farm::worker::copy
