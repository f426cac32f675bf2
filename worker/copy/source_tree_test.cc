#include "worker/copy/source_tree.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::worker::copy {
namespace {

using ::testing::ElementsAre;

FileInfo File(uint32_t mode = 0644, int64_t size = 0) {
  FileInfo f;
  f.mode = mode;
  f.size = size;
  return f;
}

std::vector<std::string> Names(const absl::StatusOr<std::vector<DirEntry>>& entries) {
  std::vector<std::string> out;
  EXPECT_TRUE(entries.ok()) << entries.status();
  if (entries.ok()) {
    for (const DirEntry& e : *entries) out.push_back(e.name);
  }
  return out;
}

TEST(IndexedTreeTest, MissingParentsAreAddedAsPlainDirectories) {
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  t.Add("a/b/c.txt", File(0600));
  auto a = t.Lstat("a");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->is_dir());
  EXPECT_EQ(a->mode, 0755u);
  EXPECT_EQ(a->uid, 0u);
  EXPECT_TRUE(t.Lstat("a/b")->is_dir());
  EXPECT_EQ(t.Lstat("a/b/c.txt")->mode, 0600u);
  EXPECT_EQ(t.size(), 3u);
  // The root always exists.
  EXPECT_TRUE(t.Lstat("")->is_dir());
  EXPECT_THAT(Names(t.ReadDir("")), ElementsAre("a"));
}

TEST(IndexedTreeTest, ADirectoryAddedLaterReplacesTheImpliedOne) {
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  t.Add("d/f", File());
  FileInfo dir;
  dir.type = FileType::kDirectory;
  dir.mode = 0700;
  dir.uid = 1000;
  t.Add("d", dir);
  EXPECT_EQ(t.Lstat("d")->mode, 0700u);
  EXPECT_EQ(t.Lstat("d")->uid, 1000u);
  EXPECT_THAT(Names(t.ReadDir("d")), ElementsAre("f"));  // its child is kept
}

TEST(IndexedTreeTest, ReadDirIsSortedByBytes) {
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  for (const char* n : {"b", "B", "a b", "a-b", "a", "é", "z", "_"}) t.Add(n, File());
  EXPECT_THAT(Names(t.ReadDir("")), ElementsAre("B", "_", "a", "a b", "a-b", "b", "z", "é"));
}

TEST(IndexedTreeTest, ErrorsSayWhatIsWrong) {
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  t.Add("f", File());
  EXPECT_EQ(t.Lstat("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.ReadDir("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(t.ReadDir("f").status().code(), absl::StatusCode::kFailedPrecondition);
  // No content reader: structure only.
  absl::Status s = t.ReadFile("f", [](absl::string_view) { return absl::OkStatus(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(t.HostPath("f"), "");
}

TEST(IndexedTreeTest, ContentComesFromTheReaderAndOnlyForRegularFiles) {
  std::map<std::string, std::string> content = {{"src/main.c", "int main;\n"}};
  IndexedTree t(
      SymlinkPolicy::kRooted,
      [&](absl::string_view path, const FileInfo& info, const ReadSink& sink) {
        return sink(content.at(std::string(path)));
      },
      [](absl::string_view path) { return absl::StrCat("/host/", path); });
  t.Add("src/main.c", File(0644, 10));
  FileInfo link;
  link.type = FileType::kSymlink;
  link.link_target = "main.c";
  t.Add("src/link", link);
  std::string got;
  ASSERT_TRUE(t.ReadFile("src/main.c", [&](absl::string_view c) {
                 got.append(c.data(), c.size());
                 return absl::OkStatus();
               }).ok());
  EXPECT_EQ(got, "int main;\n");
  EXPECT_EQ(t.ReadFile("src/link", [](absl::string_view) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.ReadFile("src", [](absl::string_view) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(t.HostPath("src/main.c"), "/host/src/main.c");
  EXPECT_EQ(t.symlink_policy(), SymlinkPolicy::kRooted);
  EXPECT_EQ(t.Lstat("src/link")->link_target, "main.c");
}

TEST(IndexedTreeTest, EntriesListParentsBeforeChildren) {
  IndexedTree t(SymlinkPolicy::kContained, nullptr);
  t.Add("x/y/z", File());
  t.Add("w", File());
  t.Add("x-a", File());
  t.Add("x/a", File());
  // Walk order (a directory before its children), unlike byte order ("x-a" < "x/a").
  EXPECT_THAT(t.Paths(), ElementsAre("w", "x", "x/a", "x/y", "x/y/z", "x-a"));
  EXPECT_EQ(t.size(), 6u);
}

}  // namespace
}  // namespace farm::worker::copy
