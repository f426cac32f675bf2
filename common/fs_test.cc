#include "common/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "gtest/gtest.h"

namespace farm::common {
namespace {

TEST(FsTest, WriteReadRemove) {
  auto tmp = TempDir::Create("fs-test");
  ASSERT_TRUE(tmp.ok());
  std::string dir = JoinPath(tmp->path(), "a/b/c");
  ASSERT_TRUE(MakeDirs(dir).ok());
  std::string f = JoinPath(dir, "x");
  ASSERT_TRUE(WriteFileAtomic(f, "hello").ok());
  EXPECT_EQ(*ReadFile(f), "hello");
  ASSERT_TRUE(WriteFileAtomic(f, "bye").ok());
  EXPECT_EQ(*ReadFile(f), "bye");
  EXPECT_EQ(ReadFile(f + "nope").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(RemoveAll(JoinPath(tmp->path(), "a")).ok());
  EXPECT_FALSE(PathExists(dir));
}

TEST(FsTest, CleanPath) {
  EXPECT_EQ(CleanPath("a//b/../c/."), "a/c");
  EXPECT_EQ(CleanPath("/../x"), "/x");
  EXPECT_EQ(CleanPath("../x"), "../x");
  EXPECT_EQ(CleanPath(""), ".");
  EXPECT_EQ(CleanPath("/"), "/");
  EXPECT_EQ(JoinPath("/", "a"), "/a");
  EXPECT_EQ(JoinPath("a/", "/b"), "a/b");
}

}  // namespace
}  // namespace farm::common

namespace farm::common {
namespace {

// OpenBeneath (openat2) and its fallback walk behave alike on what matters: no symlink is
// followed, the last component included, and nothing outside the directory is reached.
class OpenBeneathTest : public ::testing::TestWithParam<bool> {
 protected:
  absl::StatusOr<int> Open(int dirfd, absl::string_view rel, int flags) {
    return GetParam() ? internal::OpenBeneathByWalk(dirfd, rel, flags, 0)
                      : OpenBeneath(dirfd, rel, flags);
  }
};

TEST_P(OpenBeneathTest, FollowsNoSymlink) {
  auto t = TempDir::Create("beneath");
  ASSERT_TRUE(t.ok());
  std::string root = t->path() + "/root", outside = t->path() + "/outside";
  ASSERT_TRUE(MakeDirs(root + "/a/b").ok());
  ASSERT_TRUE(MakeDirs(outside + "/b").ok());
  ASSERT_TRUE(WriteFileAtomic(root + "/a/b/f", "inside").ok());
  ASSERT_TRUE(WriteFileAtomic(outside + "/b/f", "outside").ok());
  ASSERT_EQ(symlink(outside.c_str(), (root + "/link").c_str()), 0);  // absolute, out
  ASSERT_EQ(symlink("a", (root + "/rel").c_str()), 0);               // relative, in
  ASSERT_EQ(symlink("b/f", (root + "/a/flink").c_str()), 0);         // the last component
  UniqueFd dir(open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_GE(dir.get(), 0);

  auto f = Open(dir.get(), "a/b/f", O_RDONLY);
  ASSERT_TRUE(f.ok()) << f.status();
  UniqueFd file(*f);
  char buf[16] = {0};
  EXPECT_EQ(read(file.get(), buf, sizeof(buf)), 6);
  EXPECT_STREQ(buf, "inside");
  auto d = Open(dir.get(), "", O_PATH | O_DIRECTORY);  // the directory itself
  ASSERT_TRUE(d.ok()) << d.status();
  close(*d);

  for (const char* through : {"link/b/f", "link/b", "rel/b/f", "a/flink"}) {
    auto r = Open(dir.get(), through, O_RDONLY);
    EXPECT_FALSE(r.ok()) << through;
    EXPECT_TRUE(absl::StrContains(r.status().message(), "symbolic links")) << r.status();
  }
  auto missing = Open(dir.get(), "a/nope", O_RDONLY);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  // ".." cannot leave: openat2 keeps it inside the root, the walk refuses it.
  auto up = Open(dir.get(), "../outside/b/f", O_RDONLY);
  EXPECT_FALSE(up.ok());
}

INSTANTIATE_TEST_SUITE_P(OpenatAndWalk, OpenBeneathTest, ::testing::Bool());

}  // namespace
}  // namespace farm::common
