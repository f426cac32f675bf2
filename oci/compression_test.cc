#include "oci/compression.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace image {
namespace {

std::string Pseudo(size_t n) {
  std::mt19937 rng(7);
  std::string s(n, '\0');
  // Compressible but not trivial.
  for (size_t i = 0; i < n; ++i) s[i] = "abcdefgh"[rng() % 8];
  return s;
}

std::string Pack(Compressor& c, absl::string_view in, size_t step) {
  std::string out;
  ChunkSink sink = [&](absl::string_view x) {
    out.append(x.data(), x.size());
    return absl::OkStatus();
  };
  for (size_t i = 0; i < in.size(); i += step) {
    EXPECT_TRUE(c.Update(in.substr(i, step), sink).ok());
  }
  EXPECT_TRUE(c.Finish(sink).ok());
  return out;
}

absl::StatusOr<std::string> Inflate(Compression kind, absl::string_view in, size_t step) {
  auto d = Decompressor::Create(kind).value();
  std::string out;
  ChunkSink sink = [&](absl::string_view x) {
    out.append(x.data(), x.size());
    return absl::OkStatus();
  };
  for (size_t i = 0; i < in.size(); i += step) {
    absl::Status s = d->Update(in.substr(i, step), sink);
    if (!s.ok()) return s;
  }
  absl::Status s = d->Finish(sink);
  if (!s.ok()) return s;
  return out;
}

class CodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CodecTest, RoundTripsInAnyChunking) {
  std::string data = Pseudo(3 << 20);
  auto c = Compressor::Create(GetParam()).value();
  std::string packed = Pack(*c, data, 65536);
  if (GetParam() != Compression::kNone) EXPECT_LT(packed.size(), data.size() / 2);
  EXPECT_EQ(DetectCompression(packed), GetParam());
  for (size_t step : {size_t{1} << 20, size_t{4093}, size_t{7}}) {
    if (step == 7 && packed.size() > 200000) continue;
    absl::StatusOr<std::string> back = Inflate(GetParam(), packed, step);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, data);
  }
  // Deterministic: compressing again gives the same bytes.
  auto c2 = Compressor::Create(GetParam()).value();
  EXPECT_EQ(Pack(*c2, data, 100000), packed);
}

TEST_P(CodecTest, DigesterMatchesIndependentHashes) {
  std::string data = Pseudo(1 << 20);
  auto c = Compressor::Create(GetParam()).value();
  std::string packed = Pack(*c, data, 1 << 20);
  LayerDigester ld(GetParam());
  for (size_t i = 0; i < packed.size(); i += 10000) {
    ASSERT_TRUE(ld.Update(absl::string_view(packed).substr(i, 10000)).ok());
  }
  absl::StatusOr<LayerDigests> got = ld.Finish();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->digest, common::DigestOf(packed));
  EXPECT_EQ(got->diff_id, common::DigestOf(data));
  EXPECT_EQ(got->diff_id.size_bytes, static_cast<int64_t>(data.size()));
}

TEST_P(CodecTest, AsyncDigesterAgreesAndReportsErrors) {
  std::string data = Pseudo(2 << 20);
  auto c = Compressor::Create(GetParam()).value();
  std::string packed = Pack(*c, data, 1 << 20);
  {
    AsyncLayerDigester ad(GetParam(), /*hash_stored=*/true, /*max_queued_bytes=*/64 << 10);
    for (size_t i = 0; i < packed.size(); i += 10000) {
      ASSERT_TRUE(ad.Update(absl::string_view(packed).substr(i, 10000)).ok());
    }
    absl::StatusOr<LayerDigests> got = ad.Finish();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->digest, common::DigestOf(packed));
    EXPECT_EQ(got->diff_id, common::DigestOf(data));
  }
  if (GetParam() == Compression::kNone) return;
  std::string bad = packed;
  for (size_t i = 100; i < 200; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x33);
  AsyncLayerDigester ad(GetParam(), /*hash_stored=*/false, 64 << 10);
  absl::Status s;
  for (size_t i = 0; i < bad.size() && s.ok(); i += 10000) {
    s = ad.Update(absl::string_view(bad).substr(i, 10000));
  }
  if (s.ok()) s = ad.Finish().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  // Destroying it without Finish after an error must not hang.
  AsyncLayerDigester abandoned(GetParam());
  ASSERT_TRUE(abandoned.Update(packed.substr(0, 1000)).ok());
}

TEST_P(CodecTest, TruncatedOrCorruptIsAnError) {
  if (GetParam() == Compression::kNone) return;
  std::string data = Pseudo(200000);
  auto c = Compressor::Create(GetParam()).value();
  std::string packed = Pack(*c, data, 1 << 20);
  absl::StatusOr<std::string> cut = Inflate(GetParam(), packed.substr(0, packed.size() - 10), 999);
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument);
  std::string bad = packed;
  for (size_t i = 20; i < 60; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x5a);
  EXPECT_FALSE(Inflate(GetParam(), bad, 999).ok());
  EXPECT_FALSE(Inflate(GetParam(), "", 999).ok());
}

INSTANTIATE_TEST_SUITE_P(All, CodecTest,
                         ::testing::Values(Compression::kNone, Compression::kGzip,
                                           Compression::kZstd));

TEST(CompressionTest, ConcatenatedGzipMembersAreOneStream) {
  auto a = Compressor::Create(Compression::kGzip).value();
  auto b = Compressor::Create(Compression::kGzip).value();
  std::string packed = Pack(*a, "hello ", 100) + Pack(*b, "world", 100);
  absl::StatusOr<std::string> back = Inflate(Compression::kGzip, packed, 3);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, "hello world");
}

TEST(CompressionTest, SinkErrorStops) {
  auto c = Compressor::Create(Compression::kGzip).value();
  std::string packed = Pack(*c, Pseudo(100000), 1 << 20);
  auto d = Decompressor::Create(Compression::kGzip).value();
  absl::Status s =
      d->Update(packed, [](absl::string_view) { return absl::CancelledError("stop"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace image
