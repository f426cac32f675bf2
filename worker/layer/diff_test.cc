// Overlay upperdir → layer tar: order, whiteouts, opaque dirs, hard links, xattrs, clamping,
// normalization and determinism. Runs as root (mknod, trusted.* xattrs).
#include "worker/layer/diff.h"

#include <string>
#include <vector>

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/layer/tar_reader.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::layer {
namespace {

using testing::NetRawCapability;
using testing::SetMtime;
using testing::SetXattr;
using testing::Symlink;
using testing::Whiteout;
using testing::WriteFile;

class StringSink : public common::ByteSink {
 public:
  absl::Status Write(absl::string_view d) override {
    out.append(d.data(), d.size());
    return absl::OkStatus();
  }
  std::string out;
};

struct Entry {
  TarHeader h;
  std::string data;
};

class Collector : public TarEntryHandler {
 public:
  absl::Status OnEntry(const TarHeader& h) override {
    entries.push_back({h, ""});
    return absl::OkStatus();
  }
  absl::Status OnData(absl::string_view d) override {
    entries.back().data.append(d.data(), d.size());
    return absl::OkStatus();
  }
  absl::Status OnEntryEnd() override { return absl::OkStatus(); }
  std::vector<Entry> entries;
};

std::string Diff(const std::string& dir, DiffOptions opts = {}) {
  StringSink sink;
  TarWriter tar(&sink);
  EXPECT_OK(WriteOverlayDirAsTar(dir, opts, &tar));
  EXPECT_OK(tar.Finish());
  return sink.out;
}

std::vector<Entry> Parse(const std::string& tar) {
  Collector c;
  TarReader r(&c);
  EXPECT_OK(r.Write(tar));
  EXPECT_OK(r.Finish());
  return c.entries;
}

// Builds a typical upperdir: what `echo hi > /etc/motd; rm /bin/vi; rm -rf /d && mkdir /d ...`
// leaves behind.
void BuildUpper(const std::string& u) {
  ASSERT_OK(WriteFile(u + "/etc/passwd", "root:x:0:0::/root:/bin/sh\n"));
  ASSERT_EQ(link((u + "/etc/passwd").c_str(), (u + "/etc/passwd-").c_str()), 0);
  ASSERT_OK(Symlink("busybox", u + "/bin/sh"));
  ASSERT_OK(Whiteout(u + "/bin/vi"));
  ASSERT_OK(WriteFile(u + "/d/new", "n"));
  ASSERT_OK(SetXattr(u + "/d", "trusted.overlay.opaque", "y"));
  ASSERT_OK(WriteFile(u + "/ping", "elf", 0755));
  ASSERT_OK(SetXattr(u + "/ping", "security.capability", NetRawCapability()));
  ASSERT_OK(SetXattr(u + "/ping", "trusted.overlay.origin", "junk"));
  // A whiteout in xattr form (what overlay writes where it cannot mknod).
  ASSERT_OK(WriteFile(u + "/x", ""));
  ASSERT_OK(SetXattr(u + "/x", "trusted.overlay.whiteout", ""));
  ASSERT_EQ(chown((u + "/etc/passwd").c_str(), 1000, 1001), 0);
  ASSERT_EQ(chmod((u + "/bin").c_str(), 0711), 0);
  // A socket cannot be archived and is skipped.
  ASSERT_EQ(mknod((u + "/sock").c_str(), S_IFSOCK | 0755, 0), 0);
}

TEST(DiffTest, EntriesOrderAndKinds) {
  auto tmp = common::TempDir::Create("diff-test");
  ASSERT_OK(tmp);
  std::string u = tmp->path() + "/u";
  BuildUpper(u);
  std::vector<Entry> e = Parse(Diff(u));
  std::vector<std::string> names;
  for (const Entry& x : e) names.push_back(x.h.name);
  EXPECT_EQ(names,
            (std::vector<std::string>{".wh.x", "bin", "bin/.wh.vi", "bin/sh", "d", "d/.wh..wh..opq",
                                      "d/new", "etc", "etc/passwd", "etc/passwd-", "ping"}));
  auto find = [&](const std::string& n) -> const Entry& {
    for (const Entry& x : e) {
      if (x.h.name == n) return x;
    }
    static Entry none;
    ADD_FAILURE() << "no entry " << n;
    return none;
  };
  EXPECT_EQ(find(".wh.x").h.type, TarHeader::kRegular);
  EXPECT_EQ(find("bin/.wh.vi").h.size, 0);
  EXPECT_EQ(find("bin").h.mode, 0711u);
  EXPECT_EQ(find("bin/sh").h.type, TarHeader::kSymlink);
  EXPECT_EQ(find("bin/sh").h.linkname, "busybox");
  EXPECT_EQ(find("etc/passwd").h.uid, 1000);
  EXPECT_EQ(find("etc/passwd").h.gid, 1001);
  EXPECT_EQ(find("etc/passwd").data, "root:x:0:0::/root:/bin/sh\n");
  EXPECT_EQ(find("etc/passwd-").h.type, TarHeader::kHardLink);
  EXPECT_EQ(find("etc/passwd-").h.linkname, "etc/passwd");
  const Entry& ping = find("ping");
  ASSERT_EQ(ping.h.xattrs.size(), 1u);  // trusted.overlay.origin never leaves the worker
  EXPECT_EQ(ping.h.xattrs[0].first, "security.capability");
  EXPECT_EQ(ping.h.xattrs[0].second, NetRawCapability());
  EXPECT_EQ(ping.h.mode, 0755u);
}

TEST(DiffTest, EmptyDirHasNoEntries) {
  auto tmp = common::TempDir::Create("diff-test");
  ASSERT_OK(tmp);
  StringSink sink;
  TarWriter tar(&sink);
  auto st = WriteOverlayDirAsTar(tmp->path(), {}, &tar);
  ASSERT_OK(st);
  EXPECT_EQ(st->entries, 0);
}

TEST(DiffTest, ClampAndNormalize) {
  auto tmp = common::TempDir::Create("diff-test");
  ASSERT_OK(tmp);
  std::string u = tmp->path();
  ASSERT_OK(WriteFile(u + "/old", "o"));
  ASSERT_OK(SetMtime(u + "/old", 100));
  ASSERT_OK(WriteFile(u + "/new", "n"));  // mtime: now
  ASSERT_OK(SetXattr(u + "/new", "trusted.overlay.origin", "junk"));
  DiffOptions opts;
  opts.clamp_mtime = 1000;
  opts.normalize_tree = true;
  std::vector<Entry> e = Parse(Diff(u, opts));
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].h.name, "new");
  EXPECT_EQ(e[0].h.mtime, 1000);
  EXPECT_EQ(e[1].h.mtime, 100);
  struct stat st;
  ASSERT_TRUE(testing::Lstat(u + "/new", &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 1000);  // the tree on disk now says what the tar says
  EXPECT_EQ(testing::GetXattr(u + "/new", "trusted.overlay.origin"), "");
}

TEST(DiffTest, SameTreeSameBytesWhenClamped) {
  auto tmp = common::TempDir::Create("diff-test");
  ASSERT_OK(tmp);
  BuildUpper(tmp->path() + "/a");
  BuildUpper(tmp->path() + "/b");
  // Other mtimes in the second tree (as if built later): clamping must hide them.
  ASSERT_EQ(system(("find " + tmp->path() + "/b -exec touch -h -d @5000 {} +").c_str()), 0);
  DiffOptions opts;
  opts.clamp_mtime = 0;
  EXPECT_EQ(Diff(tmp->path() + "/a", opts), Diff(tmp->path() + "/b", opts));
}

}  // namespace
}  // namespace farm::worker::layer
