#include "cache/server/resource_name.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace farm::cache::server {
namespace {

const char kHash[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(ResourceNameTest, ParsesReadNames) {
  auto r = ParseReadResource(absl::StrCat("blobs/", kHash, "/0"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->instance, "");
  EXPECT_EQ(r->digest.hash, kHash);
  r = ParseReadResource(absl::StrCat("team/a/blobs/", kHash, "/42"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->instance, "team/a");
  EXPECT_EQ(r->digest.size_bytes, 42);
}

TEST(ResourceNameTest, ParsesWriteNamesWithMetadata) {
  auto w = ParseWriteResource(absl::StrCat("main/uploads/1234-abcd/blobs/", kHash, "/7/some/meta"));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->instance, "main");
  EXPECT_EQ(w->uuid, "1234-abcd");
  EXPECT_EQ(w->digest.size_bytes, 7);
}

TEST(ResourceNameTest, RejectsMalformedNamesNamingThem) {
  for (std::string name :
       {std::string("blobs"), absl::StrCat("blobs/", kHash), absl::StrCat("blobs/", kHash, "/x"),
        absl::StrCat("blobs/", kHash, "/-1"), absl::StrCat("blobs/", kHash, "/+1"),
        absl::StrCat("blobs/ABC/1"), absl::StrCat("a//blobs/", kHash, "/1"),
        absl::StrCat("/blobs/", kHash, "/1"), absl::StrCat("compressed-blobs/zstd/", kHash, "/1"),
        absl::StrCat("blobs/blake3/", kHash, "/1"), absl::StrCat("blobs/", kHash, "/1/extra")}) {
    auto r = ParseReadResource(name);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << name;
    if (!r.ok()) EXPECT_NE(r.status().message().find(name), absl::string_view::npos) << name;
  }
  for (std::string name : {std::string("uploads"), std::string("uploads//blobs/x/1"),
                           absl::StrCat("uploads/u/", kHash, "/1"),
                           absl::StrCat("uploads/u/compressed-blobs/zstd/", kHash, "/1"),
                           absl::StrCat("blobs/", kHash, "/1")}) {
    EXPECT_EQ(ParseWriteResource(name).status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
}

TEST(ResourceNameTest, InstanceNames) {
  EXPECT_TRUE(ValidateInstanceName("").ok());
  EXPECT_TRUE(ValidateInstanceName("main").ok());
  EXPECT_TRUE(ValidateInstanceName("pr/123").ok());
  EXPECT_FALSE(ValidateInstanceName("/main").ok());
  EXPECT_FALSE(ValidateInstanceName("main/").ok());
  EXPECT_FALSE(ValidateInstanceName("a/uploads/b").ok());
  EXPECT_FALSE(ValidateInstanceName("tab\there").ok());
}

}  // namespace
}  // namespace farm::cache::server
