#include "common/patternmatcher.h"

#include "gtest/gtest.h"

namespace farm::common {
namespace {

struct GlobCase {
  const char* pattern;
  const char* name;
  bool match;
  bool bad;
};

// Go's path/filepath match_test.go vectors.
TEST(GlobMatchTest, GoVectors) {
  const GlobCase kCases[] = {
      {"abc", "abc", true, false},
      {"*", "abc", true, false},
      {"*c", "abc", true, false},
      {"a*", "a", true, false},
      {"a*", "abc", true, false},
      {"a*", "ab/c", false, false},
      {"a*/b", "abc/b", true, false},
      {"a*/b", "a/c/b", false, false},
      {"a*b*c*d*e*/f", "axbxcxdxe/f", true, false},
      {"a*b*c*d*e*/f", "axbxcxdxexxx/f", true, false},
      {"a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false, false},
      {"a*b*c*d*e*/f", "axbxcxdxexxx/fff", false, false},
      {"a*b?c*x", "abxbbxdbxebxczzx", true, false},
      {"a*b?c*x", "abxbbxdbxebxczzy", false, false},
      {"ab[c]", "abc", true, false},
      {"ab[b-d]", "abc", true, false},
      {"ab[e-g]", "abc", false, false},
      {"ab[^c]", "abc", false, false},
      {"ab[^b-d]", "abc", false, false},
      {"ab[^e-g]", "abc", true, false},
      {"a\\*b", "a*b", true, false},
      {"a\\*b", "ab", false, false},
      {"a?b",
       "a\xe2\x98\xba"
       "b",
       true, false},
      {"a[^a]b",
       "a\xe2\x98\xba"
       "b",
       true, false},
      {"a???b",
       "a\xe2\x98\xba"
       "b",
       false, false},
      {"a[^a][^a][^a]b",
       "a\xe2\x98\xba"
       "b",
       false, false},
      {"[a-\xce\xb6]*", "\xce\xb1", true, false},
      {"*[a-\xce\xb6]", "A", false, false},
      {"a?b", "a/b", false, false},
      {"a*b", "a/b", false, false},
      {"[\\]a]", "]", true, false},
      {"[\\-]", "-", true, false},
      {"[x\\-]", "x", true, false},
      {"[x\\-]", "-", true, false},
      {"[x\\-]", "z", false, false},
      {"[\\-x]", "x", true, false},
      {"[\\-x]", "-", true, false},
      {"[\\-x]", "a", false, false},
      {"[]a]", "]", false, true},
      {"[-]", "-", false, true},
      {"[x-]", "x", false, true},
      {"[x-]", "-", false, true},
      {"[x-]", "z", false, true},
      {"[-x]", "x", false, true},
      {"[-x]", "-", false, true},
      {"[-x]", "a", false, true},
      {"\\", "a", false, true},
      {"[a-b-c]", "a", false, true},
      {"[", "a", false, true},
      {"[^", "a", false, true},
      {"[^bc", "a", false, true},
      {"a[", "a", false, true},
      {"a[", "ab", false, true},
      {"a[", "x", false, true},
      {"a/b[", "x", false, true},
      {"*x", "xxx", true, false},
  };
  for (const GlobCase& c : kCases) {
    absl::StatusOr<bool> m = GlobMatch(c.pattern, c.name);
    if (c.bad) {
      EXPECT_FALSE(m.ok()) << c.pattern << " " << c.name;
    } else {
      ASSERT_TRUE(m.ok()) << c.pattern << " " << m.status();
      EXPECT_EQ(*m, c.match) << c.pattern << " vs " << c.name;
    }
  }
}

TEST(ContainsWildcardsTest, Basics) {
  EXPECT_TRUE(ContainsWildcards("*.go"));
  EXPECT_TRUE(ContainsWildcards("a?b"));
  EXPECT_TRUE(ContainsWildcards("a[bc]"));
  EXPECT_FALSE(ContainsWildcards("plain/path"));
  EXPECT_FALSE(ContainsWildcards("a\\*b"));
}

struct PmCase {
  const char* pattern;
  const char* path;
  bool match;
};

// moby/patternmatcher's TestMatches vectors (each pattern alone, parents included).
TEST(PatternMatcherTest, MobyVectors) {
  const PmCase kCases[] = {
      {"**", "file", true},
      {"**", "dir/file", true},
      {"**/", "dir/file", true},
      {"**/**", "dir/file", true},
      {"dir/**", "dir/file", true},
      {"dir/**", "dir/dir2/file", true},
      {"**/dir", "dir", true},
      {"**/dir", "dir/file", true},
      {"**/dir2/*", "dir/dir2/file", true},
      {"**/dir2/**", "dir/dir2/dir3/file", true},
      {"**file", "file", true},
      {"**file", "dir/file", true},
      {"**/file", "dir/file", true},
      {"**file", "dir/dir/file", true},
      {"**/file", "dir/dir/file", true},
      {"**/file*", "dir/dir/file", true},
      {"**/file*", "dir/dir/file.txt", true},
      {"**/file*txt", "dir/dir/file.txt", true},
      {"**/file*.txt", "dir/dir/file.txt", true},
      {"**/file*.txt*", "dir/dir/file.txt", true},
      {"**/**/*.txt", "dir/dir/file.txt", true},
      {"**/**/*.txt2", "dir/dir/file.txt", false},
      {"**/*.txt", "file.txt", true},
      {"**/**/*.txt", "file.txt", true},
      {"a**/*.txt", "a/file.txt", true},
      {"a**/*.txt", "a/dir/file.txt", true},
      {"a**/*.txt", "a/dir/dir/file.txt", true},
      {"a/*.txt", "a/dir/file.txt", false},
      {"a/*.txt", "a/file.txt", true},
      {"a/*.txt**", "a/file.txt", true},
      {"a[b-d]e", "ae", false},
      {"a[b-d]e", "ace", true},
      {"a[b-d]e", "aae", false},
      {"a[^b-d]e", "aze", true},
      {".*", ".foo", true},
      {".*", "foo", false},
      {"abc.def", "abcdef", false},
      {"abc.def", "abc.def", true},
      {"abc.def", "abcZdef", false},
      {"abc?def", "abcZdef", true},
      {"abc?def", "abcdef", false},
      {"a\\\\", "a\\", true},
      {"**/foo/bar", "foo/bar", true},
      {"**/foo/bar", "dir/foo/bar", true},
      {"**/foo/bar", "dir/dir2/foo/bar", true},
      {"abc/**", "abc", false},
      {"abc/**", "abc/def", true},
      {"abc/**", "abc/def/ghi", true},
      {"**/.foo", ".foo", true},
      {"**/.foo", "bar.foo", false},
      {"a(b)c/def", "a(b)c/def", true},
      {"a(b)c/def", "a(b)c/xyz", false},
      {"a.|)$(}+{bc", "a.|)$(}+{bc", true},
      {"dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", true},
      // Parent directories match.
      {"docs", "docs/a/b.md", true},
      {"*.md", "docs/a.md", false},
      {"docs/*", "docs/sub/deep.txt", true},
  };
  for (const PmCase& c : kCases) {
    auto pm = PatternMatcher::Create({c.pattern});
    ASSERT_TRUE(pm.ok()) << c.pattern << " " << pm.status();
    EXPECT_EQ(pm->Matches(c.path), c.match) << c.pattern << " vs " << c.path;
  }
}

TEST(PatternMatcherTest, ExclusionsApplyInOrder) {
  auto pm = PatternMatcher::Create({"*.md", "!README*.md", "README-secret.md"});
  ASSERT_TRUE(pm.ok());
  EXPECT_TRUE(pm->has_exclusions());
  EXPECT_TRUE(pm->Matches("CHANGES.md"));
  EXPECT_FALSE(pm->Matches("README.md"));
  EXPECT_TRUE(pm->Matches("README-secret.md"));
  EXPECT_FALSE(pm->Matches("main.go"));
}

TEST(PatternMatcherTest, ReIncludeBelowExcludedDirectory) {
  auto pm = PatternMatcher::Create({"vendor", "!vendor/keep"});
  ASSERT_TRUE(pm.ok());
  EXPECT_TRUE(pm->Matches("vendor/x.go"));
  EXPECT_FALSE(pm->Matches("vendor/keep"));
}

TEST(PatternMatcherTest, BadPatterns) {
  EXPECT_FALSE(PatternMatcher::Create({"!"}).ok());
  EXPECT_FALSE(PatternMatcher::Create({"a["}).ok());
  EXPECT_FALSE(PatternMatcher::Create({"[-x]"}).ok());
}

TEST(ReadIgnoreFileTest, DockerSemantics) {
  const char* kText =
      "\xEF\xBB\xBF# comment\n"
      "  *.log  \n"
      "\n"
      "/abs/path\n"
      "./rel/../x\n"
      "! keep.log\n"
      "dir/\r\n"
      "  # not a comment once trimmed? (Docker checks '#' before trimming)\n";
  std::vector<std::string> got = ReadIgnoreFile(kText);
  std::vector<std::string> want = {"*.log",
                                   "abs/path",
                                   "x",
                                   "!keep.log",
                                   "dir",
                                   "# not a comment once trimmed? (Docker checks '#' before "
                                   "trimming)"};
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace farm::common
