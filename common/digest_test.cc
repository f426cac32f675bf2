#include "common/digest.h"

#include "gtest/gtest.h"

namespace farm::common {
namespace {

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(DigestOf("").hash, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(DigestOf("abc").hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(DigestOf("abc").size_bytes, 3);
  EXPECT_TRUE(DigestOf("").empty_blob());
}

TEST(DigestTest, StreamingEqualsOneShot) {
  Sha256 h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.Finish(), DigestOf("abc"));
  // Reusable after Finish.
  h.Update("abc");
  EXPECT_EQ(h.Finish(), DigestOf("abc"));
}

TEST(DigestTest, Parse) {
  std::string hex = DigestOf("abc").hash;
  auto d = Digest::ParseOci("sha256:" + hex, 3);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->OciString(), "sha256:" + hex);
  EXPECT_FALSE(Digest::ParseOci("sha512:" + hex, 3).ok());
  EXPECT_FALSE(Digest::ParseOci("sha256:" + hex.substr(1), 3).ok());
  EXPECT_FALSE(Digest::Create(std::string(64, 'A'), 1).ok());
  EXPECT_FALSE(Digest::Create(hex, -1).ok());
  auto p = Digest::Parse(hex + "/3");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->ToString(), hex + "/3");
  EXPECT_FALSE(Digest::Parse(hex + "/x").ok());
}

}  // namespace
}  // namespace farm::common
