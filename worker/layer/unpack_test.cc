// Unpacking layers into overlay lowerdirs: whiteout conversion, and an adversarial set of
// crafted tars that try to write outside the root (../, absolute names, symlink and hard-link
// escapes, whiteouts of "." and "..", forged overlay xattrs, fake whiteout devices).
#include "worker/layer/unpack.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/layer/diff.h"
#include "worker/layer/tar_writer.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::layer {
namespace {

using testing::GetXattr;
using testing::IsWhiteout;
using testing::Lstat;

class StringSink : public common::ByteSink {
 public:
  absl::Status Write(absl::string_view d) override {
    out.append(d.data(), d.size());
    return absl::OkStatus();
  }
  std::string out;
};

TarHeader Reg(std::string name, int64_t size = 0) {
  TarHeader h;
  h.name = std::move(name);
  h.mode = 0644;
  h.size = size;
  return h;
}
TarHeader Dir(std::string name, uint32_t mode = 0755) {
  TarHeader h;
  h.name = std::move(name);
  h.type = TarHeader::kDirectory;
  h.mode = mode;
  return h;
}
TarHeader Link(std::string name, std::string target, TarHeader::Type type) {
  TarHeader h;
  h.name = std::move(name);
  h.type = type;
  h.linkname = std::move(target);
  h.mode = 0777;
  return h;
}

std::string Tar(const std::vector<std::pair<TarHeader, std::string>>& entries) {
  StringSink sink;
  TarWriter w(&sink);
  for (const auto& [h, d] : entries) {
    EXPECT_OK(w.WriteHeader(h));
    if (!d.empty()) EXPECT_OK(w.WriteData(d));
  }
  EXPECT_OK(w.Finish());
  return sink.out;
}

// "name type linkname size" per entry, for comparing archives by content.
std::vector<std::string> Describe(const std::string& tar) {
  struct Lister : TarEntryHandler {
    absl::Status OnEntry(const TarHeader& h) override {
      out.push_back(absl::StrCat(h.name, " ", std::string(1, static_cast<char>(h.type)), " ",
                                 h.linkname, " ", h.size));
      return absl::OkStatus();
    }
    absl::Status OnData(absl::string_view) override { return absl::OkStatus(); }
    absl::Status OnEntryEnd() override { return absl::OkStatus(); }
    std::vector<std::string> out;
  } lister;
  TarReader r(&lister);
  EXPECT_OK(r.Write(tar));
  EXPECT_OK(r.Finish());
  return lister.out;
}

absl::Status Unpack(const std::string& tar, const std::string& dir) {
  absl::Status s = common::MakeDirs(dir);
  if (!s.ok()) return s;
  OverlayUnpacker u(dir);
  TarReader r(&u);
  s = r.Write(tar);
  if (s.ok()) s = r.Finish();
  if (s.ok()) s = u.Finish();
  return s;
}

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("unpack-test");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    root_ = tmp_->path() + "/root/layer";
    outside_ = tmp_->path() + "/root";
  }
  // Expects `tar` to be rejected with INVALID_ARGUMENT mentioning `entry`, and nothing to have
  // been written beside the layer directory.
  void ExpectRejected(const std::string& tar, const std::string& entry) {
    absl::Status s = Unpack(tar, root_);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(std::string(s.message()).find(entry), std::string::npos) << s;
    EXPECT_FALSE(common::PathExists(outside_ + "/escaped"));
    EXPECT_FALSE(common::PathExists(tmp_->path() + "/escaped"));
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::string root_, outside_;
};

TEST_F(UnpackTest, DotDotIsRejected) {
  ExpectRejected(Tar({{Reg("../escaped", 1), "x"}}), "../escaped");
  ExpectRejected(Tar({{Reg("a/../../escaped", 1), "x"}}), "a/../../escaped");
  ExpectRejected(Tar({{Dir("../escaped"), ""}}), "../escaped");
}

TEST_F(UnpackTest, AbsoluteNameIsRejected) {
  ExpectRejected(Tar({{Reg(outside_ + "/escaped", 1), "x"}}), "absolute");
}

TEST_F(UnpackTest, AbsoluteSymlinkEscapeIsRejected) {
  // The symlink itself is fine (it only means something inside the container); writing
  // through it is not.
  ExpectRejected(
      Tar({{Link("evil", outside_, TarHeader::kSymlink), ""}, {Reg("evil/escaped", 1), "x"}}),
      "evil/escaped");
}

TEST_F(UnpackTest, RelativeSymlinkEscapeIsRejected) {
  ExpectRejected(Tar({{Link("up", "..", TarHeader::kSymlink), ""}, {Reg("up/escaped", 1), "x"}}),
                 "up/escaped");
  ExpectRejected(Tar({{Dir("d"), ""},
                      {Link("d/up", "../..", TarHeader::kSymlink), ""},
                      {Dir("d/up/escaped"), ""}}),
                 "d/up/escaped");
}

TEST_F(UnpackTest, HardLinkEscapesAreRejected) {
  ASSERT_OK(testing::WriteFile(outside_ + "/secret", "s"));
  ExpectRejected(Tar({{Link("h", "../secret", TarHeader::kHardLink), ""}}), "h");
  ExpectRejected(Tar({{Link("h", outside_ + "/secret", TarHeader::kHardLink), ""}}), "absolute");
  // A hard link to a symlink links the symlink itself, never what it points to.
  ASSERT_OK(Unpack(Tar({{Link("s", outside_ + "/secret", TarHeader::kSymlink), ""},
                        {Link("h", "s", TarHeader::kHardLink), ""}}),
                   root_));
  struct stat st;
  ASSERT_TRUE(Lstat(root_ + "/h", &st));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  // Through a symlinked directory: not followed.
  ExpectRejected(Tar({{Link("sd", outside_, TarHeader::kSymlink), ""},
                      {Link("h2", "sd/secret", TarHeader::kHardLink), ""}}),
                 "h2");
}

TEST_F(UnpackTest, WhiteoutsOfDotAndDotDotAreRejected) {
  ExpectRejected(Tar({{Reg(".wh.."), ""}}), ".wh..");
  ExpectRejected(Tar({{Reg("a/.wh..."), ""}}), "a/.wh...");
  ExpectRejected(Tar({{Reg(".wh."), ""}}), ".wh.");
}

TEST_F(UnpackTest, ForgedOverlayXattrsAndDevicesAreNotHonoured) {
  TarHeader forged = Dir("d");
  forged.xattrs = {{"trusted.overlay.opaque", "y"}, {"user.note", "kept"}};
  ASSERT_OK(Unpack(Tar({{forged, ""}}), root_));
  EXPECT_EQ(GetXattr(root_ + "/d", "trusted.overlay.opaque"), "");
  EXPECT_EQ(GetXattr(root_ + "/d", "user.note"), "kept");

  TarHeader fake = Reg("fake");
  fake.type = TarHeader::kChar;
  ExpectRejected(Tar({{fake, ""}}), "whiteout");
}

TEST_F(UnpackTest, WhiteoutsBecomeOverlayWhiteouts) {
  TarHeader f = Reg("etc/motd", 2);
  f.mtime = 77;
  f.uid = 5;
  ASSERT_OK(Unpack(Tar({{Dir("bin", 0711), ""},
                        {Reg("bin/.wh.vi"), ""},
                        {Dir("d"), ""},
                        {Reg("d/.wh..wh..opq"), ""},
                        {Reg("d/new", 1), "n"},
                        {Reg(".wh.gone"), ""},
                        {Dir("e"), ""},
                        {Reg("e/.wh.sub"), ""},
                        {Dir("e/sub"), ""},
                        {Reg(".wh..wh.plnk"), ""},
                        {f, "hi"}}),
                   root_));
  EXPECT_TRUE(IsWhiteout(root_ + "/bin/vi"));
  EXPECT_TRUE(IsWhiteout(root_ + "/gone"));
  EXPECT_EQ(GetXattr(root_ + "/d", "trusted.overlay.opaque"), "y");
  EXPECT_EQ(GetXattr(root_ + "/e", "trusted.overlay.opaque"), "");
  // Deleted and recreated in the same layer: opaque, so the old content stays hidden.
  EXPECT_EQ(GetXattr(root_ + "/e/sub", "trusted.overlay.opaque"), "y");
  EXPECT_FALSE(common::PathExists(root_ + "/.wh..wh.plnk"));
  struct stat st;
  ASSERT_TRUE(Lstat(root_ + "/bin", &st));
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  ASSERT_TRUE(Lstat(root_ + "/etc/motd", &st));
  EXPECT_EQ(st.st_mtim.tv_sec, 77);
  EXPECT_EQ(st.st_uid, 5u);
  EXPECT_EQ(*common::ReadFile(root_ + "/etc/motd"), "hi");
}

TEST_F(UnpackTest, RoundTripThroughDiffIsExact) {
  std::string tar = Tar({{Dir("a"), ""},
                         {Reg("a/.wh..wh..opq"), ""},
                         {Reg("a/f", 3), "abc"},
                         {Link("a/g", "a/f", TarHeader::kHardLink), ""},
                         {Link("a/s", "/etc/passwd", TarHeader::kSymlink), ""},
                         {Reg("a/.wh.x"), ""}});
  ASSERT_OK(Unpack(tar, root_));
  StringSink sink;
  TarWriter w(&sink);
  ASSERT_OK(WriteOverlayDirAsTar(root_, {}, &w));
  ASSERT_OK(w.Finish());
  // Same entries; the writer sorts ".wh.x" before "f".
  std::string expected = Tar({{Dir("a"), ""},
                              {Reg("a/.wh..wh..opq"), ""},
                              {Reg("a/.wh.x"), ""},
                              {Reg("a/f", 3), "abc"},
                              {Link("a/g", "a/f", TarHeader::kHardLink), ""},
                              {Link("a/s", "/etc/passwd", TarHeader::kSymlink), ""}});
  EXPECT_EQ(Describe(sink.out), Describe(expected));
}

}  // namespace
}  // namespace farm::worker::layer
