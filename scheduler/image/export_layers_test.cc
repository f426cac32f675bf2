#include "scheduler/image/export_layers.h"

#include <string>
#include <vector>

#include "cache/testing/memory_stores.h"
#include "gtest/gtest.h"
#include "scheduler/image/assemble.h"
#include "scheduler/image/testing/layers.h"

namespace farm::scheduler::image {
namespace {

using testing::MakeTar;
using testing::PutLayer;

// The same image assembled twice: layers compressed at build time (gzip), and layers kept
// uncompressed. Exporting the second must give the first, byte for byte.
class ExportLayersTest : public ::testing::Test {
 protected:
  AssembledImage Build(oci::Compression c, ManifestFormat format = ManifestFormat::kOci) {
    AssembleRequest r;
    r.config.config.cmd = std::vector<std::string>{"/bin/sh"};
    r.steps.push_back({"COPY a.txt / # buildkit",
                       PutLayer(cas_, MakeTar({{"a.txt", std::string(100000, 'a')}}), c).value(),
                       c});
    r.steps.push_back({"ENV A=1", std::nullopt});
    r.steps.push_back({"RUN /bin/sh -c true # buildkit", std::nullopt, c});  // the empty layer
    r.steps.push_back({"RUN /bin/sh -c make # buildkit",
                       PutLayer(cas_, MakeTar({{"b.bin", "b\n"}}), c).value(), c});
    r.source_date_epoch = 0;
    r.format = format;
    absl::StatusOr<AssembledImage> img = Assemble(cas_, r);
    EXPECT_TRUE(img.ok()) << img.status();
    return *img;
  }

  ImageRecord Record(const AssembledImage& img) {
    absl::StatusOr<ImageRecord> rec = DescribeImage(cas_, img.manifest, img.layers);
    EXPECT_TRUE(rec.ok()) << rec.status();
    return *rec;
  }

  cache::testing::MemoryBlobStore cas_;
  cache::testing::MemoryActionCache memo_;
};

TEST_F(ExportLayersTest, GivesTheEagerlyCompressedImageByteForByte) {
  for (ManifestFormat format : {ManifestFormat::kOci, ManifestFormat::kDocker}) {
    AssembledImage eager = Build(oci::Compression::kGzip, format);
    AssembledImage lazy = Build(oci::Compression::kNone, format);
    // The image ID (config) is the same either way; the manifests differ.
    EXPECT_EQ(eager.config.digest, lazy.config.digest);
    ASSERT_NE(eager.manifest.digest, lazy.manifest.digest);
    ImageRecord lazy_rec = Record(lazy);
    ASSERT_TRUE(HasUncompressedLayers(lazy_rec));
    ASSERT_FALSE(HasUncompressedLayers(Record(eager)));

    LayerExportOptions o;
    o.compression.compression = oci::Compression::kGzip;
    o.memo = &memo_;
    absl::StatusOr<ImageRecord> out = CompressLayersForExport(cas_, lazy_rec, o);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->digest, eager.manifest.digest);
    EXPECT_EQ(out->size, eager.manifest.size);
    EXPECT_FALSE(HasUncompressedLayers(*out));
    ASSERT_EQ(out->manifests.size(), 1u);
    ASSERT_EQ(out->manifests[0].layers.size(), eager.layers.size());
    for (size_t i = 0; i < eager.layers.size(); ++i) {
      EXPECT_EQ(out->manifests[0].layers[i].digest(), eager.layers[i].digest()) << i;
      EXPECT_EQ(out->manifests[0].layers[i].diff_id(), eager.layers[i].diff_id()) << i;
      EXPECT_GT(out->manifests[0].layers[i].uncompressed_size(), 0) << i;
    }
  }
}

TEST_F(ExportLayersTest, TheSecondExportReusesTheCompressedLayers) {
  AssembledImage lazy = Build(oci::Compression::kNone);
  ImageRecord rec = Record(lazy);
  LayerExportOptions o;
  o.compression.compression = oci::Compression::kGzip;
  o.memo = &memo_;
  ASSERT_TRUE(CompressLayersForExport(cas_, rec, o).ok());
  int writes = cas_.writes();
  absl::StatusOr<ImageRecord> again = CompressLayersForExport(cas_, rec, o);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(cas_.writes(), writes);  // nothing new: layers from the memo, same manifest
  // Another compression is another entry.
  o.compression.compression = oci::Compression::kZstd;
  absl::StatusOr<ImageRecord> zstd = CompressLayersForExport(cas_, rec, o);
  ASSERT_TRUE(zstd.ok()) << zstd.status();
  EXPECT_NE(zstd->digest, again->digest);
  EXPECT_EQ(zstd->manifests[0].layers[0].media_type(), oci::kOciLayerZstd);
}

TEST_F(ExportLayersTest, CompressedImagesAndZstdForDockerManifests) {
  AssembledImage eager = Build(oci::Compression::kGzip);
  ImageRecord rec = Record(eager);
  LayerExportOptions o;
  absl::StatusOr<ImageRecord> same = CompressLayersForExport(cas_, rec, o);
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->digest, rec.digest);

  ImageRecord docker = Record(Build(oci::Compression::kNone, ManifestFormat::kDocker));
  o.compression.compression = oci::Compression::kZstd;
  absl::StatusOr<ImageRecord> bad = CompressLayersForExport(cas_, docker, o);
  EXPECT_TRUE(absl::IsInvalidArgument(bad.status())) << bad.status();
}

}  // namespace
}  // namespace farm::scheduler::image
