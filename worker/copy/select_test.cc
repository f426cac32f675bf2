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

// Docker: "to add a file named arr[0].txt, use: COPY arr[[]0].txt /mydir/" (Go filepath.Match
// rules: a source with an unescaped '[' is a pattern).
TEST(SelectNamesTest, SpacesUnicodeAndGlobCharactersInNames) {
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  t.Add("my file.txt", File());
  t.Add("héllo wörld ✓.txt", File());
  t.Add("arr[0].txt", File());
  t.Add("arr0.txt", File());
  t.Add("what?.md", File());
  t.Add("whatX.md", File());
  t.Add("dir with space/inner file", File());
  auto paths = [&](std::vector<std::string> srcs) {
    std::vector<std::string> out;
    auto m = ResolveSources(t, srcs, {});
    EXPECT_TRUE(m.ok()) << m.status();
    if (m.ok()) {
      for (const Match& x : *m) out.push_back(x.path);
    }
    return out;
  };
  // Plain names are looked up as written, spaces and all.
  EXPECT_THAT(paths({"my file.txt", "héllo wörld ✓.txt", "dir with space/inner file"}),
              ElementsAre("my file.txt", "héllo wörld ✓.txt", "dir with space/inner file"));
  // "arr[0].txt" is a pattern: the class [0] matches "0", not the brackets.
  EXPECT_THAT(paths({"arr[0].txt"}), ElementsAre("arr0.txt"));
  // The documented escape: [[] matches a literal "[".
  EXPECT_THAT(paths({"arr[[]0].txt"}), ElementsAre("arr[0].txt"));
  // '?' matches any one character, the literal '?' included; sorted byte-wise.
  EXPECT_THAT(paths({"what?.md"}), ElementsAre("what?.md", "whatX.md"));
  EXPECT_THAT(paths({"*ö*"}), ElementsAre("héllo wörld ✓.txt"));  // UTF-8 bytes match too
  EXPECT_THAT(paths({"dir with space/*"}), ElementsAre("dir with space/inner file"));
}

TEST_F(SelectTest, DirectoriesAndFilesAreTold) {
  auto r = ResolveSources(ctx_, {"src", "a.txt", "src/sub"}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_TRUE((*r)[0].info.is_dir());
  EXPECT_FALSE((*r)[1].info.is_dir());
  EXPECT_EQ((*r)[1].info.type, FileType::kRegular);
  EXPECT_TRUE((*r)[2].info.is_dir());
  EXPECT_FALSE((*r)[0].wildcard);
  // A wildcard can match directories too: each stands for its contents.
  auto w = ResolveSources(ctx_, {"s*"}, {});
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_EQ(w->size(), 1u);
  EXPECT_EQ((*w)[0].path, "src");
  EXPECT_TRUE((*w)[0].info.is_dir());
  EXPECT_TRUE((*w)[0].wildcard);
}

TEST_F(SelectTest, TrailingSlashesOnSources) {
  // A directory named with a trailing slash (or "/.") is the same directory: COPY src/ /d/
  // copies src's contents, like COPY src /d/.
  EXPECT_THAT(Paths(ResolveSources(ctx_, {"src/", "src/.", "./src//sub/"}, {})),
              ElementsAre("src=>src", "src=>src", "src/sub=>src/sub"));
  auto r = ResolveSources(ctx_, {"src/"}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)[0].info.is_dir());
  EXPECT_EQ((*r)[0].base, "");  // what excludes are relative to: src's parent, the root
}

TEST_F(SelectTest, WildcardsFollowGoMatchRules) {
  // '*' matches dotfiles too (no shell rule), never a '/'.
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  t.Add(".env", File());
  t.Add("a.go", File());
  t.Add("b.go", File());
  t.Add("c.go", File());
  t.Add("pkg/d.go", File());
  auto paths = [&](const std::string& src) {
    std::vector<std::string> out;
    auto m = ResolveSources(t, {src}, {});
    EXPECT_TRUE(m.ok()) << src << ": " << m.status();
    if (m.ok()) {
      for (const Match& x : *m) out.push_back(x.path);
    }
    return out;
  };
  EXPECT_THAT(paths("*"), ElementsAre(".env", "a.go", "b.go", "c.go", "pkg"));
  EXPECT_THAT(paths("*.go"), ElementsAre("a.go", "b.go", "c.go"));  // not pkg/d.go
  EXPECT_THAT(paths("[a-b].go"), ElementsAre("a.go", "b.go"));
  EXPECT_THAT(paths("[^a].go"), ElementsAre("b.go", "c.go"));
  EXPECT_THAT(paths("?.go"), ElementsAre("a.go", "b.go", "c.go"));
  EXPECT_THAT(paths("*/*.go"), ElementsAre("pkg/d.go"));
  // Several sources keep their order as written; each one's matches are sorted.
  auto both = ResolveSources(t, {"c.go", "[ab].go"}, {});
  ASSERT_TRUE(both.ok());
  std::vector<std::string> order;
  for (const Match& x : *both) order.push_back(x.path);
  EXPECT_THAT(order, ElementsAre("c.go", "a.go", "b.go"));
}

TEST_F(SelectTest, MissingSourcesNameTheSourceAsWritten) {
  auto r = ResolveSources(ctx_, {"a.txt", "src/nope/x.go"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("source \"src/nope/x.go\": not found"));
  // A wildcard, even under a missing directory, that matches nothing is no error: it copies
  // nothing (BuildKit's AllowEmptyWildcard, as docker build).
  auto w = ResolveSources(ctx_, {"nope/*.go"}, {});
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_TRUE(w->empty());
  // Through a file: not found, saying which component is not a directory.
  auto through = ResolveSources(ctx_, {"a.txt/more"}, {});
  EXPECT_EQ(through.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(through.status().message()), HasSubstr("is not a directory"));
}

}  // namespace
}  // namespace farm::worker::copy
