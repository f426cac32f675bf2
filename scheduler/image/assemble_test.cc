#include "scheduler/image/assemble.h"

#include <string>

#include "cache/testing/memory_stores.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "scheduler/image/testing/layers.h"

namespace farm::scheduler::image {
namespace {

using nlohmann::json;
using testing::MakeTar;
using testing::PutLayer;

class AssembleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    l1_ = PutLayer(cas_, MakeTar({{"a.txt", "a\n"}}), oci::Compression::kGzip).value();
    l2_ = PutLayer(cas_, MakeTar({{"b.txt", "b\n"}}), oci::Compression::kGzip).value();
    lz_ = PutLayer(cas_, MakeTar({{"z.txt", "z\n"}}), oci::Compression::kZstd).value();
  }

  AssembleRequest Request() {
    AssembleRequest r;
    r.config.config.env = {"PATH=/usr/bin:/bin"};
    r.config.config.cmd = std::vector<std::string>{"/bin/sh"};
    r.steps.push_back({"COPY a.txt / # buildkit", l1_});
    r.steps.push_back({"ENV PATH=/usr/bin:/bin", std::nullopt});
    r.steps.push_back({RunCreatedBy({"/bin/sh", "-c", "echo b > /b.txt"}, {}), l2_});
    r.steps.push_back({"CMD " + GoQuotedList({"/bin/sh"}), std::nullopt});
    r.source_date_epoch = 0;
    return r;
  }

  json ReadJson(const oci::Descriptor& d) {
    auto digest = common::Digest::ParseOci(d.digest, d.size).value();
    return json::parse(cas_.ReadBlob(digest).value());
  }

  cache::testing::MemoryBlobStore cas_;
  farm::v1::Layer l1_, l2_, lz_;
};

TEST_F(AssembleTest, ScratchImageHasConfigHistoryAndManifest) {
  absl::StatusOr<AssembledImage> img = Assemble(cas_, Request());
  ASSERT_TRUE(img.ok()) << img.status();
  EXPECT_EQ(img->manifest.media_type, oci::kOciManifest);
  EXPECT_EQ(img->config.media_type, oci::kOciConfig);
  EXPECT_EQ(img->manifest.platform->String(), "linux/amd64");

  json cfg = ReadJson(img->config);
  EXPECT_EQ(cfg["created"], "1970-01-01T00:00:00Z");
  EXPECT_EQ(cfg["architecture"], "amd64");
  EXPECT_EQ(cfg["os"], "linux");
  EXPECT_EQ(cfg["config"]["Cmd"], json::array({"/bin/sh"}));
  EXPECT_EQ(cfg["rootfs"]["type"], "layers");
  EXPECT_EQ(cfg["rootfs"]["diff_ids"], json::array({l1_.diff_id(), l2_.diff_id()}));
  ASSERT_EQ(cfg["history"].size(), 4u);
  EXPECT_EQ(cfg["history"][0]["created_by"], "COPY a.txt / # buildkit");
  EXPECT_FALSE(cfg["history"][0].contains("empty_layer"));
  EXPECT_EQ(cfg["history"][1]["empty_layer"], true);
  EXPECT_EQ(cfg["history"][2]["created_by"], "RUN /bin/sh -c echo b > /b.txt # buildkit");
  EXPECT_EQ(cfg["history"][3]["created_by"], "CMD [\"/bin/sh\"]");
  EXPECT_EQ(cfg["history"][3]["comment"], "buildkit.dockerfile.v0");
  EXPECT_EQ(cfg["history"][3]["created"], "1970-01-01T00:00:00Z");

  json man = ReadJson(img->manifest);
  EXPECT_EQ(man["schemaVersion"], 2);
  EXPECT_EQ(man["mediaType"], oci::kOciManifest);
  EXPECT_EQ(man["config"]["digest"], img->config.digest);
  ASSERT_EQ(man["layers"].size(), 2u);
  EXPECT_EQ(man["layers"][0]["digest"], l1_.digest());
  EXPECT_EQ(man["layers"][0]["mediaType"], oci::kOciLayerGzip);
  EXPECT_EQ(man["layers"][1]["size"], l2_.size());
}

TEST_F(AssembleTest, DeterministicWithSourceDateEpoch) {
  AssembledImage a = Assemble(cas_, Request(), absl::FromUnixSeconds(1000)).value();
  AssembledImage b = Assemble(cas_, Request(), absl::FromUnixSeconds(999999)).value();
  EXPECT_EQ(a.manifest.digest, b.manifest.digest);
  EXPECT_EQ(a.config.digest, b.config.digest);
  // Without it, `now` is the creation time and the ID changes with it.
  AssembleRequest r = Request();
  r.source_date_epoch.reset();
  AssembledImage c = Assemble(cas_, r, absl::FromUnixSeconds(1700000000)).value();
  EXPECT_NE(c.config.digest, a.config.digest);
  EXPECT_EQ(c.image_config.created, "2023-11-14T22:13:20Z");
  EXPECT_EQ(ReadJson(c.config)["history"][0]["created"], "2023-11-14T22:13:20Z");
}

// Without SOURCE_DATE_EPOCH, steps that know when they ran (the action cache keeps it) give
// their entries that time and the image the latest: the same image whenever it is rebuilt
// from the cache. The epoch, when set, still decides everything.
TEST_F(AssembleTest, StepTimesMakeACachedRebuildTheSameImage) {
  AssembleRequest r = Request();
  r.source_date_epoch.reset();
  r.steps[0].created_unix = 1600000000;  // COPY
  r.steps[2].created_unix = 1650000000;  // RUN
  AssembledImage a = Assemble(cas_, r, absl::FromUnixSeconds(1700000000)).value();
  AssembledImage b = Assemble(cas_, r, absl::FromUnixSeconds(1800000000)).value();
  EXPECT_EQ(a.config.digest, b.config.digest);
  json cfg = ReadJson(a.config);
  EXPECT_EQ(cfg["created"], "2022-04-15T05:20:00Z");  // the RUN's, the latest
  EXPECT_EQ(cfg["history"][0]["created"], "2020-09-13T12:26:40Z");
  EXPECT_EQ(cfg["history"][1]["created"], "2022-04-15T05:20:00Z");  // ENV: the image's
  EXPECT_EQ(cfg["history"][2]["created"], "2022-04-15T05:20:00Z");
  r.source_date_epoch = 0;
  EXPECT_EQ(ReadJson(Assemble(cas_, r).value().config)["history"][0]["created"],
            "1970-01-01T00:00:00Z");
}

TEST_F(AssembleTest, BaseLayersAndHistoryComeFirstInTheChosenFormat) {
  AssembledImage base_img = Assemble(cas_, Request()).value();
  ResolvedImage base;
  base.reference = "docker.io/library/base:1";
  base.manifest_digest = base_img.manifest.digest;
  base.config_digest = base_img.config.digest;
  base.config = base_img.image_config;
  base.layers = base_img.layers;
  // The base came from a registry in Docker format.
  for (farm::v1::Layer& l : base.layers) l.set_media_type(oci::kDockerLayerGzip);

  AssembleRequest r;
  r.base = &base;
  r.config = base.config;
  r.config.config.working_dir = "/w";
  r.steps.push_back({"WORKDIR /w", std::nullopt});
  r.steps.push_back({"COPY z.txt / # buildkit", lz_});
  r.source_date_epoch = 5;
  AssembledImage img = Assemble(cas_, r).value();
  ASSERT_EQ(img.layers.size(), 3u);
  EXPECT_EQ(img.layers[0].media_type(), oci::kOciLayerGzip);  // converted from Docker's type
  EXPECT_EQ(img.layers[2].media_type(), oci::kOciLayerZstd);
  json cfg = ReadJson(img.config);
  EXPECT_EQ(cfg["rootfs"]["diff_ids"], json::array({l1_.diff_id(), l2_.diff_id(), lz_.diff_id()}));
  ASSERT_EQ(cfg["history"].size(), 6u);
  EXPECT_EQ(cfg["history"][0]["created"], "1970-01-01T00:00:00Z");  // base entries kept
  EXPECT_EQ(cfg["history"][4]["created_by"], "WORKDIR /w");
  EXPECT_EQ(cfg["history"][5]["created"], "1970-01-01T00:00:05Z");
  EXPECT_EQ(cfg["config"]["WorkingDir"], "/w");

  // Docker v2 schema 2 on request, but never with zstd layers.
  r.format = ManifestFormat::kDocker;
  absl::StatusOr<AssembledImage> docker = Assemble(cas_, r);
  ASSERT_FALSE(docker.ok());
  EXPECT_NE(std::string(docker.status().message()).find("zstd"), std::string::npos);
  r.steps.pop_back();
  docker = Assemble(cas_, r);
  ASSERT_TRUE(docker.ok()) << docker.status();
  EXPECT_EQ(docker->manifest.media_type, oci::kDockerManifest);
  EXPECT_EQ(docker->config.media_type, oci::kDockerConfig);
  json man = ReadJson(docker->manifest);
  EXPECT_EQ(man["layers"][0]["mediaType"], oci::kDockerLayerGzip);
  EXPECT_EQ(man["config"]["mediaType"], oci::kDockerConfig);

  // A base whose layers disagree with its config is refused.
  base.layers[0].set_diff_id(l2_.diff_id());
  r.format = ManifestFormat::kOci;
  EXPECT_EQ(Assemble(cas_, r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(AssembleTest, MissingOrMalformedLayersAreRefused) {
  AssembleRequest r = Request();
  farm::v1::Layer ghost = l1_;
  ghost.set_digest("sha256:" + std::string(64, '0'));
  r.steps.push_back({"COPY ghost / # buildkit", ghost});
  absl::StatusOr<AssembledImage> img = Assemble(cas_, r);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(img.status().message()).find(ghost.digest()), std::string::npos);

  r = Request();
  farm::v1::Layer bad = l1_;
  bad.set_media_type("application/octet-stream");
  r.steps.push_back({"COPY bad / # buildkit", bad});
  img = Assemble(cas_, r);
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(img.status().message()).find("step 5"), std::string::npos);
}

TEST_F(AssembleTest, IndexNamesEachPlatform) {
  AssembledImage amd = Assemble(cas_, Request()).value();
  AssembleRequest r = Request();
  r.config.architecture = "arm64";
  AssembledImage arm = Assemble(cas_, r).value();
  absl::StatusOr<oci::Descriptor> idx = AssembleIndex(cas_, {amd, arm}, ManifestFormat::kOci);
  ASSERT_TRUE(idx.ok()) << idx.status();
  EXPECT_EQ(idx->media_type, oci::kOciIndex);
  json j = ReadJson(*idx);
  ASSERT_EQ(j["manifests"].size(), 2u);
  EXPECT_EQ(j["manifests"][1]["platform"]["architecture"], "arm64");
  EXPECT_EQ(j["manifests"][0]["digest"], amd.manifest.digest);
  oci::Index parsed = oci::Index::Parse(j.dump(), "").value();
  EXPECT_EQ(oci::SelectPlatform(parsed, oci::Platform::Parse("linux/arm64").value())->digest,
            arm.manifest.digest);
  EXPECT_FALSE(AssembleIndex(cas_, {amd, amd}, ManifestFormat::kOci).ok());
  EXPECT_FALSE(AssembleIndex(cas_, {amd}, ManifestFormat::kDocker).ok());
}

// Docker gives RUN, COPY, ADD and WORKDIR a layer even when they changed nothing: an empty tar.
TEST_F(AssembleTest, StepsThatChangedNothingGetAnEmptyLayer) {
  AssembleRequest r;
  r.source_date_epoch = 0;
  r.steps.push_back({"RUN /bin/sh -c true # buildkit", std::nullopt, oci::Compression::kGzip});
  r.steps.push_back({"ENV A=1", std::nullopt});
  r.steps.push_back({"WORKDIR /tmp", std::nullopt, oci::Compression::kGzip});
  r.steps.push_back({"COPY a.txt / # buildkit", l1_, oci::Compression::kGzip});
  absl::StatusOr<AssembledImage> img = Assemble(cas_, r);
  ASSERT_TRUE(img.ok()) << img.status();
  // sha256 of 1024 zero bytes: the diff_id every tool knows as the empty layer.
  const std::string empty =
      "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
  json cfg = ReadJson(img->config);
  EXPECT_EQ(cfg["rootfs"]["diff_ids"], json::array({empty, empty, l1_.diff_id()}));
  ASSERT_EQ(cfg["history"].size(), 4u);
  EXPECT_FALSE(cfg["history"][0].contains("empty_layer"));
  EXPECT_EQ(cfg["history"][1]["empty_layer"], true);
  EXPECT_FALSE(cfg["history"][2].contains("empty_layer"));
  ASSERT_EQ(img->layers.size(), 3u);
  EXPECT_EQ(img->layers[0].digest(), img->layers[1].digest());  // one blob, twice
  EXPECT_EQ(img->layers[0].media_type(), oci::LayerMediaType(oci::Compression::kGzip, false));
  auto blob = common::Digest::ParseOci(img->layers[0].digest(), img->layers[0].size()).value();
  EXPECT_TRUE(cas_.ReadBlob(blob).ok());
  // Uncompressed and zstd work too.
  absl::StatusOr<farm::v1::Layer> none = PutEmptyLayer(cas_, oci::Compression::kNone);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->digest(), empty);
  EXPECT_EQ(none->size(), 1024);
  absl::StatusOr<farm::v1::Layer> zstd = PutEmptyLayer(cas_, oci::Compression::kZstd);
  ASSERT_TRUE(zstd.ok()) << zstd.status();
  EXPECT_EQ(zstd->diff_id(), empty);
}

TEST(HistoryFormTest, BuildKitForms) {
  EXPECT_EQ(RunCreatedBy({"/bin/sh", "-c", "make"}, {}), "RUN /bin/sh -c make # buildkit");
  EXPECT_EQ(RunCreatedBy({"/bin/sh", "-c", "make"}, {{"A", "1"}, {"B", "x y"}, {"A", "2"}}),
            "RUN |2 A=2 B=x y /bin/sh -c make # buildkit");
  EXPECT_EQ(GoQuotedList({"nginx", "-g", "daemon off;"}), "[\"nginx\" \"-g\" \"daemon off;\"]");
  EXPECT_EQ(GoQuotedList({"a\"b\\c\n\t", "\x01", "é", "\xff"}),
            "[\"a\\\"b\\\\c\\n\\t\" \"\\x01\" \"é\" \"\\xff\"]");
  EXPECT_EQ(GoQuotedList({}), "[]");
}

}  // namespace
}  // namespace farm::scheduler::image
