// Key normalization: the same inputs give the same key, every field that matters changes it,
// and the details that must not matter (blank runs, mtimes, owners) do not.
#include "scheduler/plan/keys.h"

#include <set>

#include "common/digest.h"
#include "gtest/gtest.h"

namespace farm::scheduler::plan {
namespace {

using Preimage = std::vector<std::pair<std::string, std::string>>;

// A RUN step's preimage, shaped as planner.h's rule writes it.
Preimage RunPreimage() {
  return {
      {"version", kKeyVersion},
      {"parent", "1f3a"},
      {"op", "RUN [\"/bin/sh\",\"-c\",\"make\"] --network=default --security=sandbox"},
      {"env", "PATH=/usr/bin\n     CC=gcc"},
      {"user", "app"},
      {"workdir", "/src"},
      {"shell", "[\"/bin/sh\",\"-c\"]"},
      {"platform", "linux/amd64"},
      {"layer", "compression=GZIP level=0 source_date_epoch=unset normalize_permissions=false"}};
}

TEST(KeyOfTest, IsTheSha256OfTheNameValueLines) {
  EXPECT_EQ(KeyOf({}), common::Sha256Hex(""));
  EXPECT_EQ(KeyOf({{"version", "farm-key-v1"}, {"op", "RUN x"}}),
            common::Sha256Hex("version: farm-key-v1\nop: RUN x\n"));
  EXPECT_EQ(KeyOf(RunPreimage()).size(), 64u);
}

TEST(KeyOfTest, SameInputsSameKey) { EXPECT_EQ(KeyOf(RunPreimage()), KeyOf(RunPreimage())); }

TEST(KeyOfTest, EveryFieldValueChangesTheKey) {
  const Preimage base = RunPreimage();
  std::set<std::string> keys = {KeyOf(base)};
  for (size_t i = 0; i < base.size(); ++i) {
    Preimage changed = base;
    changed[i].second += "x";
    EXPECT_TRUE(keys.insert(KeyOf(changed)).second) << "changing " << base[i].first;
  }
  // An empty value is a value: dropping it to "" changes the key too.
  Preimage no_user = base;
  no_user[4].second.clear();
  EXPECT_NE(KeyOf(base), KeyOf(no_user));
}

TEST(KeyOfTest, FieldNamesAndOrderAreKeyed) {
  const Preimage base = RunPreimage();
  Preimage renamed = base;
  renamed[1].first = "parents";
  EXPECT_NE(KeyOf(base), KeyOf(renamed));
  Preimage swapped = base;
  std::swap(swapped[4], swapped[5]);
  EXPECT_NE(KeyOf(base), KeyOf(swapped));
  Preimage dropped(base.begin() + 1, base.end());
  EXPECT_NE(KeyOf(base), KeyOf(dropped));
}

TEST(NormalizeShellWhitespaceTest, KeepsQuotedAndEscapedBlanks) {
  EXPECT_EQ(NormalizeShellWhitespace("  a   b\t\tc  "), "a b c");
  EXPECT_EQ(NormalizeShellWhitespace("echo 'a   b' \"c  d\" e\\ \\ f"),
            "echo 'a   b' \"c  d\" e\\ \\ f");
  EXPECT_EQ(NormalizeShellWhitespace("echo \"it's  \"   x"), "echo \"it's  \" x");
}

TEST(NormalizeShellWhitespaceTest, ReindentedContinuationsGiveTheSameCommand) {
  // What the parser leaves of a RUN continued over three lines, indented two ways.
  EXPECT_EQ(NormalizeShellWhitespace("apt-get update     && apt-get install -y         curl"),
            NormalizeShellWhitespace("apt-get update && apt-get install -y\tcurl"));
  EXPECT_EQ(NormalizeShellWhitespace("\t\t"), "");
  EXPECT_EQ(NormalizeShellWhitespace(""), "");
}

TEST(NormalizeShellWhitespaceTest, QuotesAndEscapesNest) {
  // An escaped double quote does not end the quoted string.
  EXPECT_EQ(NormalizeShellWhitespace("echo \"a \\\"  b\"   c"), "echo \"a \\\"  b\" c");
  // Inside single quotes a backslash escapes nothing: the quote ends at the next '.
  EXPECT_EQ(NormalizeShellWhitespace("echo 'a\\'   b"), "echo 'a\\' b");
  // A double quote inside single quotes opens nothing.
  EXPECT_EQ(NormalizeShellWhitespace("echo '\"'   x  \"y\""), "echo '\"' x \"y\"");
  // Newlines are not blanks: a multi-line command keeps its lines.
  EXPECT_EQ(NormalizeShellWhitespace("a  \n  b"), "a \n b");
}

TEST(JsonStringArrayTest, IsCompactEscapedJson) {
  EXPECT_EQ(JsonStringArray({}), "[]");
  EXPECT_EQ(JsonStringArray({"/bin/sh", "-c", "echo \"hi\"\n"}),
            "[\"/bin/sh\",\"-c\",\"echo \\\"hi\\\"\\n\"]");
  // Invalid UTF-8 is replaced (U+FFFD), not an error or an exception.
  EXPECT_EQ(JsonStringArray({"a\xff"}), "[\"a\xEF\xBF\xBD\"]");
}

TEST(OctalModeTest, FourOctalDigits) {
  EXPECT_EQ(OctalMode(0), "0000");
  EXPECT_EQ(OctalMode(0755), "0755");
  EXPECT_EQ(OctalMode(0644), "0644");
  EXPECT_EQ(OctalMode(04755), "4755");
}

TEST(LayerOptionsLineTest, DefaultsAndEveryField) {
  farm::v1::LayerOptions o;
  const std::string base = LayerOptionsLine(o);
  EXPECT_EQ(base, "compression=GZIP level=0 source_date_epoch=unset normalize_permissions=false");

  farm::v1::LayerOptions zstd = o;
  zstd.set_compression(farm::v1::LayerOptions::ZSTD);
  farm::v1::LayerOptions level = o;
  level.set_level(9);
  farm::v1::LayerOptions epoch0 = o;
  epoch0.set_source_date_epoch(0);  // set to 0 is not unset
  farm::v1::LayerOptions epoch = o;
  epoch.set_source_date_epoch(1700000000);
  farm::v1::LayerOptions normalize = o;
  normalize.set_normalize_permissions(true);
  EXPECT_EQ(LayerOptionsLine(zstd),
            "compression=ZSTD level=0 source_date_epoch=unset normalize_permissions=false");
  EXPECT_EQ(LayerOptionsLine(level),
            "compression=GZIP level=9 source_date_epoch=unset normalize_permissions=false");
  EXPECT_EQ(LayerOptionsLine(epoch0),
            "compression=GZIP level=0 source_date_epoch=0 normalize_permissions=false");
  EXPECT_EQ(LayerOptionsLine(epoch),
            "compression=GZIP level=0 source_date_epoch=1700000000 normalize_permissions=false");
  EXPECT_EQ(LayerOptionsLine(normalize),
            "compression=GZIP level=0 source_date_epoch=unset normalize_permissions=true");
}

TEST(ChainTest, TheBaseChainsFollowTheRule) {
  EXPECT_EQ(ScratchChain("linux/amd64"),
            common::Sha256Hex("version: farm-key-v1\nfrom: scratch\nplatform: linux/amd64\n"));
  EXPECT_EQ(ImageChain("linux/arm64", {"sha256:aa", "sha256:bb"}),
            common::Sha256Hex("version: farm-key-v1\nfrom: image\nplatform: linux/arm64\n"
                              "diff_id: sha256:aa\ndiff_id: sha256:bb\n"));
  EXPECT_EQ(UnresolvedImageChain("alpine:3.19", "linux/amd64"),
            common::Sha256Hex("version: farm-key-v1\nunresolved-image: alpine:3.19\n"
                              "platform: linux/amd64\n"));
  EXPECT_EQ(LinkChain("p1", "k1"),
            common::Sha256Hex("version: farm-key-v1\nparent: p1\nlink: k1\n"));
}

TEST(ChainTest, EachInputChangesTheChain) {
  EXPECT_EQ(ScratchChain("linux/amd64"), ScratchChain("linux/amd64"));
  EXPECT_NE(ScratchChain("linux/amd64"), ScratchChain("linux/arm64"));
  // An image without layers is not scratch.
  EXPECT_NE(ImageChain("linux/amd64", {}), ScratchChain("linux/amd64"));
  const std::string img = ImageChain("linux/amd64", {"sha256:aa", "sha256:bb"});
  EXPECT_EQ(img, ImageChain("linux/amd64", {"sha256:aa", "sha256:bb"}));
  EXPECT_NE(img, ImageChain("linux/arm64", {"sha256:aa", "sha256:bb"}));
  EXPECT_NE(img, ImageChain("linux/amd64", {"sha256:bb", "sha256:aa"}));  // layer order
  EXPECT_NE(img, ImageChain("linux/amd64", {"sha256:aa"}));
  EXPECT_NE(UnresolvedImageChain("a", "linux/amd64"), UnresolvedImageChain("b", "linux/amd64"));
  EXPECT_NE(UnresolvedImageChain("a", "linux/amd64"), UnresolvedImageChain("a", "linux/arm64"));
  EXPECT_NE(LinkChain("p1", "k1"), LinkChain("p2", "k1"));
  EXPECT_NE(LinkChain("p1", "k1"), LinkChain("p1", "k2"));
  EXPECT_NE(LinkChain("p1", "k1"), "k1");
}

worker::copy::FileInfo File(uint32_t mode, const std::string& content) {
  worker::copy::FileInfo fi;
  fi.type = worker::copy::FileType::kRegular;
  fi.mode = mode;
  fi.size = static_cast<int64_t>(content.size());
  fi.digest = common::DigestOf(content);
  return fi;
}

TEST(ContextEntryLineTest, Forms) {
  const std::string alpha = common::Sha256Hex("alpha");
  EXPECT_EQ(ContextEntryLine("a.txt", File(0644, "alpha"), false),
            "a.txt\tfile\t-\t" + alpha + "/5");
  EXPECT_EQ(ContextEntryLine("run.sh", File(0755, "alpha"), false),
            "run.sh\tfile\tx\t" + alpha + "/5");
  EXPECT_EQ(ContextEntryLine("a.txt", File(0640, "alpha"), true),
            "a.txt\tfile\t0640\t" + alpha + "/5");

  worker::copy::FileInfo dir;
  dir.type = worker::copy::FileType::kDirectory;
  dir.mode = 0750;
  EXPECT_EQ(ContextEntryLine("sub", dir, false), "sub\tdir\t");
  EXPECT_EQ(ContextEntryLine("sub", dir, true), "sub\tdir\t0750");

  worker::copy::FileInfo link;
  link.type = worker::copy::FileType::kSymlink;
  link.link_target = "../a.txt";
  EXPECT_EQ(ContextEntryLine("l", link, false), "l\tsymlink\t../a.txt");

  worker::copy::FileInfo other;
  other.type = worker::copy::FileType::kOther;
  EXPECT_EQ(ContextEntryLine("fifo", other, false), "fifo\tother");

  worker::copy::FileInfo unhashed = File(0644, "x");
  unhashed.digest.reset();
  EXPECT_EQ(ContextEntryLine("u", unhashed, false), "u\tfile\t-\tunhashed");
}

TEST(ContextEntryLineTest, ContentPathAndModeBitsChangeTheLineButOwnersAndTimesDoNot) {
  const worker::copy::FileInfo base = File(0644, "alpha");
  const std::string line = ContextEntryLine("a.txt", base, false);

  worker::copy::FileInfo touched = base;
  touched.mtime_sec = 1700000000;
  touched.uid = 1000;
  touched.gid = 1000;
  EXPECT_EQ(ContextEntryLine("a.txt", touched, false), line);
  EXPECT_EQ(ContextEntryLine("a.txt", touched, true), ContextEntryLine("a.txt", base, true));

  // Without exact modes (--normalize-permissions) only the executable bit counts.
  EXPECT_EQ(ContextEntryLine("a.txt", File(0600, "alpha"), false), line);
  EXPECT_NE(ContextEntryLine("a.txt", File(0744, "alpha"), false), line);
  // With it, every bit does.
  EXPECT_NE(ContextEntryLine("a.txt", File(0600, "alpha"), true),
            ContextEntryLine("a.txt", base, true));

  EXPECT_NE(ContextEntryLine("a.txt", File(0644, "alphb"), false), line);
  EXPECT_NE(ContextEntryLine("b.txt", base, false), line);
  worker::copy::FileInfo link;
  link.type = worker::copy::FileType::kSymlink;
  link.link_target = "a";
  worker::copy::FileInfo other_link = link;
  other_link.link_target = "b";
  EXPECT_NE(ContextEntryLine("l", link, false), ContextEntryLine("l", other_link, false));
  // A hard-linked file names its group.
  worker::copy::FileInfo linked = base;
  linked.hardlink_group = "first/name";
  EXPECT_EQ(ContextEntryLine("a.txt", linked, true),
            ContextEntryLine("a.txt", base, true) + "\tlinked first/name");
}

}  // namespace
}  // namespace farm::scheduler::plan
