// TarWriter and TarReader: round trips, PAX only when needed, and compatibility with GNU tar.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/layer/tar_reader.h"
#include "worker/layer/tar_writer.h"

namespace farm::worker::layer {
namespace {

struct Collected {
  TarHeader header;
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
  std::vector<Collected> entries;
};

class StringSink : public common::ByteSink {
 public:
  absl::Status Write(absl::string_view d) override {
    out.append(d.data(), d.size());
    return absl::OkStatus();
  }
  std::string out;
};

std::string WriteTar(const std::vector<std::pair<TarHeader, std::string>>& entries) {
  StringSink sink;
  TarWriter w(&sink);
  for (const auto& [h, data] : entries) {
    EXPECT_OK(w.WriteHeader(h));
    if (!data.empty()) EXPECT_OK(w.WriteData(data));
  }
  EXPECT_OK(w.Finish());
  return sink.out;
}

std::vector<Collected> ReadTar(const std::string& tar, size_t chunk) {
  Collector c;
  TarReader r(&c);
  for (size_t i = 0; i < tar.size(); i += chunk) {
    EXPECT_OK(r.Write(absl::string_view(tar).substr(i, chunk)));
  }
  EXPECT_OK(r.Finish());
  EXPECT_TRUE(r.at_end());
  return c.entries;
}

TarHeader File(std::string name, int64_t size) {
  TarHeader h;
  h.name = std::move(name);
  h.mode = 0644;
  h.size = size;
  h.mtime = 1234567890;
  return h;
}

TEST(TarTest, RoundTripAllTypesInAnyChunking) {
  TarHeader dir;
  dir.name = "etc";
  dir.type = TarHeader::kDirectory;
  dir.mode = 0755;
  TarHeader link;
  link.name = "etc/link";
  link.type = TarHeader::kSymlink;
  link.linkname = "/bin/busybox";
  link.mode = 0777;
  TarHeader hard;
  hard.name = "etc/hard";
  hard.type = TarHeader::kHardLink;
  hard.linkname = "etc/passwd";
  TarHeader dev;
  dev.name = "dev/null";
  dev.type = TarHeader::kChar;
  dev.dev_major = 1;
  dev.dev_minor = 3;
  dev.mode = 0666;
  TarHeader suid = File("bin/su", 3);
  suid.mode = 04755;
  suid.uid = 1000;
  suid.gid = 100;
  std::string tar = WriteTar({{dir, ""},
                              {File("etc/passwd", 5), "hello"},
                              {link, ""},
                              {hard, ""},
                              {dev, ""},
                              {suid, "abc"}});
  EXPECT_EQ(tar.size() % 512, 0u);
  for (size_t chunk : {1u, 7u, 512u, 100000u}) {
    std::vector<Collected> got = ReadTar(tar, chunk);
    ASSERT_EQ(got.size(), 6u);
    EXPECT_EQ(got[0].header.name, "etc");
    EXPECT_EQ(got[0].header.type, TarHeader::kDirectory);
    EXPECT_EQ(got[1].data, "hello");
    EXPECT_EQ(got[1].header.mtime, 1234567890);
    EXPECT_EQ(got[2].header.linkname, "/bin/busybox");
    EXPECT_EQ(got[3].header.type, TarHeader::kHardLink);
    EXPECT_EQ(got[3].header.linkname, "etc/passwd");
    EXPECT_EQ(got[4].header.dev_major, 1u);
    EXPECT_EQ(got[4].header.dev_minor, 3u);
    EXPECT_EQ(got[5].header.mode, 04755u);
    EXPECT_EQ(got[5].header.uid, 1000);
    EXPECT_EQ(got[5].data, "abc");
  }
}

TEST(TarTest, PaxOnlyWhenNeeded) {
  // Fits USTAR: a single header block per entry, no 'x' header.
  std::string plain = WriteTar({{File("a/b", 0), ""}});
  EXPECT_EQ(plain.size(), 512u * 3);
  EXPECT_EQ(plain[156], '0');

  // 150 ASCII chars with a slash: USTAR prefix/name split, still no PAX.
  std::string split_name = std::string(60, 'p') + "/" + std::string(89, 'n');
  std::string split = WriteTar({{File(split_name, 0), ""}});
  EXPECT_EQ(split[156], '0');
  EXPECT_EQ(ReadTar(split, 512)[0].header.name, split_name);

  // Too long for USTAR, non-ASCII, huge uid, xattrs: PAX records, read back exactly.
  std::string long_name = std::string(300, 'x');
  TarHeader big = File(long_name, 0);
  big.uid = 1 << 30;
  big.xattrs = {{"security.capability", std::string("\x01\x00\x00\x02", 4)}};
  TarHeader utf = File("caf\xc3\xa9", 0);
  std::string pax = WriteTar({{big, ""}, {utf, ""}});
  EXPECT_EQ(pax[156], 'x');
  std::vector<Collected> got = ReadTar(pax, 333);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].header.name, long_name);
  EXPECT_EQ(got[0].header.uid, 1 << 30);
  ASSERT_EQ(got[0].header.xattrs.size(), 1u);
  EXPECT_EQ(got[0].header.xattrs[0].second, std::string("\x01\x00\x00\x02", 4));
  EXPECT_EQ(got[1].header.name, "caf\xc3\xa9");
}

TEST(TarTest, SameInputSameBytes) {
  auto make = [] { return WriteTar({{File("x", 3), "abc"}, {File("y", 0), ""}}); };
  EXPECT_EQ(make(), make());
}

TEST(TarTest, ReaderRejectsGarbageAndTruncation) {
  Collector c;
  TarReader r(&c);
  std::string junk(512, 'j');
  EXPECT_EQ(r.Write(junk).code(), absl::StatusCode::kInvalidArgument);

  std::string tar = WriteTar({{File("f", 1000), std::string(1000, 'z')}});
  Collector c2;
  TarReader r2(&c2);
  ASSERT_OK(r2.Write(absl::string_view(tar).substr(0, 700)));
  EXPECT_EQ(r2.Finish().code(), absl::StatusCode::kInvalidArgument);
}

// A raw USTAR header block of `type` with a body of `size` bytes.
std::string RawHeader(const std::string& name, char type, int64_t size) {
  std::string b(512, '\0');
  memcpy(&b[0], name.data(), std::min<size_t>(name.size(), 100));
  snprintf(&b[100], 8, "%07o", 0644);
  snprintf(&b[108], 8, "%07o", 0);
  snprintf(&b[116], 8, "%07o", 0);
  snprintf(&b[124], 12, "%011llo", static_cast<unsigned long long>(size));
  snprintf(&b[136], 12, "%011o", 0);
  b[156] = type;
  memcpy(&b[257],
         "ustar\0"
         "00",
         8);
  memset(&b[148], ' ', 8);
  unsigned sum = 0;
  for (unsigned char ch : b) sum += ch;
  snprintf(&b[148], 8, "%06o", sum);
  return b;
}

// One PAX record "LEN key=value\n".
std::string PaxRecord(const std::string& key, const std::string& value) {
  std::string body = key + "=" + value + "\n";
  size_t n = body.size() + 2;
  while (std::to_string(n).size() + 1 + body.size() != n) ++n;
  return std::to_string(n) + " " + body;
}

std::string Padded(std::string body) {
  body.resize((body.size() + 511) / 512 * 512, '\0');
  return body;
}

TEST(TarTest, ReaderBoundsExtendedHeadersPerEntry) {
  // A chain of PAX headers, each under the per-header limit, before one entry: refused once
  // they add up past the per-entry limit, before they pile up in memory.
  std::string rec = PaxRecord("comment", std::string(7 << 20, 'c'));
  std::string tar;
  for (int i = 0; i < 3; ++i) tar += RawHeader("PaxHeader", 'x', rec.size()) + Padded(rec);
  Collector c;
  TarReader r(&c);
  absl::Status s = r.Write(tar);
  if (s.ok()) s = r.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("before one entry"), absl::string_view::npos) << s;

  // Too many xattrs on one entry.
  std::string many;
  for (int i = 0; i < 1025; ++i) many += PaxRecord("SCHILY.xattr.user.k" + std::to_string(i), "v");
  std::string tar2 = RawHeader("PaxHeader", 'x', many.size()) + Padded(many) +
                     RawHeader("f", '0', 0) + std::string(1024, '\0');
  Collector c2;
  TarReader r2(&c2);
  s = r2.Write(tar2);
  if (s.ok()) s = r2.Finish();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("xattrs"), absl::string_view::npos) << s;

  // Within the limits, the same shapes read fine.
  std::string few;
  for (int i = 0; i < 10; ++i) few += PaxRecord("SCHILY.xattr.user.k" + std::to_string(i), "v");
  std::string tar3 = RawHeader("PaxHeader", 'x', few.size()) + Padded(few) +
                     RawHeader("f", '0', 0) + std::string(1024, '\0');
  Collector c3;
  TarReader r3(&c3);
  EXPECT_OK(r3.Write(tar3));
  EXPECT_OK(r3.Finish());
  ASSERT_EQ(c3.entries.size(), 1u);
}

// GNU tar reads what we write (PAX long names, xattrs, hard links), and we read what GNU tar
// writes in its default (GNU) format, with long names in 'L' entries.
TEST(TarTest, CompatibleWithGnuTar) {
  auto tmp = common::TempDir::Create("tar-test");
  ASSERT_OK(tmp);
  std::string long_name = "d/" + std::string(200, 'L');
  TarHeader d;
  d.name = "d";
  d.type = TarHeader::kDirectory;
  d.mode = 0755;
  TarHeader hard;
  hard.name = "d/h";
  hard.type = TarHeader::kHardLink;
  hard.linkname = long_name;
  std::string ours = WriteTar({{d, ""}, {File(long_name, 2), "ok"}, {hard, ""}});
  std::string ours_path = tmp->path() + "/ours.tar";
  ASSERT_OK(common::WriteFileAtomic(ours_path, ours));
  std::string out_dir = tmp->path() + "/x";
  ASSERT_OK(common::MakeDirs(out_dir));
  ASSERT_EQ(system(absl::StrCat("tar -C ", out_dir, " -xf ", ours_path).c_str()), 0);
  auto content = common::ReadFile(out_dir + "/d/h");
  ASSERT_OK(content);
  EXPECT_EQ(*content, "ok");

  std::string gnu_path = tmp->path() + "/gnu.tar";
  ASSERT_EQ(system(absl::StrCat("tar --format=gnu -C ", out_dir, " -cf ", gnu_path, " d").c_str()),
            0);
  auto gnu = common::ReadFile(gnu_path);
  ASSERT_OK(gnu);
  std::vector<Collected> got = ReadTar(*gnu, 4096);
  std::vector<std::string> names;
  for (const auto& e : got) names.push_back(e.header.name);
  EXPECT_NE(std::find(names.begin(), names.end(), long_name), names.end());
}

}  // namespace
}  // namespace farm::worker::layer
