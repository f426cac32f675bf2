#include "scheduler/image/archive.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "absl/strings/match.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "scheduler/image/assemble.h"
#include "scheduler/image/testing/layers.h"

namespace farm::scheduler::image {
namespace {

using nlohmann::json;
using testing::ListTar;
using testing::MakeTar;
using testing::PutLayer;
using testing::TarEntry;

// Reads the members of a tar into memory (test archives are small).
std::map<std::string, std::string> ReadTar(const std::string& path) {
  std::string data = common::ReadFile(path).value();
  std::map<std::string, std::string> out;
  size_t pos = 0;
  while (pos + 512 <= data.size()) {
    std::string header = data.substr(pos, 512);
    if (header[0] == '\0') break;
    std::string name(header.c_str());
    std::string prefix(header.c_str() + 345);
    if (!prefix.empty()) name = prefix + "/" + name;
    int64_t size = std::stoll(std::string(header.c_str() + 124, 11), nullptr, 8);
    char type = header[156];
    pos += 512;
    if (type == 'x' || type == 'g') {  // pax header: skip it and its entry stays next
      pos += (size + 511) / 512 * 512;
      continue;
    }
    if (type == '0' || type == '\0') out[name] = data.substr(pos, size);
    if (type == '5') out[name] = "<dir>";
    pos += (size + 511) / 512 * 512;
  }
  return out;
}

class ArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<common::TempDir>(common::TempDir::Create("archive").value());
    gz_ = PutLayer(cas_, MakeTar({{"etc", "", 0755, '5'}, {"etc/hello", "hi\n"}}),
                   oci::Compression::kGzip)
              .value();
    zs_ = PutLayer(cas_, MakeTar({{"app", "#!/bin/sh\necho app\n", 0755}}), oci::Compression::kZstd)
              .value();
    AssembleRequest r;
    r.config.config.cmd = std::vector<std::string>{"/app"};
    r.steps.push_back({"COPY hello /etc/ # buildkit", gz_});
    r.steps.push_back({"COPY app / # buildkit", zs_});
    r.steps.push_back({"CMD [\"/app\"]", std::nullopt});
    r.source_date_epoch = 0;
    AssembledImage img = Assemble(cas_, r).value();
    record_ = DescribeImage(cas_, img.manifest, img.layers).value();
    tag_ = oci::Reference::ParseWithDefaultTag("localhost:5000/app:1.0").value();
  }

  std::string Save(bool oci, const std::string& name) {
    std::string path = tmp_->path() + "/" + name;
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    auto w = LayoutWriter::Tar(fd).value();
    absl::Status s = oci ? SaveOciLayout(cas_, {{record_, {tag_}}}, *w)
                         : SaveDockerArchive(cas_, {{record_, {tag_}}}, oci::Platform::Host(), *w);
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_TRUE(w->Close().ok());
    close(fd);
    return path;
  }

  absl::StatusOr<std::vector<LoadedImage>> Load(cache::BlobStore& into, const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY);
    auto out = LoadArchive(into, fd, tmp_->path() + "/scratch", oci::Platform::Host());
    close(fd);
    return out;
  }

  std::unique_ptr<common::TempDir> tmp_;
  cache::testing::MemoryBlobStore cas_;
  farm::v1::Layer gz_, zs_;
  ImageRecord record_;
  oci::Reference tag_;
};

TEST_F(ArchiveTest, DockerArchiveHasDockersLayout) {
  std::string path = Save(false, "docker.tar");
  std::map<std::string, std::string> files = ReadTar(path);
  std::vector<std::string> names;
  for (const auto& [n, _] : files) names.push_back(n);
  const StoredManifest& m = record_.manifests[0];
  std::string cfg = m.config_digest.substr(7);
  EXPECT_TRUE(files.count("blobs/sha256/" + cfg));
  EXPECT_TRUE(files.count("manifest.json"));
  EXPECT_TRUE(files.count("repositories"));
  EXPECT_TRUE(files.count("index.json"));
  EXPECT_EQ(files["oci-layout"], "{\"imageLayoutVersion\":\"1.0.0\"}\n");

  json manifest = json::parse(files["manifest.json"]);
  ASSERT_EQ(manifest.size(), 1u);
  EXPECT_EQ(manifest[0]["Config"], "blobs/sha256/" + cfg);
  EXPECT_EQ(manifest[0]["RepoTags"], json::array({"localhost:5000/app:1.0"}));
  ASSERT_EQ(manifest[0]["Layers"].size(), 2u);
  // Layers are the uncompressed tars, named by diff_id.
  for (int i = 0; i < 2; ++i) {
    std::string lp = manifest[0]["Layers"][i];
    ASSERT_TRUE(files.count(lp)) << lp;
    EXPECT_EQ("blobs/sha256/" + common::Sha256Hex(files[lp]), lp);
    EXPECT_EQ(lp, "blobs/sha256/" + m.layers[i].diff_id().substr(7));
  }
  EXPECT_EQ(ListTar(files[manifest[0]["Layers"][1]]).value(), std::vector<std::string>{"app"});
  json repos = json::parse(files["repositories"]);
  EXPECT_EQ(repos["localhost:5000/app"]["1.0"], m.layers[1].diff_id().substr(7));
  // The OCI side of the same tar names an OCI manifest over the uncompressed layers.
  json index = json::parse(files["index.json"]);
  EXPECT_EQ(index["manifests"][0]["annotations"]["io.containerd.image.name"],
            "localhost:5000/app:1.0");
  std::string mdigest = index["manifests"][0]["digest"];
  json oci = json::parse(files["blobs/sha256/" + mdigest.substr(7)]);
  EXPECT_EQ(oci["layers"][0]["mediaType"], oci::kOciLayer);
}

TEST_F(ArchiveTest, DockerArchiveRoundTripKeepsTheImageId) {
  std::string path = Save(false, "docker.tar");
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<std::vector<LoadedImage>> loaded = Load(fresh, path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  const LoadedImage& img = (*loaded)[0];
  EXPECT_EQ(img.record.Id(), record_.Id());  // same config bytes
  ASSERT_EQ(img.tags.size(), 1u);
  EXPECT_EQ(img.tags[0], tag_);
  const StoredManifest& m = img.record.manifests[0];
  ASSERT_EQ(m.layers.size(), 2u);
  // Uncompressed layers were gzip-compressed on load; the diff_ids are unchanged.
  EXPECT_EQ(m.layers[0].media_type(), oci::kOciLayerGzip);
  EXPECT_EQ(m.layers[1].media_type(), oci::kOciLayerGzip);
  EXPECT_EQ(m.layers[0].diff_id(), gz_.diff_id());
  EXPECT_EQ(m.layers[1].diff_id(), zs_.diff_id());
  EXPECT_EQ(m.layers[1].uncompressed_size(), zs_.uncompressed_size());
  for (const common::Digest& d : img.record.Blobs()) EXPECT_TRUE(fresh.Has(d).value());
  // Deterministic: loading again gives the same compressed layers and manifest.
  cache::testing::MemoryBlobStore again;
  absl::StatusOr<std::vector<LoadedImage>> second = Load(again, path);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)[0].record.digest, img.record.digest);
}

TEST_F(ArchiveTest, OciLayoutRoundTripKeepsTheManifestDigest) {
  std::string path = Save(true, "oci.tar");
  std::map<std::string, std::string> files = ReadTar(path);
  EXPECT_FALSE(files.count("manifest.json"));
  EXPECT_TRUE(files.count("blobs/sha256/" + zs_.digest().substr(7)));  // compressed, as stored
  json index = json::parse(files["index.json"]);
  EXPECT_EQ(index["manifests"][0]["digest"], record_.digest);
  EXPECT_EQ(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "1.0");
  EXPECT_EQ(index["manifests"][0]["platform"]["architecture"], "amd64");

  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<std::vector<LoadedImage>> loaded = Load(fresh, path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_EQ((*loaded)[0].record.digest, record_.digest);
  EXPECT_EQ((*loaded)[0].tags, std::vector<oci::Reference>{tag_});
  EXPECT_EQ((*loaded)[0].record.manifests[0].layers[1].media_type(), oci::kOciLayerZstd);

  // The same as a directory.
  auto dir = LayoutWriter::Directory(tmp_->path() + "/layout").value();
  ASSERT_TRUE(SaveOciLayout(cas_, {{record_, {}}}, *dir).ok());
  cache::testing::MemoryBlobStore fresh2;
  auto from_dir = LoadLayoutDirectory(fresh2, tmp_->path() + "/layout", tmp_->path() + "/scratch2",
                                      oci::Platform::Host());
  ASSERT_TRUE(from_dir.ok()) << from_dir.status();
  EXPECT_EQ((*from_dir)[0].record.digest, record_.digest);
  EXPECT_TRUE((*from_dir)[0].tags.empty());
}

TEST_F(ArchiveTest, ClassicDockerArchiveWithSymlinkedLayers) {
  // Docker < 25 / skopeo: <id>/layer.tar, a duplicated layer as a symlink, <hex>.json config.
  std::string layer = MakeTar({{"f", "x"}});
  std::string diff = "sha256:" + common::Sha256Hex(layer);
  oci::ImageConfig cfg;
  cfg.diff_ids = {diff, diff};
  std::string config = cfg.ToJson();
  std::string chex = common::Sha256Hex(config);
  json manifest = json::array({json{{"Config", chex + ".json"},
                                    {"RepoTags", json::array({"old:v1"})},
                                    {"Layers", json::array({"aaa/layer.tar", "bbb/layer.tar"})}}});
  std::string tar = MakeTar({{"aaa", "", 0755, '5'},
                             {"aaa/layer.tar", layer},
                             {"bbb", "", 0755, '5'},
                             {"bbb/layer.tar", "", 0777, '2', "../aaa/layer.tar"},
                             {chex + ".json", config},
                             {"manifest.json", manifest.dump()}});
  std::string path = tmp_->path() + "/classic.tar";
  ASSERT_TRUE(common::WriteFileAtomic(path, tar).ok());
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<std::vector<LoadedImage>> loaded = Load(fresh, path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)[0].record.Id(), "sha256:" + chex);
  EXPECT_EQ((*loaded)[0].tags[0].String(), "docker.io/library/old:v1");
  EXPECT_EQ((*loaded)[0].record.manifests[0].layers.size(), 2u);
}

TEST_F(ArchiveTest, TamperedOrUnsafeArchivesAreRefused) {
  // A layer whose content does not match the config's diff_id.
  std::string layer = MakeTar({{"f", "x"}});
  oci::ImageConfig cfg;
  cfg.diff_ids = {"sha256:" + std::string(64, '1')};
  std::string config = cfg.ToJson();
  json manifest = json::array(
      {json{{"Config", "c.json"}, {"RepoTags", nullptr}, {"Layers", json::array({"l.tar"})}}});
  std::string path = tmp_->path() + "/bad.tar";
  ASSERT_TRUE(
      common::WriteFileAtomic(
          path, MakeTar({{"l.tar", layer}, {"c.json", config}, {"manifest.json", manifest.dump()}}))
          .ok());
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<std::vector<LoadedImage>> loaded = Load(fresh, path);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(std::string(loaded.status().message()).find("l.tar has diff_id"), std::string::npos)
      << loaded.status();
  EXPECT_EQ(fresh.size(), 0u);

  // Entries escaping the archive.
  for (const TarEntry& evil :
       {TarEntry{"../evil", "x"}, TarEntry{"/abs", "x"}, TarEntry{"a/../../b", "x"},
        TarEntry{"link", "", 0777, '2', "../../etc/passwd"}}) {
    std::string p = tmp_->path() + "/evil.tar";
    ASSERT_TRUE(common::WriteFileAtomic(p, MakeTar({evil, {"manifest.json", "[]"}})).ok());
    absl::StatusOr<std::vector<LoadedImage>> r = Load(fresh, p);
    ASSERT_FALSE(r.ok()) << evil.path;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  EXPECT_FALSE(common::PathExists(tmp_->path() + "/evil"));

  // Neither format.
  std::string junk = tmp_->path() + "/junk.tar";
  ASSERT_TRUE(common::WriteFileAtomic(junk, MakeTar({{"hello", "x"}})).ok());
  absl::StatusOr<std::vector<LoadedImage>> r = Load(fresh, junk);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("not an image archive"), std::string::npos);
}

TEST_F(ArchiveTest, CompressedArchiveLoads) {
  std::string path = Save(false, "docker.tar");
  std::string data = common::ReadFile(path).value();
  std::string packed;
  common::FunctionSink sink([&](absl::string_view c) {
    packed.append(c.data(), c.size());
    return absl::OkStatus();
  });
  auto gz = oci::Compressor::Create({oci::Compression::kGzip}, &sink).value();
  ASSERT_TRUE(gz->Write(data).ok());
  ASSERT_TRUE(gz->Finish().ok());
  std::string gzpath = tmp_->path() + "/docker.tar.gz";
  ASSERT_TRUE(common::WriteFileAtomic(gzpath, packed).ok());
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<std::vector<LoadedImage>> loaded = Load(fresh, gzpath);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)[0].record.Id(), record_.Id());
}

}  // namespace
}  // namespace farm::scheduler::image
