#include "oci/compression.h"

#include <random>
#include <string>

#include "gtest/gtest.h"

namespace farm::oci {
namespace {

std::string Pseudo(size_t n) {
  std::mt19937 rng(7);
  std::string s(n, '\0');
  // Compressible but not trivial.
  for (size_t i = 0; i < n; ++i) s[i] = "abcdefgh"[rng() % 8];
  return s;
}

// Compresses `in` written in pieces of `step` bytes.
std::string Pack(Compression kind, absl::string_view in, size_t step) {
  std::string out;
  common::FunctionSink sink([&](absl::string_view x) {
    out.append(x.data(), x.size());
    return absl::OkStatus();
  });
  auto c = Compressor::Create({kind}, &sink).value();
  for (size_t i = 0; i < in.size(); i += step) {
    EXPECT_TRUE(c->Write(in.substr(i, step)).ok());
  }
  EXPECT_TRUE(c->Finish().ok());
  return out;
}

absl::StatusOr<std::string> Inflate(Compression kind, absl::string_view in, size_t step) {
  std::string out;
  common::FunctionSink sink([&](absl::string_view x) {
    out.append(x.data(), x.size());
    return absl::OkStatus();
  });
  auto d = Decompressor::Create(kind, &sink);
  for (size_t i = 0; i < in.size(); i += step) {
    absl::Status s = d->Write(in.substr(i, step));
    if (!s.ok()) return s;
  }
  absl::Status s = d->Finish();
  if (!s.ok()) return s;
  return out;
}

class CodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(CodecTest, RoundTripsInAnyChunking) {
  std::string data = Pseudo(3 << 20);
  std::string packed = Pack(GetParam(), data, 65536);
  if (GetParam() != Compression::kNone) EXPECT_LT(packed.size(), data.size() / 2);
  EXPECT_EQ(DetectCompression(packed), GetParam());
  for (size_t step : {size_t{1} << 20, size_t{4093}, size_t{7}}) {
    if (step == 7 && packed.size() > 200000) continue;
    absl::StatusOr<std::string> back = Inflate(GetParam(), packed, step);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, data);
  }
  // Deterministic: compressing again gives the same bytes.
  EXPECT_EQ(Pack(GetParam(), data, 100000), packed);
}

TEST_P(CodecTest, DigesterMatchesIndependentHashes) {
  std::string data = Pseudo(1 << 20);
  std::string packed = Pack(GetParam(), data, 1 << 20);
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
  std::string packed = Pack(GetParam(), data, 1 << 20);
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
  // gzip checks a CRC; Farm's zstd frames carry no checksum (layers are verified by their
  // digests), so corrupt the frame header there.
  std::string bad = packed;
  size_t from = GetParam() == Compression::kZstd ? 1 : 100;
  for (size_t i = from; i < from + 100; ++i) bad[i] = static_cast<char>(bad[i] ^ 0x33);
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
  std::string packed = Pack(GetParam(), data, 1 << 20);
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
  std::string packed =
      Pack(Compression::kGzip, "hello ", 100) + Pack(Compression::kGzip, "world", 100);
  absl::StatusOr<std::string> back = Inflate(Compression::kGzip, packed, 3);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, "hello world");
}

TEST(CompressionTest, SinkErrorStops) {
  std::string packed = Pack(Compression::kGzip, Pseudo(100000), 1 << 20);
  common::FunctionSink stop([](absl::string_view) { return absl::CancelledError("stop"); });
  auto d = Decompressor::Create(Compression::kGzip, &stop);
  EXPECT_EQ(d->Write(packed).code(), absl::StatusCode::kCancelled);
}

TEST(CompressionTest, AnExpectedFormatRejectsOtherData) {
  std::string packed = Pack(Compression::kZstd, "zstd bytes", 100);
  EXPECT_EQ(Inflate(Compression::kGzip, packed, 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Inflate(Compression::kZstd, "plain text here", 1000).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace farm::oci
