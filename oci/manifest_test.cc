#include "oci/manifest.h"

#include <string>

#include "gtest/gtest.h"

namespace farm::oci {
namespace {

std::string D(char c) { return "sha256:" + std::string(64, c); }

Descriptor Entry(const std::string& os, const std::string& arch, const std::string& variant,
                 char digest) {
  Descriptor d;
  d.media_type = kOciManifest;
  d.digest = D(digest);
  d.size = 100;
  Platform p;
  p.os = os;
  p.architecture = arch;
  p.variant = variant;
  d.platform = p;
  return d;
}

TEST(ManifestTest, RoundTripIsCanonical) {
  Manifest m;
  m.media_type = kOciManifest;
  m.config = {kOciConfig, D('c'), 123};
  m.layers.push_back({kOciLayerGzip, D('1'), 10});
  m.layers.push_back({kOciLayerZstd, D('2'), 20});
  m.annotations["org.opencontainers.image.created"] = "1970-01-01T00:00:00Z";
  std::string json = m.ToJson();
  EXPECT_EQ(json.find(' '), std::string::npos);
  absl::StatusOr<Manifest> back = Manifest::Parse(json, kOciManifest);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), json);
  ASSERT_EQ(back->layers.size(), 2u);
  EXPECT_EQ(back->layers[1].media_type, kOciLayerZstd);
  EXPECT_EQ(back->config.size, 123);
}

TEST(ManifestTest, MediaTypeFromDocumentOrContentType) {
  const std::string docker = R"({"schemaVersion":2,"mediaType":")" + std::string(kDockerManifest) +
                             R"(","config":{"mediaType":")" + kDockerConfig +
                             R"(","size":7,"digest":")" + D('a') + R"("},"layers":[]})";
  absl::StatusOr<Manifest> m = Manifest::Parse(docker, "");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->media_type, kDockerManifest);
  // A document without mediaType takes the Content-Type (parameters ignored).
  const std::string bare = R"({"schemaVersion":2,"config":{"mediaType":")" +
                           std::string(kOciConfig) + R"(","size":7,"digest":")" + D('a') + R"("}})";
  m = Manifest::Parse(bare, std::string(kOciManifest) + "; charset=utf-8");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->media_type, kOciManifest);
  // Disagreement is an error.
  EXPECT_FALSE(Manifest::Parse(docker, kOciManifest).ok());
}

TEST(ManifestTest, RejectsBadInput) {
  EXPECT_FALSE(Manifest::Parse("[", "").ok());
  EXPECT_FALSE(Manifest::Parse("[]", "").ok());
  absl::StatusOr<Manifest> s1 =
      Manifest::Parse(R"({"schemaVersion":1,"name":"x","fsLayers":[]})", "");
  ASSERT_FALSE(s1.ok());
  EXPECT_NE(std::string(s1.status().message()).find("schema 1"), std::string::npos);
  // Bad digest in a layer names the layer.
  std::string bad = R"({"schemaVersion":2,"mediaType":")" + std::string(kOciManifest) +
                    R"(","config":{"mediaType":"x","size":1,"digest":")" + D('a') +
                    R"("},"layers":[{"mediaType":"y","size":1,"digest":"sha256:abc"}]})";
  absl::StatusOr<Manifest> m = Manifest::Parse(bad, "");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(std::string(m.status().message()).find("layers[0]"), std::string::npos) << m.status();
  std::string negative =
      R"({"schemaVersion":2,"config":{"mediaType":"x","size":-1,"digest":")" + D('a') + R"("}})";
  EXPECT_FALSE(Manifest::Parse(negative, "").ok());
  // An index is not a manifest.
  EXPECT_FALSE(Manifest::Parse(R"({"schemaVersion":2,"manifests":[]})", "").ok());
}

TEST(ManifestTest, PlatformParsingNormalizes) {
  EXPECT_EQ(Platform::Parse("linux/amd64").value().String(), "linux/amd64");
  EXPECT_EQ(Platform::Parse("linux/x86_64").value().String(), "linux/amd64");
  EXPECT_EQ(Platform::Parse("linux/aarch64").value().String(), "linux/arm64");
  EXPECT_EQ(Platform::Parse("linux/arm64/v8").value().String(), "linux/arm64");
  EXPECT_EQ(Platform::Parse("linux/arm").value().String(), "linux/arm/v7");
  EXPECT_EQ(Platform::Parse("linux/armhf").value().String(), "linux/arm/v7");
  EXPECT_EQ(Platform::Parse("Linux/AMD64").value().String(), "linux/amd64");
  EXPECT_FALSE(Platform::Parse("linux").ok());
  EXPECT_FALSE(Platform::Parse("linux/").ok());
  EXPECT_FALSE(Platform::Parse("linux/amd64/v2/x").ok());
  EXPECT_FALSE(Platform::Parse("linux/am d64").ok());
  EXPECT_EQ(Platform::Host().os, "linux");
}

TEST(ManifestTest, SelectsPlatformFromIndex) {
  Index idx;
  idx.media_type = kOciIndex;
  idx.manifests.push_back(Entry("linux", "arm", "v6", '1'));
  idx.manifests.push_back(Entry("linux", "arm", "v7", '2'));
  idx.manifests.push_back(Entry("linux", "arm64", "v8", '3'));
  idx.manifests.push_back(Entry("linux", "amd64", "", '4'));
  idx.manifests.push_back(Entry("windows", "amd64", "", '5'));
  Descriptor attestation = Entry("unknown", "unknown", "", '6');
  attestation.annotations["vnd.docker.reference.type"] = "attestation-manifest";
  idx.manifests.push_back(attestation);

  // Round trip through JSON first: selection works on parsed indexes.
  absl::StatusOr<Index> parsed = Index::Parse(idx.ToJson(), kOciIndex);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->manifests.size(), 6u);

  EXPECT_EQ(SelectPlatform(*parsed, Platform::Parse("linux/amd64").value())->digest, D('4'));
  EXPECT_EQ(SelectPlatform(*parsed, Platform::Parse("linux/arm64").value())->digest, D('3'));
  EXPECT_EQ(SelectPlatform(*parsed, Platform::Parse("linux/arm/v6").value())->digest, D('1'));
  EXPECT_EQ(SelectPlatform(*parsed, Platform::Parse("linux/arm").value())->digest, D('2'));
  EXPECT_EQ(SelectPlatform(*parsed, Platform::Parse("windows/amd64").value())->digest, D('5'));
  absl::StatusOr<Descriptor> none = SelectPlatform(*parsed, Platform::Parse("linux/s390x").value());
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(none.status().message(),
            "no matching manifest for linux/s390x in the manifest list entries");
  // An attestation entry never matches, even when asked for its platform.
  EXPECT_FALSE(SelectPlatform(*parsed, Platform{"unknown", "unknown"}).ok());
}

TEST(ManifestTest, LayerMediaTypes) {
  EXPECT_EQ(LayerCompression(kDockerLayerGzip).value(), Compression::kGzip);
  EXPECT_EQ(LayerCompression(kOciLayerZstd).value(), Compression::kZstd);
  EXPECT_EQ(LayerCompression(kOciLayer).value(), Compression::kNone);
  EXPECT_FALSE(LayerCompression(kDockerForeignLayerGzip).ok());
  EXPECT_FALSE(LayerCompression("text/plain").ok());
  EXPECT_EQ(ConvertLayerMediaType(kDockerLayerGzip, false), kOciLayerGzip);
  EXPECT_EQ(ConvertLayerMediaType(kOciLayerGzip, true), kDockerLayerGzip);
  EXPECT_EQ(ConvertLayerMediaType(kOciLayerZstd, true), kOciLayerZstd);
  EXPECT_NE(ManifestAcceptHeader().find(kDockerManifestList), std::string::npos);
}

}  // namespace
}  // namespace farm::oci
