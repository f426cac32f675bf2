#include "worker/copy/select.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker::copy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

FileInfo File(uint32_t mode = 0644) {
  FileInfo f;
  f.mode = mode;
  return f;
}
FileInfo Dir() {
  FileInfo d;
  d.type = FileType::kDirectory;
  d.mode = 0755;
  return d;
}
FileInfo Link(const std::string& target) {
  FileInfo l;
  l.type = FileType::kSymlink;
  l.mode = 0777;
  l.link_target = target;
  return l;
}

class SelectTest : public ::testing::Test {
 protected:
  SelectTest()
      : ctx_(SymlinkPolicy::kContained, nullptr), rootfs_(SymlinkPolicy::kRooted, nullptr) {
    for (IndexedTree* t : {&ctx_, &rootfs_}) {
      t->Add("a.txt", File());
      t->Add("b.txt", File());
      t->Add("c.md", File());
      t->Add("bin/tool", File(0755));
      t->Add("src/main.go", File());
      t->Add("src/util.go", File());
      t->Add("src/sub/deep.go", File());
      t->Add("src/sub/notes.txt", File());
      t->Add("link-to-a", Link("a.txt"));
      t->Add("link-to-src", Link("src"));
      t->Add("abs-link", Link("/src/main.go"));
      t->Add("up-link", Link("../etc/passwd"));
      t->Add("loop1", Link("loop2"));
      t->Add("loop2", Link("loop1"));
    }
  }

  std::vector<std::string> Paths(absl::StatusOr<std::vector<Match>> m) {
    EXPECT_TRUE(m.ok()) << m.status();
    std::vector<std::string> out;
    if (m.ok()) {
      for (const Match& x : *m) out.push_back(x.path + "=>" + x.resolved);
    }
    return out;
  }

  IndexedTree ctx_;
  IndexedTree rootfs_;
};

TEST_F(SelectTest, PlainPathsAndCleaning) {
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"a.txt", "/b.txt", "./src/../c.md"}, {})),
              ElementsAre("a.txt=>a.txt", "b.txt=>b.txt", "c.md=>c.md"));
  EXPECT_THAT(Paths(ResolveSources(ctx_, {".", "/"}, {})), ElementsAre("=>", "=>"));
}

TEST_F(SelectTest, EscapesAreErrors) {
  auto r = ResolveSources(ctx_, {"../x"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("outside the build context"));
  // A rooted "/.." stays inside: it is "/" after cleaning.
  EXPECT_TRUE(ResolveSources(ctx_, {"/../a.txt"}, {}).ok());
  // Symlinks out of the context.
  EXPECT_EQ(ResolveSources(ctx_, {"abs-link"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ResolveSources(ctx_, {"up-link"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SelectTest, MissingSourceIsNotFound) {
  auto r = ResolveSources(ctx_, {"nope.txt"}, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("nope.txt"));
  EXPECT_EQ(ResolveSources(ctx_, {"a.txt/x"}, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SelectTest, SymlinkedSourceIsFollowedButKeepsItsName) {
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"link-to-a", "link-to-src/main.go"}, {})),
              ElementsAre("link-to-a=>a.txt", "link-to-src/main.go=>src/main.go"));
  auto r = ResolveSources(ctx_, {"link-to-src"}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)[0].info.is_dir());
  EXPECT_EQ(ResolveSources(ctx_, {"loop1"}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(SelectTest, RootedTreesResolveAbsoluteLinksInside) {
  EXPECT_THAT(Paths(ResolveSources(rootfs_, {"abs-link"}, {})),
              ElementsAre("abs-link=>src/main.go"));
  // ".." stops at the root: ../etc/passwd → etc/passwd, which does not exist.
  EXPECT_EQ(ResolveSources(rootfs_, {"up-link"}, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SelectTest, Wildcards) {
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"*.txt"}, {})),
              ElementsAre("a.txt=>a.txt", "b.txt=>b.txt"));
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"src/*.go"}, {})),
              ElementsAre("src/main.go=>src/main.go", "src/util.go=>src/util.go"));
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"s?c/s*/d[e]ep.go"}, {})),
              ElementsAre("src/sub/deep.go=>src/sub/deep.go"));
  // A matched symlink is followed; matching does not descend through symlinked dirs.
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"link-to-?"}, {})), ElementsAre("link-to-a=>a.txt"));
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"*/main.go"}, {})),
              ElementsAre("src/main.go=>src/main.go"));
  // Through a symlinked base directory (before the first wildcard): followed.
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"link-to-src/m*"}, {})),
              ElementsAre("link-to-src/main.go=>src/main.go"));
}

TEST_F(SelectTest, WildcardErrors) {
  EXPECT_EQ(ResolveSources(ctx_, {"a["}, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SelectTest, WildcardMatchingNothingSelectsNothing) {
  // BuildKit copies with AllowEmptyWildcard: `COPY *.rs /src/` is no error, and copies nothing.
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"*.rs"}, {})), ElementsAre());
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"no-such-dir/*.go"}, {})), ElementsAre());
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"a.txt", "*.rs"}, {})), ElementsAre("a.txt=>a.txt"));
  // Without wildcards a missing source is still an error.
  EXPECT_EQ(ResolveSources(ctx_, {"missing.rs"}, {}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SelectTest, ExcludesOnWildcardMatchesAndWalk) {
  auto ex = common::PatternMatcher::Create({"*.txt", "sub/*.txt"});
  ASSERT_TRUE(ex.ok());
  SelectOptions opts;
  opts.excludes = &*ex;
  // Wildcard matches are excluded by their path relative to the wildcard base.
  auto roots = ResolveSources(ctx_, {"?.txt", "c.md"}, opts);
  ASSERT_TRUE(roots.ok());
  ASSERT_EQ(roots->size(), 1u);
  EXPECT_EQ((*roots)[0].path, "c.md");

  auto src = ResolveSources(ctx_, {"src"}, opts);
  ASSERT_TRUE(src.ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(WalkMatch(ctx_, (*src)[0], &*ex, [&](const std::string& rel, const FileInfo&) {
                seen.push_back(rel);
                return absl::OkStatus();
              }).ok());
  EXPECT_THAT(seen, ElementsAre("", "main.go", "sub", "sub/deep.go", "util.go"));
}

TEST_F(SelectTest, ExcludedDirectoryWithReInclude) {
  auto ex = common::PatternMatcher::Create({"sub", "!sub/notes.txt"});
  ASSERT_TRUE(ex.ok());
  auto src = ResolveSources(ctx_, {"src"}, {});
  ASSERT_TRUE(src.ok());
  std::vector<std::string> seen;
  ASSERT_TRUE(WalkMatch(ctx_, (*src)[0], &*ex, [&](const std::string& rel, const FileInfo&) {
                seen.push_back(rel);
                return absl::OkStatus();
              }).ok());
  EXPECT_THAT(seen, ElementsAre("", "main.go", "sub", "sub/notes.txt", "util.go"));
}

TEST_F(SelectTest, WalkDoesNotFollowSymlinksBelowTheMatch) {
  auto all = ResolveSources(ctx_, {"."}, {});
  ASSERT_TRUE(all.ok());
  std::vector<std::string> links;
  ASSERT_TRUE(WalkMatch(ctx_, (*all)[0], nullptr, [&](const std::string& rel, const FileInfo& i) {
                if (i.is_symlink()) links.push_back(rel + "->" + i.link_target);
                return absl::OkStatus();
              }).ok());
  EXPECT_THAT(links, ElementsAre("abs-link->/src/main.go", "link-to-a->a.txt", "link-to-src->src",
                                 "loop1->loop2", "loop2->loop1", "up-link->../etc/passwd"));
}

TEST_F(SelectTest, ParentsPivot) {
  SelectOptions opts;
  opts.parents = true;
  auto r = ResolveSources(ctx_, {"src/./sub/deep.go", "src/main.go", "./src/*.go"}, opts);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].path, "src/sub/deep.go");
  EXPECT_EQ((*r)[0].base, "src");
  EXPECT_EQ((*r)[1].base, "");
  EXPECT_EQ((*r)[2].base, "");  // "./src/*.go": the leading "./" is no pivot
  // Without --parents the base is the source's directory (what excludes are relative to).
  auto plain = ResolveSources(ctx_, {"src/sub/deep.go"}, {});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)[0].base, "src/sub");
}

}  // namespace
}  // namespace farm::worker::copy
