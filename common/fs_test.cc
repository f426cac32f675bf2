#include "common/fs.h"

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
