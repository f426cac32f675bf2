// Compressors: round trips, determinism whatever the thread count, and readers elsewhere
// (gzip -d, zstd -d) accept what we write.
#include <cstdio>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "oci/compression.h"

namespace farm::oci {
namespace {

class StringSink : public common::ByteSink {
 public:
  absl::Status Write(absl::string_view d) override {
    out.append(d.data(), d.size());
    return absl::OkStatus();
  }
  std::string out;
};

// Mixed data: compressible text with random runs, 3.5 MiB (several gzip chunks).
std::string TestData(size_t size) {
  std::mt19937 rng(42);
  std::string s;
  s.reserve(size);
  while (s.size() < size) {
    if (rng() % 10 == 0) {
      for (int i = 0; i < 100; ++i) s.push_back(static_cast<char>(rng()));
    } else {
      absl::StrAppend(&s, "line ", rng() % 1000, " of some text that repeats\n");
    }
  }
  s.resize(size);
  return s;
}

std::string Compress(Compression c, int threads, const std::string& data, size_t write_size) {
  StringSink sink;
  auto comp = Compressor::Create({c, 0, threads}, &sink);
  EXPECT_OK(comp);
  for (size_t i = 0; i < data.size(); i += write_size) {
    EXPECT_OK((*comp)->Write(absl::string_view(data).substr(i, write_size)));
  }
  EXPECT_OK((*comp)->Finish());
  return sink.out;
}

std::string Decompress(const std::string& data, Compression* format) {
  StringSink sink;
  auto d = Decompressor::Create(&sink);
  for (size_t i = 0; i < data.size(); i += 65536) {
    EXPECT_OK(d->Write(absl::string_view(data).substr(i, 65536)));
  }
  EXPECT_OK(d->Finish());
  *format = d->format();
  return sink.out;
}

TEST(CompressTest, RoundTripAndDeterministicAcrossThreadCounts) {
  std::string data = TestData(3 * (1 << 20) + 12345);
  for (Compression c : {Compression::kGzip, Compression::kZstd, Compression::kNone}) {
    std::string one = Compress(c, 1, data, 100000);
    for (int threads : {2, 4, 7}) {
      EXPECT_EQ(Compress(c, threads, data, 65536), one)
          << CompressionName(c) << " with " << threads << " threads";
    }
    Compression format;
    EXPECT_EQ(Decompress(one, &format), data) << CompressionName(c);
    EXPECT_EQ(format, c);
    if (c != Compression::kNone) EXPECT_LT(one.size(), data.size() * 3 / 4);
  }
}

TEST(CompressTest, EmptyInputIsAValidStream) {
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    std::string out = Compress(c, 2, "", 1);
    EXPECT_FALSE(out.empty());
    Compression format;
    EXPECT_EQ(Decompress(out, &format), "");
  }
}

TEST(CompressTest, TruncatedStreamIsAnError) {
  std::string data = TestData(200000);
  for (Compression c : {Compression::kGzip, Compression::kZstd}) {
    std::string out = Compress(c, 2, data, 4096);
    StringSink sink;
    auto d = Decompressor::Create(&sink);
    ASSERT_OK(d->Write(absl::string_view(out).substr(0, out.size() / 2)));
    EXPECT_EQ(d->Finish().code(), absl::StatusCode::kInvalidArgument) << CompressionName(c);
  }
}

TEST(CompressTest, LevelsAreChecked) {
  StringSink sink;
  EXPECT_EQ(Compressor::Create({Compression::kGzip, 13, 1}, &sink).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Compressor::Create({Compression::kZstd, 20, 1}, &sink).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CompressTest, SystemToolsDecompressOurOutput) {
  auto tmp = common::TempDir::Create("compress-test");
  ASSERT_OK(tmp);
  std::string data = TestData(2500000);
  struct Tool {
    Compression c;
    const char* cmd;
  };
  for (Tool t : {Tool{Compression::kGzip, "gzip -dc"}, Tool{Compression::kZstd, "zstd -qdc"}}) {
    std::string in = tmp->path() + "/in";
    std::string out = tmp->path() + "/out";
    ASSERT_OK(common::WriteFileAtomic(in, Compress(t.c, 2, data, 1 << 20)));
    ASSERT_EQ(system(absl::StrCat(t.cmd, " < ", in, " > ", out).c_str()), 0) << t.cmd;
    auto got = common::ReadFile(out);
    ASSERT_OK(got);
    EXPECT_TRUE(*got == data) << t.cmd;
  }
}

}  // namespace
}  // namespace farm::oci
