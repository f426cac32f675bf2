// The trees COPY reads from: the build context in the CAS (CasTree), a host directory
// (DirectoryTree) and a stack of layer directories (StackTree).
#include "worker/copy/trees.h"

#include <sys/stat.h>
#include <unistd.h>

#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/copy/select.h"
#include "worker/testing/fs_helpers.h"
#include "worker/testing/layers.h"

namespace farm::worker::copy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Names(const absl::StatusOr<std::vector<DirEntry>>& entries) {
  std::vector<std::string> out;
  EXPECT_TRUE(entries.ok()) << entries.status();
  if (entries.ok()) {
    for (const DirEntry& e : *entries) out.push_back(e.name);
  }
  return out;
}

std::string Read(const SourceTree& t, const std::string& path) {
  std::string out;
  absl::Status s = t.ReadFile(path, [&](absl::string_view c) {
    out.append(c.data(), c.size());
    return absl::OkStatus();
  });
  EXPECT_TRUE(s.ok()) << path << ": " << s;
  return out;
}

class CasTreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = farm::worker::testing::ContextBuilder()
                    .File("README.md", "# hi\n")
                    .File("src/main.go", "package main\n")
                    .File("src/private.key", "k", false, 0600)  // recorded mode
                    .File("src/with space ✓.txt", "u\n")
                    .Symlink("src/link", "main.go")
                    .Dir("empty")
                    .Store(cas_.get());
    ASSERT_OK(root);
    auto d = common::Digest::ParseOci(root->digest(), root->size());
    ASSERT_OK(d);
    tree_ = std::make_unique<CasTree>(cas_, *d);
  }
  std::shared_ptr<cache::testing::MemoryBlobStore> cas_ =
      std::make_shared<cache::testing::MemoryBlobStore>();
  std::unique_ptr<CasTree> tree_;
};

TEST_F(CasTreeTest, ListsFilesSymlinksAndDirectoriesSorted) {
  EXPECT_THAT(Names(tree_->ReadDir("")), ElementsAre("README.md", "empty", "src"));
  EXPECT_THAT(Names(tree_->ReadDir("src")),
              ElementsAre("link", "main.go", "private.key", "with space ✓.txt"));
  EXPECT_THAT(Names(tree_->ReadDir("empty")), ElementsAre());
  EXPECT_EQ(tree_->symlink_policy(), SymlinkPolicy::kContained);
  EXPECT_EQ(tree_->HostPath("README.md"), "");  // no host file: content streams from the CAS
}

TEST_F(CasTreeTest, LstatKnowsTypesSizesDigestsAndRecordedModes) {
  auto f = tree_->Lstat("src/main.go");
  ASSERT_OK(f);
  EXPECT_EQ(f->type, FileType::kRegular);
  EXPECT_EQ(f->size, 13);
  ASSERT_TRUE(f->digest.has_value());
  EXPECT_EQ(*f->digest, common::DigestOf("package main\n"));
  EXPECT_EQ(f->uid, 0u);
  EXPECT_EQ(f->mtime_sec, 0);  // the context keeps no times
  EXPECT_EQ(tree_->Lstat("src/private.key")->mode, 0600u);
  auto l = tree_->Lstat("src/link");
  ASSERT_OK(l);
  EXPECT_TRUE(l->is_symlink());
  EXPECT_EQ(l->link_target, "main.go");
  EXPECT_TRUE(tree_->Lstat("src")->is_dir());
  EXPECT_TRUE(tree_->Lstat("")->is_dir());
}

TEST_F(CasTreeTest, ReadsContentFromTheCas) {
  EXPECT_EQ(Read(*tree_, "src/with space ✓.txt"), "u\n");
  EXPECT_EQ(Read(*tree_, "README.md"), "# hi\n");
  EXPECT_EQ(tree_->ReadFile("src/link", [](absl::string_view) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(CasTreeTest, MissingPathsAndPathsThroughFiles) {
  EXPECT_EQ(tree_->Lstat("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tree_->Lstat("src/nope").status().code(), absl::StatusCode::kNotFound);
  // Below a file: not found (Lstat), not a directory (ReadDir).
  EXPECT_EQ(tree_->Lstat("README.md/x").status().code(), absl::StatusCode::kNotFound);
  auto r = tree_->ReadDir("README.md");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not a directory"));
  EXPECT_EQ(tree_->ReadDir("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CasTreeTest, DirectoryDigestsNameSubtreesByContent) {
  auto src = tree_->DirectoryDigest("src");
  auto root = tree_->DirectoryDigest("");
  ASSERT_OK(src);
  ASSERT_OK(root);
  EXPECT_NE(*src, *root);
  // The same subtree in another context has the same digest.
  auto other = farm::worker::testing::ContextBuilder()
                   .File("lib/main.go", "package main\n")
                   .File("lib/private.key", "k", false, 0600)
                   .File("lib/with space ✓.txt", "u\n")
                   .Symlink("lib/link", "main.go")
                   .Store(cas_.get());
  ASSERT_OK(other);
  CasTree t2(cas_, *common::Digest::ParseOci(other->digest(), other->size()));
  EXPECT_EQ(*t2.DirectoryDigest("lib"), *src);
}

TEST_F(CasTreeTest, ARootThatIsNotADirectoryMessageIsInvalidArgument) {
  const std::string junk = "not a proto \xff\xff\xff";
  ASSERT_OK(cas_->WriteBlob(common::DigestOf(junk), junk));
  CasTree bad(cas_, common::DigestOf(junk));
  auto r = bad.ReadDir("");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("not a REAPI Directory"));
}

TEST_F(CasTreeTest, SelectionRunsOnIt) {
  auto m = ResolveSources(*tree_, {"src/*.go", "src/link"}, {});
  ASSERT_OK(m);
  ASSERT_EQ(m->size(), 2u);
  EXPECT_EQ((*m)[0].path, "src/main.go");
  EXPECT_EQ((*m)[1].path, "src/link");
  EXPECT_EQ((*m)[1].resolved, "src/main.go");  // a named symlink is followed
}

class HostTreesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("trees");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
  }
  std::string P(const std::string& rel) { return tmp_->path() + "/" + rel; }
  std::unique_ptr<common::TempDir> tmp_;
};

TEST_F(HostTreesTest, DirectoryTreeReadsTheHostAsIs) {
  ASSERT_OK(farm::worker::testing::WriteFile(P("root/bin/tool"), "tool\n", 0750));
  ASSERT_OK(farm::worker::testing::WriteFile(P("root/etc/conf"), "c\n", 0640));
  ASSERT_OK(farm::worker::testing::Symlink("/etc/conf", P("root/abs")));
  ASSERT_OK(farm::worker::testing::SetMtime(P("root/etc/conf"), 1234));
  ASSERT_EQ(lchown(P("root/bin/tool").c_str(), 7, 8), 0);
  DirectoryTree t(P("root"), SymlinkPolicy::kRooted);
  EXPECT_THAT(Names(t.ReadDir("")), ElementsAre("abs", "bin", "etc"));
  auto tool = t.Lstat("bin/tool");
  ASSERT_OK(tool);
  EXPECT_EQ(tool->mode, 0750u);
  EXPECT_EQ(tool->uid, 7u);
  EXPECT_EQ(tool->gid, 8u);
  EXPECT_EQ(tool->size, 5);
  EXPECT_EQ(t.Lstat("etc/conf")->mtime_sec, 1234);
  EXPECT_EQ(t.Lstat("abs")->link_target, "/etc/conf");
  EXPECT_EQ(Read(t, "etc/conf"), "c\n");
  EXPECT_EQ(t.HostPath("etc/conf"), P("root/etc/conf"));
  EXPECT_EQ(t.Lstat("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.ReadDir("etc/conf").status().code(), absl::StatusCode::kFailedPrecondition);
  // Rooted: the absolute link resolves inside the tree.
  auto r = ResolvePath(t, "abs", true);
  ASSERT_OK(r);
  EXPECT_EQ(*r, "etc/conf");
  // Contained (a context on the host): the same link leaves it.
  DirectoryTree ctx(P("root"), SymlinkPolicy::kContained);
  EXPECT_EQ(ResolvePath(ctx, "abs", true).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(HostTreesTest, StackTreeSeesTheTopmostVersionAndHonoursWhiteouts) {
  // Bottom layer, then a top layer that changes one file and deletes another.
  ASSERT_OK(farm::worker::testing::WriteFile(P("lower/etc/a"), "old a\n"));
  ASSERT_OK(farm::worker::testing::WriteFile(P("lower/etc/b"), "b\n"));
  ASSERT_OK(farm::worker::testing::WriteFile(P("upper/etc/a"), "new a\n"));
  ASSERT_OK(farm::worker::testing::Whiteout(P("upper/etc/b")));
  StackTree t(layerstore::StackView({P("upper"), P("lower")}));
  EXPECT_THAT(Names(t.ReadDir("etc")), ElementsAre("a"));
  EXPECT_EQ(Read(t, "etc/a"), "new a\n");
  EXPECT_EQ(t.Lstat("etc/b").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.HostPath("etc/a"), P("upper/etc/a"));
  EXPECT_EQ(t.HostPath("etc/b"), "");
  EXPECT_EQ(t.symlink_policy(), SymlinkPolicy::kRooted);
}

TEST_F(HostTreesTest, HostFileInfoOfAMissingPathIsNotFound) {
  EXPECT_EQ(HostFileInfo(P("nope")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ReadHostFile(P("nope"), [](absl::string_view) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace farm::worker::copy
