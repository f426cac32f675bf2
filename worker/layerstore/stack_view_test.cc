// StackView and MergeLayers agree with overlayfs's rules on a stack with whiteouts, opaque
// directories, shadowing and symlinks (including ones pointing out of the root).
#include "worker/layerstore/stack_view.h"

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/layerstore/flatten.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::layerstore {
namespace {

using testing::SetXattr;
using testing::Symlink;
using testing::Whiteout;
using testing::WriteFile;

class StackViewTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("stack-view-test");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    l0_ = tmp_->path() + "/l0";
    l1_ = tmp_->path() + "/l1";
    l2_ = tmp_->path() + "/l2";
    // l0 (bottom): a base system.
    ASSERT_OK(WriteFile(l0_ + "/etc/passwd", "root:x:0:0\n"));
    ASSERT_OK(WriteFile(l0_ + "/etc/group", "root:x:0:\n"));
    ASSERT_OK(WriteFile(l0_ + "/d/old", "o"));
    ASSERT_OK(WriteFile(l0_ + "/f", "file"));
    ASSERT_OK(WriteFile(l0_ + "/usr/lib/libc.so", "c"));
    ASSERT_OK(Symlink("usr/lib", l0_ + "/lib"));
    ASSERT_OK(Symlink("/../../..", l0_ + "/up"));
    ASSERT_OK(Symlink("loop2", l0_ + "/loop1"));
    ASSERT_OK(Symlink("loop1", l0_ + "/loop2"));
    // l1: deletes /etc/group, replaces /d wholesale, turns file /f into a directory.
    ASSERT_OK(Whiteout(l1_ + "/etc/group"));
    ASSERT_OK(WriteFile(l1_ + "/etc/hosts", "h"));
    ASSERT_OK(WriteFile(l1_ + "/d/new", "n"));
    ASSERT_OK(SetXattr(l1_ + "/d", "trusted.overlay.opaque", "y"));
    ASSERT_OK(WriteFile(l1_ + "/f/inner", "i"));
    // l2 (top): modifies passwd.
    ASSERT_OK(WriteFile(l2_ + "/etc/passwd", "root:x:0:0\nnobody:x:65534:65534\n"));
    view_ = std::make_unique<StackView>(std::vector<std::string>{l2_, l1_, l0_});
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::string l0_, l1_, l2_;
  std::unique_ptr<StackView> view_;
};

TEST_F(StackViewTest, LookupFollowsOverlayRules) {
  auto passwd = view_->ReadFile("/etc/passwd", 1000);
  ASSERT_OK(passwd);
  EXPECT_EQ(*passwd, "root:x:0:0\nnobody:x:65534:65534\n");
  EXPECT_FALSE(view_->Lookup("etc/group")->has_value());
  EXPECT_FALSE(view_->Lookup("d/old")->has_value());  // hidden by the opaque /d
  EXPECT_TRUE(view_->Lookup("d/new")->has_value());
  EXPECT_TRUE(view_->Lookup("f/inner")->has_value());
  auto etc = view_->ReadDir("/etc");
  ASSERT_OK(etc);
  EXPECT_EQ(*etc, (std::vector<std::string>{"hosts", "passwd"}));
  auto d = view_->ReadDir("/d");
  ASSERT_OK(d);
  EXPECT_EQ(*d, (std::vector<std::string>{"new"}));
  EXPECT_EQ(view_->ReadDir("/nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StackViewTest, ResolveStaysInsideTheRoot) {
  auto r = view_->Resolve("/lib/libc.so", true);
  ASSERT_OK(r);
  EXPECT_TRUE(r->exists);
  EXPECT_EQ(r->path, "usr/lib/libc.so");
  // "/up" points far above the root: it resolves to the root itself.
  r = view_->Resolve("/up/etc/passwd", true);
  ASSERT_OK(r);
  EXPECT_TRUE(r->exists);
  EXPECT_EQ(r->path, "etc/passwd");
  // A missing tail is kept as written.
  r = view_->Resolve("/lib/x/y/../z", true);
  ASSERT_OK(r);
  EXPECT_FALSE(r->exists);
  EXPECT_EQ(r->path, "usr/lib/x/z");
  // The final symlink itself when not following.
  r = view_->Resolve("/lib", false);
  ASSERT_OK(r);
  EXPECT_EQ(r->path, "lib");
  EXPECT_TRUE(S_ISLNK(r->st.st_mode));
  EXPECT_EQ(view_->Resolve("/loop1/x", true).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(view_->Resolve("/etc/passwd/x", true).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(StackViewTest, MergeLayersMatchesTheView) {
  std::string flat = tmp_->path() + "/flat";
  ASSERT_OK(common::MakeDirs(flat));
  ASSERT_OK(MergeLayers({l0_, l1_, l2_}, flat));
  StackView merged({flat});
  for (const char* p : {"etc", "d", "f", "usr/lib"}) {
    auto a = view_->ReadDir(p);
    auto b = merged.ReadDir(p);
    ASSERT_OK(a);
    ASSERT_OK(b);
    EXPECT_EQ(*a, *b) << p;
  }
  EXPECT_EQ(*merged.ReadFile("etc/passwd", 1000), *view_->ReadFile("etc/passwd", 1000));
  EXPECT_FALSE(common::PathExists(flat + "/etc/group"));
  EXPECT_FALSE(common::PathExists(flat + "/d/old"));
  EXPECT_EQ(testing::GetXattr(flat + "/d", "trusted.overlay.opaque"), "");
}

}  // namespace
}  // namespace farm::worker::layerstore
