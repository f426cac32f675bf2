// BuildCopyLayer on its own: an in-memory source tree, a one-layer image on disk, and the new
// layer's tree checked file by file. The rules asserted are Docker's documented COPY/ADD rules
// (https://docs.docker.com/engine/reference/builder/#copy) as BuildKit applies them; where the
// two differ the test says so. (worker:copy_test runs the same rules end to end through the
// executor and the layer archive.)
#include "worker/copy/copy_op.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/copy/source_tree.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::copy {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

namespace fs = farm::worker::testing;

// What one entry of the new layer looks like.
struct Entry {
  char type = '?';  // f(ile), d(ir), l(ink)
  uint32_t mode = 0;
  uint32_t uid = 0, gid = 0;
  int64_t mtime = 0;
  std::string content;  // files: the bytes; links: the target
};

class CopyOpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("copy-op");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    // The image: users and groups, a directory with attributes of its own, a file, links.
    std::string img = tmp_->path() + "/image";
    ASSERT_OK(fs::WriteFile(img + "/etc/passwd",
                            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"));
    ASSERT_OK(fs::WriteFile(img + "/etc/group", "root:x:0:\nstaff:x:50:\napp:x:1000:\n"));
    ASSERT_OK(common::MakeDirs(img + "/srv", 0750));
    ASSERT_EQ(chmod((img + "/srv").c_str(), 0750), 0);
    ASSERT_EQ(lchown((img + "/srv").c_str(), 5, 6), 0);
    ASSERT_OK(fs::SetMtime(img + "/srv", 777));
    ASSERT_OK(fs::WriteFile(img + "/file.txt", "in the image\n"));
    ASSERT_OK(fs::Symlink("srv", img + "/lnk"));
    image_ = std::make_unique<layerstore::StackView>(std::vector<std::string>{img});

    // The build context.
    AddFile("a.txt", "a\n");
    AddFile("b.txt", "b\n");
    AddFile("run.sh", "#!/bin/sh\n", 0755);
    AddFile("secret.key", "k", 0600);
    AddFile("owned", "o", 0644, /*uid=*/1000);
    AddFile("dir/x", "x\n");
    AddFile("dir/sub/y", "y\n");
    AddLink("dir/link", "x");
    AddLink("dir/abs", "/etc/passwd");
    AddFile("srcs/a/same", "from a\n");
    AddFile("srcs/b/same", "from b\n");
    AddFile("my file.txt", "spaces\n");
    AddFile("héllo wörld ✓.txt", "unicode\n");
    AddFile("arr[0].txt", "brackets\n");
    AddFile("only.md", "md\n");
  }

  void AddFile(const std::string& path, const std::string& content, uint32_t mode = 0644,
               uint32_t uid = 0, int64_t mtime = 0) {
    FileInfo f;
    f.mode = mode;
    f.uid = uid;
    f.gid = uid;
    f.size = static_cast<int64_t>(content.size());
    f.mtime_sec = mtime;
    content_[path] = content;
    tree_.Add(path, f);
  }
  void AddLink(const std::string& path, const std::string& target) {
    FileInfo l;
    l.type = FileType::kSymlink;
    l.mode = 0777;
    l.link_target = target;
    tree_.Add(path, l);
  }

  farm::v1::CopyOp Op(std::vector<std::string> srcs, const std::string& dest) {
    farm::v1::CopyOp op;
    for (const std::string& s : srcs) op.add_srcs(s);
    op.set_dest(dest);
    return op;
  }

  // Runs the COPY into a fresh layer directory; returns its status.
  absl::Status Copy(const farm::v1::CopyOp& op, bool context = true) {
    out_ = absl::StrCat(tmp_->path(), "/layer", ++runs_);
    std::string scratch = absl::StrCat(tmp_->path(), "/scratch", runs_);
    EXPECT_OK(common::MakeDirs(out_, 0755));
    EXPECT_OK(common::MakeDirs(scratch, 0700));
    CopyInputs in;
    in.op = &op;
    in.env = &env_;
    in.output = &output_;
    in.source = &tree_;
    in.source_is_context = context;
    in.image = image_.get();
    in.out_dir = out_;
    in.scratch_dir = scratch;
    in.fetch = fetch_;
    in.cancel = cancel_;
    in.max_extract_bytes = max_extract_;
    return BuildCopyLayer(in);
  }

  // Every entry of the last layer, by path relative to its root.
  std::map<std::string, Entry> Layer() { return Walk(out_, ""); }
  std::vector<std::string> Paths() {
    std::vector<std::string> out;
    for (const auto& [p, e] : Layer()) out.push_back(p);
    return out;
  }
  Entry At(const std::string& rel) {
    auto l = Layer();
    auto it = l.find(rel);
    EXPECT_NE(it, l.end()) << rel << " is not in the layer";
    return it == l.end() ? Entry() : it->second;
  }

  static std::map<std::string, Entry> Walk(const std::string& root, const std::string& rel) {
    std::map<std::string, Entry> out;
    std::string dir = rel.empty() ? root : root + "/" + rel;
    std::vector<std::string> names;
    if (DIR* d = opendir(dir.c_str())) {
      while (struct dirent* de = readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      closedir(d);
    }
    for (const std::string& n : names) {
      std::string r = rel.empty() ? n : rel + "/" + n;
      std::string host = root + "/" + r;
      struct stat st;
      if (lstat(host.c_str(), &st) != 0) continue;
      Entry e;
      e.mode = st.st_mode & 07777;
      e.uid = st.st_uid;
      e.gid = st.st_gid;
      e.mtime = st.st_mtim.tv_sec;
      if (S_ISDIR(st.st_mode)) {
        e.type = 'd';
        auto below = Walk(root, r);
        out.insert(below.begin(), below.end());
      } else if (S_ISLNK(st.st_mode)) {
        e.type = 'l';
        char buf[4096];
        ssize_t len = readlink(host.c_str(), buf, sizeof(buf));
        e.content.assign(buf, len > 0 ? static_cast<size_t>(len) : 0);
      } else {
        e.type = 'f';
        e.content = common::ReadFile(host).value_or("");
      }
      out[r] = e;
    }
    return out;
  }

  std::unique_ptr<common::TempDir> tmp_;
  std::unique_ptr<layerstore::StackView> image_;
  std::map<std::string, std::string> content_;
  IndexedTree tree_{SymlinkPolicy::kContained,
                    [this](absl::string_view path, const FileInfo&, const ReadSink& sink) {
                      return sink(content_.at(std::string(path)));
                    }};
  farm::v1::ExecEnv env_;
  farm::v1::LayerOptions output_;
  UrlFetcher fetch_;
  const absl::Notification* cancel_ = nullptr;
  int64_t max_extract_ = 0;
  std::string out_;
  int runs_ = 0;
};

// "If <dest> does not end with a trailing slash, it will be considered a regular file and the
// contents of <src> will be written at <dest>"; with one, "at <dest>/base(<src>)"; missing
// directories on the way are created.
TEST_F(CopyOpTest, AFileLandsAtTheDestinationOrInsideIt) {
  ASSERT_OK(Copy(Op({"a.txt"}, "/opt/renamed")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("opt", "opt/renamed"));
  EXPECT_EQ(At("opt/renamed").content, "a\n");
  EXPECT_EQ(At("opt/renamed").type, 'f');

  ASSERT_OK(Copy(Op({"a.txt"}, "/opt/dir/")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("opt", "opt/dir", "opt/dir/a.txt"));
  Entry created = At("opt/dir");
  EXPECT_EQ(created.type, 'd');
  EXPECT_EQ(created.mode, 0755u);  // missing directories: 0755, root
  EXPECT_EQ(created.uid, 0u);

  ASSERT_OK(Copy(Op({"a.txt"}, "/opt/dir/.")));  // "/." is a directory too
  EXPECT_THAT(Paths(), UnorderedElementsAre("opt", "opt/dir", "opt/dir/a.txt"));
}

TEST_F(CopyOpTest, AnExistingDirectoryInTheImageIsADirectoryWithoutTheSlash) {
  ASSERT_OK(Copy(Op({"a.txt"}, "/srv")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("srv", "srv/a.txt"));
  // The directory is written as the image has it: the layer changes nothing but a.txt.
  Entry srv = At("srv");
  EXPECT_EQ(srv.mode, 0750u);
  EXPECT_EQ(srv.uid, 5u);
  EXPECT_EQ(srv.gid, 6u);
  EXPECT_EQ(srv.mtime, 777);
}

TEST_F(CopyOpTest, ARelativeDestinationIsUnderTheWorkdir) {
  env_.set_workdir("/app");
  ASSERT_OK(Copy(Op({"a.txt"}, "conf/")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("app", "app/conf", "app/conf/a.txt"));
  ASSERT_OK(Copy(Op({"a.txt"}, ".")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("app", "app/a.txt"));
  env_.clear_workdir();  // no WORKDIR: "/"
  ASSERT_OK(Copy(Op({"a.txt"}, "./")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("a.txt"));
}

// "If <src> is a directory, the entire contents of the directory are copied ... The directory
// itself is not copied, just its contents."
TEST_F(CopyOpTest, ADirectoryCopiesItsContentsNotItself) {
  for (const char* src : {"dir", "dir/", "./dir/."}) {
    ASSERT_OK(Copy(Op({src}, "/dest")));
    EXPECT_THAT(Paths(), UnorderedElementsAre("dest", "dest/x", "dest/sub", "dest/sub/y",
                                              "dest/link", "dest/abs"))
        << src;
  }
  // Symlinks below it are copied as symlinks, targets untouched (even absolute ones).
  EXPECT_EQ(At("dest/link").type, 'l');
  EXPECT_EQ(At("dest/link").content, "x");
  EXPECT_EQ(At("dest/abs").content, "/etc/passwd");
  EXPECT_EQ(At("dest/sub/y").content, "y\n");
}

// A source that is itself a symlink is followed: its target's content under the link's name.
TEST_F(CopyOpTest, ASymlinkNamedAsASourceIsFollowed) {
  ASSERT_OK(Copy(Op({"dir/link"}, "/d/")));
  EXPECT_EQ(At("d/link").type, 'f');
  EXPECT_EQ(At("d/link").content, "x\n");
}

// "If multiple <src> resources are specified ... <dest> must be a directory, and it must end
// with a slash /."
TEST_F(CopyOpTest, SeveralSourcesNeedADirectoryDestination) {
  absl::Status s = Copy(Op({"a.txt", "b.txt"}, "/two"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("When using COPY with more than one source file, the destination must be "
                        "a directory and end with a /"));
  farm::v1::CopyOp add = Op({"a.txt", "b.txt"}, "/two");
  add.set_add(true);
  EXPECT_THAT(std::string(Copy(add).message()), HasSubstr("When using ADD"));
  ASSERT_OK(Copy(Op({"a.txt", "b.txt"}, "/two/")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("two", "two/a.txt", "two/b.txt"));
}

// Several files from one wildcard: BuildKit copies them into the destination as a directory
// even without the trailing slash (the classic builder refused it). One match is a file.
TEST_F(CopyOpTest, WildcardMatchesAndTheDestination) {
  ASSERT_OK(Copy(Op({"*.txt"}, "/w")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("w", "w/a.txt", "w/b.txt", "w/my file.txt",
                                            "w/héllo wörld ✓.txt", "w/arr[0].txt"));
  ASSERT_OK(Copy(Op({"*.md"}, "/notes")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("notes"));
  EXPECT_EQ(At("notes").type, 'f');
  EXPECT_EQ(At("notes").content, "md\n");
  ASSERT_OK(Copy(Op({"s*/?/same"}, "/m/")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("m", "m/same"));  // two matches, one name
  EXPECT_EQ(At("m/same").content, "from b\n");                // the later one wins
}

TEST_F(CopyOpTest, ALaterSourceReplacesAnEarlierOneOfTheSameName) {
  ASSERT_OK(Copy(Op({"srcs/a/same", "srcs/b/same"}, "/d/")));
  EXPECT_EQ(At("d/same").content, "from b\n");
  ASSERT_OK(Copy(Op({"srcs/b/same", "srcs/a/same"}, "/d/")));
  EXPECT_EQ(At("d/same").content, "from a\n");
}

// Docker: names with [ and ] must be escaped "following the Golang rules": arr[[]0].txt.
TEST_F(CopyOpTest, NamesWithSpacesUnicodeAndGlobCharacters) {
  ASSERT_OK(Copy(Op({"my file.txt", "héllo wörld ✓.txt", "arr[[]0].txt"}, "/n/")));
  EXPECT_THAT(Paths(),
              UnorderedElementsAre("n", "n/my file.txt", "n/héllo wörld ✓.txt", "n/arr[0].txt"));
  EXPECT_EQ(At("n/arr[0].txt").content, "brackets\n");
  ASSERT_OK(Copy(Op({"a.txt"}, "/with space/and ünicode/")));
  EXPECT_EQ(At("with space/and ünicode/a.txt").content, "a\n");
}

// "All new files and directories are created with a UID and GID of 0, unless the optional
// --chown flag specifies a given username, groupname, or UID/GID combination"; names come from
// the image's /etc/passwd and /etc/group.
TEST_F(CopyOpTest, OwnersAreRootUnlessChown) {
  ASSERT_OK(Copy(Op({"owned"}, "/o/")));
  EXPECT_EQ(At("o/owned").uid, 0u);  // the context's owner is not kept

  farm::v1::CopyOp op = Op({"dir"}, "/new/parent/");
  op.set_chown("app:staff");
  ASSERT_OK(Copy(op));
  for (const char* p : {"new", "new/parent", "new/parent/x", "new/parent/sub", "new/parent/sub/y",
                        "new/parent/link"}) {
    EXPECT_EQ(At(p).uid, 1000u) << p;
    EXPECT_EQ(At(p).gid, 50u) << p;
  }
  // "a UID without GID will use the same numeric UID as the GID".
  op = Op({"a.txt"}, "/n/");
  op.set_chown("4321");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("n/a.txt").uid, 4321u);
  EXPECT_EQ(At("n/a.txt").gid, 4321u);
  op.set_chown("10:20");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("n/a.txt").gid, 20u);
  // The image's existing directories keep their owner: --chown is about what COPY creates.
  op = Op({"a.txt"}, "/srv/");
  op.set_chown("app");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("srv").uid, 5u);
  EXPECT_EQ(At("srv/a.txt").uid, 1000u);
}

TEST_F(CopyOpTest, UnknownChownNamesAreErrorsNamingThem) {
  farm::v1::CopyOp op = Op({"a.txt"}, "/d/");
  op.set_chown("ghost");
  absl::Status s = Copy(op);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ghost"));
  op.set_chown("app:nogroup");
  s = Copy(op);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("nogroup"));
}

// --chmod (octal only) sets the files and directories COPY copies; symlinks have no mode of
// their own, and directories it merely creates on the way keep 0755.
TEST_F(CopyOpTest, ChmodSetsWhatIsCopied) {
  farm::v1::CopyOp op = Op({"dir"}, "/c/d");
  op.set_chmod("0640");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("c").mode, 0755u);  // created on the way
  EXPECT_EQ(At("c/d/x").mode, 0640u);
  EXPECT_EQ(At("c/d/sub").mode, 0640u);
  EXPECT_EQ(At("c/d/sub/y").mode, 0640u);
  EXPECT_EQ(At("c/d/link").type, 'l');
  op = Op({"run.sh"}, "/bin/");
  op.set_chmod("4755");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("bin/run.sh").mode, 04755u);
  for (const char* bad : {"u+x", "999", "123456", "-1"}) {
    op.set_chmod(bad);
    absl::Status s = Copy(op);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("--chmod=", bad))) << bad;
  }
}

// Without --chmod, a file gets the permission bits its source tree reports (how a tree derives
// them is the tree's business: see CasTree).
TEST_F(CopyOpTest, WithoutChmodTheSourceTreesBitsAreKept) {
  ASSERT_OK(Copy(Op({"secret.key", "run.sh"}, "/k/")));
  EXPECT_EQ(At("k/secret.key").mode, 0600u);
  EXPECT_EQ(At("k/run.sh").mode, 0755u);
}

TEST_F(CopyOpTest, ContextMtimesAreSourceDateEpochOrZeroStageFilesKeepTheirs) {
  AddFile("stamped", "s", 0640, /*uid=*/7, /*mtime=*/5000);
  ASSERT_OK(Copy(Op({"stamped"}, "/t/")));
  EXPECT_EQ(At("t/stamped").mtime, 0);
  EXPECT_EQ(At("t").mtime, 0);
  output_.set_source_date_epoch(1700000000);
  ASSERT_OK(Copy(Op({"stamped"}, "/t/")));
  EXPECT_EQ(At("t/stamped").mtime, 1700000000);
  EXPECT_EQ(At("t").mtime, 1700000000);
  // From a stage or image (not the context): owner, mode and mtime as they are there.
  output_.clear_source_date_epoch();
  ASSERT_OK(Copy(Op({"stamped"}, "/t/"), /*context=*/false));
  EXPECT_EQ(At("t/stamped").mtime, 5000);
  EXPECT_EQ(At("t/stamped").uid, 7u);
  EXPECT_EQ(At("t/stamped").mode, 0640u);
}

TEST_F(CopyOpTest, TheDestinationResolvesThroughTheImagesSymlinks) {
  ASSERT_OK(Copy(Op({"a.txt"}, "/lnk/")));  // /lnk -> srv
  EXPECT_THAT(Paths(), UnorderedElementsAre("srv", "srv/a.txt"));
  // --link reads nothing from the image: the path is taken as written.
  farm::v1::CopyOp op = Op({"a.txt"}, "/lnk/");
  op.set_link(true);
  ASSERT_OK(Copy(op));
  EXPECT_THAT(Paths(), UnorderedElementsAre("lnk", "lnk/a.txt"));
  EXPECT_EQ(At("lnk").type, 'd');
}

TEST_F(CopyOpTest, WhatTheImageHasAsAFileCannotBecomeADirectory) {
  absl::Status s = Copy(Op({"dir"}, "/file.txt"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot copy a directory to /file.txt"));
  s = Copy(Op({"a.txt"}, "/file.txt/inside"));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()), HasSubstr("/file.txt"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("not a directory"));
  // A file onto a file is a replacement.
  ASSERT_OK(Copy(Op({"a.txt"}, "/file.txt")));
  EXPECT_EQ(At("file.txt").content, "a\n");
}

TEST_F(CopyOpTest, MissingAndEscapingSourcesAreErrorsNamingTheSource) {
  absl::Status s = Copy(Op({"a.txt", "nope.txt"}, "/d/"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("source \"nope.txt\""));
  // A wildcard that matches nothing copies nothing, no error (BuildKit's AllowEmptyWildcard, as
  // docker build: conformance case copy-wildcard-no-match).
  ASSERT_OK(Copy(Op({"*.rs"}, "/d/")));
  EXPECT_TRUE(Layer().empty());
  s = Copy(Op({"../outside"}, "/d/"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("outside the build context"));
}

TEST_F(CopyOpTest, MalformedOperationsAreInvalid) {
  EXPECT_EQ(Copy(Op({"a.txt"}, "")).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Copy(Op({}, "/d/")).code(), absl::StatusCode::kInvalidArgument);
  farm::v1::CopyOp op = Op({"a.txt"}, "/d/");
  op.set_checksum("sha256:" + std::string(64, 'a'));
  absl::Status s = Copy(op);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("--checksum is only supported for HTTP(S)"));
  s = Copy(Op({"https://example.com/x.txt"}, "/d/"));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("COPY cannot download URLs; use ADD"));
  farm::v1::CopyOp git = Op({"https://github.com/x/y.git"}, "/d/");
  git.set_add(true);
  EXPECT_EQ(Copy(git).code(), absl::StatusCode::kUnimplemented);
}

TEST_F(CopyOpTest, ACancelledCopyStops) {
  absl::Notification cancel;
  cancel.Notify();
  cancel_ = &cancel;
  EXPECT_EQ(Copy(Op({"a.txt"}, "/d/")).code(), absl::StatusCode::kCancelled);
}

TEST_F(CopyOpTest, ExcludedEntriesAreSkipped) {
  farm::v1::CopyOp op = Op({"dir"}, "/e/");
  op.add_excludes("sub");
  op.add_excludes("link");
  ASSERT_OK(Copy(op));
  EXPECT_THAT(Paths(), UnorderedElementsAre("e", "e/x", "e/abs"));
}

// ADD <url>: downloaded (mode 0600, the mtime of Last-Modified), named after the URL, checked
// against --checksum, not extracted.
TEST_F(CopyOpTest, AddDownloadsAUrl) {
  std::map<std::string, std::string> served = {{"https://example.com/files/tool.sh", "#!tool\n"}};
  fetch_ = [&](const std::string& url, const std::string& dest,
               const absl::Notification*) -> absl::StatusOr<Fetched> {
    auto it = served.find(url);
    if (it == served.end()) return absl::NotFoundError(url + ": 404");
    EXPECT_OK(common::WriteFileAtomic(dest, it->second));
    Fetched f;
    f.digest = common::DigestOf(it->second);
    f.last_modified = 1000000000;
    f.filename = UrlFileName(url);
    return f;
  };
  farm::v1::CopyOp op = Op({"https://example.com/files/tool.sh"}, "/dl/");
  op.set_add(true);
  op.set_checksum("sha256:" + common::DigestOf("#!tool\n").hash);
  ASSERT_OK(Copy(op));
  Entry e = At("dl/tool.sh");
  EXPECT_EQ(e.content, "#!tool\n");
  EXPECT_EQ(e.mode, 0600u);
  EXPECT_EQ(e.mtime, 1000000000);
  // To a file name.
  op.set_dest("/usr/bin/tool");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("usr/bin/tool").content, "#!tool\n");
  // A wrong checksum.
  op.set_checksum("sha256:" + common::DigestOf("other").hash);
  absl::Status s = Copy(op);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("checksum mismatch"));
  op.set_checksum("md5:abc");
  EXPECT_THAT(std::string(Copy(op).message()), HasSubstr("only sha256:<hex> is supported"));
  // A missing URL is the fetcher's NOT_FOUND, naming the source.
  farm::v1::CopyOp missing = Op({"https://example.com/nope"}, "/dl/");
  missing.set_add(true);
  s = Copy(missing);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr("source \"https://example.com/nope\""));
}

// ADD <local archive>: extracted into the destination (owners from the archive, --chown
// applied, --chmod not); --unpack=false copies it as a file.
TEST_F(CopyOpTest, AddExtractsALocalArchive) {
  std::string src = tmp_->path() + "/archive-src";
  ASSERT_OK(fs::WriteFile(src + "/pkg/bin/tool", "tool\n", 0751));
  std::string tar = tmp_->path() + "/pkg.tar.gz";
  std::string cmd = absl::StrCat("tar -z --owner=5 --group=6 -C ", src, " -cf ", tar, " pkg 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  AddFile("pkg.tar.gz", *common::ReadFile(tar));
  farm::v1::CopyOp op = Op({"pkg.tar.gz"}, "/opt/");
  op.set_add(true);
  op.set_chmod("0600");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("opt/pkg/bin/tool").content, "tool\n");
  EXPECT_EQ(At("opt/pkg/bin/tool").mode, 0751u);
  EXPECT_EQ(At("opt/pkg/bin/tool").uid, 5u);
  op.set_chown("app");
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("opt/pkg/bin/tool").uid, 1000u);
  op.set_unpack(false);
  ASSERT_OK(Copy(op));
  EXPECT_THAT(Paths(), UnorderedElementsAre("opt", "opt/pkg.tar.gz"));
  // COPY never extracts.
  ASSERT_OK(Copy(Op({"pkg.tar.gz"}, "/opt/")));
  EXPECT_THAT(Paths(), UnorderedElementsAre("opt", "opt/pkg.tar.gz"));
}

// ADD of a decompression bomb in miniature (a few KiB of gzip, 16 MiB of zeros) and of a
// sparse file (a few KiB of tar declaring 1 GiB) against a 1 MiB bound: both fail naming the
// source, the entry and the setting, and neither file reaches its full size on disk.
TEST_F(CopyOpTest, AddStopsAnArchiveThatExpandsPastTheLimit) {
  std::string src = tmp_->path() + "/bomb-src";
  ASSERT_OK(fs::WriteFile(src + "/zeros", std::string(16 << 20, '\0'), 0644));
  std::string tgz = tmp_->path() + "/bomb.tar.gz";
  std::string cmd = absl::StrCat("tar -z -C ", src, " -cf ", tgz, " zeros 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  std::string bytes = *common::ReadFile(tgz);
  ASSERT_LT(bytes.size(), 64u << 10);
  AddFile("bomb.tar.gz", bytes);
  max_extract_ = 1 << 20;
  farm::v1::CopyOp op = Op({"bomb.tar.gz"}, "/opt/");
  op.set_add(true);
  absl::Status s = Copy(op);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("ADD bomb.tar.gz"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("1 MiB"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"zeros\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr("--extract-max-size"));
  EXPECT_EQ(Layer().count("opt/zeros"), 0u);

  // GNU sparse: 1 GiB declared, nothing stored.
  std::string sparse_src = tmp_->path() + "/sparse-src";
  ASSERT_OK(common::MakeDirs(sparse_src, 0755));
  cmd = absl::StrCat("truncate -s 1G ", sparse_src, "/hole && tar --sparse -C ", sparse_src,
                     " -cf ", tmp_->path(), "/sparse.tar hole 2>&1");
  ASSERT_EQ(system(cmd.c_str()), 0) << cmd;
  bytes = *common::ReadFile(tmp_->path() + "/sparse.tar");
  ASSERT_LT(bytes.size(), 64u << 10);
  AddFile("sparse.tar", bytes);
  op = Op({"sparse.tar"}, "/opt/");
  op.set_add(true);
  s = Copy(op);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("ADD sparse.tar"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"hole\""));
  EXPECT_EQ(Layer().count("opt/hole"), 0u);

  // Within the bound both extract (the sparse file at its declared size).
  max_extract_ = int64_t{2} << 30;
  ASSERT_OK(Copy(op));
  struct stat st;
  ASSERT_EQ(stat((out_ + "/opt/hole").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, int64_t{1} << 30);
  op = Op({"bomb.tar.gz"}, "/opt/");
  op.set_add(true);
  ASSERT_OK(Copy(op));
  EXPECT_EQ(At("opt/zeros").content.size(), size_t{16} << 20);
}

}  // namespace
}  // namespace farm::worker::copy
