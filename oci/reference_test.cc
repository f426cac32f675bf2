#include "oci/reference.h"

#include <string>

#include "gtest/gtest.h"

namespace farm::oci {
namespace {

const std::string kHex = "ea3ad7ac24ac8df3a6d0d9ef8d5d0b2c3ab5f5e9a4c1e0f8b9d7c6a5b4e3f2a1";

struct Valid {
  std::string in;
  std::string domain, path, tag, digest;
  std::string familiar;  // FamiliarString()
};

TEST(ReferenceTest, NormalizesLikeDocker) {
  const Valid cases[] = {
      {"alpine", "docker.io", "library/alpine", "", "", "alpine"},
      {"alpine:3.19", "docker.io", "library/alpine", "3.19", "", "alpine:3.19"},
      {"library/alpine", "docker.io", "library/alpine", "", "", "alpine"},
      {"docker.io/alpine", "docker.io", "library/alpine", "", "", "alpine"},
      {"docker.io/library/alpine:latest", "docker.io", "library/alpine", "latest", "",
       "alpine:latest"},
      {"index.docker.io/alpine", "docker.io", "library/alpine", "", "", "alpine"},
      {"index.docker.io/library/alpine", "docker.io", "library/alpine", "", "", "alpine"},
      {"foo/bar", "docker.io", "foo/bar", "", "", "foo/bar"},
      {"foo/bar/baz:v1", "docker.io", "foo/bar/baz", "v1", "", "foo/bar/baz:v1"},
      {"docker.io/library/foo/bar", "docker.io", "library/foo/bar", "", "", "library/foo/bar"},
      {"localhost/foo", "localhost", "foo", "", "", "localhost/foo"},
      {"localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", "",
       "localhost:5000/foo/bar:tag"},
      // No slash: "localhost:5000" is the image "localhost" with tag "5000", as in Docker.
      {"localhost:5000", "docker.io", "library/localhost", "5000", "", "localhost:5000"},
      {"127.0.0.1:5000/x", "127.0.0.1:5000", "x", "", "", "127.0.0.1:5000/x"},
      {"[::1]:5000/x:y", "[::1]:5000", "x", "y", "", "[::1]:5000/x:y"},
      {"[2001:db8::1]/x", "[2001:db8::1]", "x", "", "", "[2001:db8::1]/x"},
      {"example.com/a/b", "example.com", "a/b", "", "", "example.com/a/b"},
      {"example.com:443/a", "example.com:443", "a", "", "", "example.com:443/a"},
      {"registry-1.example.com/foo_bar/baz-qux.x__y", "registry-1.example.com",
       "foo_bar/baz-qux.x__y", "", "", "registry-1.example.com/foo_bar/baz-qux.x__y"},
      {"xn--7o8h.com/myimage:xn--7o8h-42", "xn--7o8h.com", "myimage", "xn--7o8h-42", "",
       "xn--7o8h.com/myimage:xn--7o8h-42"},
      // An uppercase first component is taken as a registry.
      {"Foo/bar", "Foo", "bar", "", "", "Foo/bar"},
      {"a--b/c", "docker.io", "a--b/c", "", "", "a--b/c"},
      {"a__b", "docker.io", "library/a__b", "", "", "a__b"},
      {"alpine:_tag", "docker.io", "library/alpine", "_tag", "", "alpine:_tag"},
      {"alpine:A-Z.0_9", "docker.io", "library/alpine", "A-Z.0_9", "", "alpine:A-Z.0_9"},
      {"alpine@sha256:" + kHex, "docker.io", "library/alpine", "", "sha256:" + kHex,
       "alpine@sha256:" + kHex},
      {"alpine:3@sha256:" + kHex, "docker.io", "library/alpine", "3", "sha256:" + kHex,
       "alpine:3@sha256:" + kHex},
      {"localhost:5000/x@sha256:" + kHex, "localhost:5000", "x", "", "sha256:" + kHex,
       "localhost:5000/x@sha256:" + kHex},
      {"foo:" + std::string(128, 'a'), "docker.io", "library/foo", std::string(128, 'a'), "",
       "foo:" + std::string(128, 'a')},
  };
  for (const Valid& c : cases) {
    SCOPED_TRACE(c.in);
    absl::StatusOr<Reference> r = Reference::Parse(c.in);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->domain(), c.domain);
    EXPECT_EQ(r->path(), c.path);
    EXPECT_EQ(r->tag(), c.tag);
    EXPECT_EQ(r->digest(), c.digest);
    EXPECT_EQ(r->FamiliarString(), c.familiar);
    // The canonical string parses back to the same reference.
    absl::StatusOr<Reference> again = Reference::Parse(r->String());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(*again, *r);
  }
}

struct Invalid {
  std::string in;
  std::string error;  // a substring of the message
};

TEST(ReferenceTest, RejectsLikeDocker) {
  const Invalid cases[] = {
      {"", "invalid reference format"},
      {"Alpine", "repository name (library/Alpine) must be lowercase"},
      {"foo/Bar", "repository name (foo/Bar) must be lowercase"},
      {"localhost:5000/Foo", "repository name (Foo) must be lowercase"},
      {"alpine:", "invalid reference format"},
      {"alpine::tag", "invalid reference format"},
      {":tag", "invalid reference format"},
      {"@sha256:" + kHex, "invalid reference format"},
      {"alpine:-tag", "invalid reference format"},
      {"alpine:.tag", "invalid reference format"},
      {"foo:" + std::string(129, 'a'), "invalid reference format"},
      {"foo//bar", "invalid reference format"},
      {"foo/bar/", "invalid reference format"},
      {"-foo", "invalid reference format"},
      {"foo-/bar", "invalid reference format"},
      {"foo___bar", "invalid reference format"},
      {"foo..bar", "invalid reference format"},
      {"foo.-bar", "invalid reference format"},
      {"a b", "invalid reference format"},
      {"example.com:port/x", "invalid reference format"},
      {"[fe80::1%eth0]:5000/x", "invalid reference format"},
      {"alpine@sha256:abc", "invalid reference format"},
      {"alpine@sha256:" + std::string(64, 'A'), "invalid checksum digest format"},
      {"alpine@sha256:" + kHex.substr(1), "invalid checksum digest length"},
      {"alpine@md5:" + kHex.substr(0, 32), "unsupported digest algorithm"},
      {kHex, "cannot specify 64-byte hexadecimal strings"},
      {"example.com/" + std::string(250, 'a'), "must not be more than 255 characters"},
      {"foo_bar.com/x", "is not a valid host name"},
  };
  for (const Invalid& c : cases) {
    SCOPED_TRACE(c.in);
    absl::StatusOr<Reference> r = Reference::Parse(c.in);
    ASSERT_FALSE(r.ok()) << r->String();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(std::string(r.status().message()).find(c.error), std::string::npos) << r.status();
  }
}

TEST(ReferenceTest, DefaultTagAndRewrites) {
  Reference r = Reference::ParseWithDefaultTag("alpine").value();
  EXPECT_EQ(r.String(), "docker.io/library/alpine:latest");
  EXPECT_EQ(r.FamiliarName(), "alpine");
  // A digest reference gets no tag.
  Reference d = Reference::ParseWithDefaultTag("alpine@sha256:" + kHex).value();
  EXPECT_FALSE(d.has_tag());
  EXPECT_EQ(r.WithDigest("sha256:" + kHex).String(), "docker.io/library/alpine@sha256:" + kHex);
  EXPECT_EQ(d.WithTag("x").String(), "docker.io/library/alpine:x");
  EXPECT_EQ(d.NameOnly().String(), "docker.io/library/alpine");
  // 255 characters is the limit, registry included.
  std::string name = "example.com/" + std::string(255 - 12, 'a');
  EXPECT_TRUE(Reference::Parse(name).ok());
}

TEST(ReferenceTest, FromPartsValidates) {
  EXPECT_EQ(Reference::FromParts("localhost:5000", "a/b", "t", "").value().String(),
            "localhost:5000/a/b:t");
  EXPECT_FALSE(Reference::FromParts("localhost:5000", "A", "", "").ok());
  EXPECT_FALSE(Reference::FromParts("docker.io", "x", "-bad", "").ok());
}

TEST(ReferenceTest, RegistryHosts) {
  EXPECT_EQ(RegistryHostFor("docker.io"), "registry-1.docker.io");
  EXPECT_EQ(RegistryHostFor("localhost:5000"), "localhost:5000");
  EXPECT_TRUE(IsValidTag("v1.2-rc_3"));
  EXPECT_FALSE(IsValidTag("a/b"));
  EXPECT_TRUE(IsIdentifier(kHex));
  EXPECT_FALSE(IsIdentifier("sha256:" + kHex));
}

}  // namespace
}  // namespace farm::oci
