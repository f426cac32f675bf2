// The registry client against a real registry: Debian's docker-registry (Distribution 2.8)
// started on a random loopback port, with and without htpasswd basic auth.
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "scheduler/image/assemble.h"
#include "scheduler/image/testing/layers.h"
#include "scheduler/image/transfer.h"
#include "scheduler/registry/client.h"
#include "scheduler/registry/testing/local_registry.h"

namespace farm::scheduler::image {
namespace {

using oci::Compression;
using testing::MakeTar;
using testing::PutLayer;

std::string Noise(size_t n, int seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class RegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new common::TempDir(common::TempDir::Create("registry").value());
    absl::StatusOr<std::unique_ptr<registry::testing::LocalRegistry>> r =
        registry::testing::LocalRegistry::Start(tmp_->path() + "/open");
    ASSERT_TRUE(r.ok()) << r.status();
    open_ = r->release();
  }
  static void TearDownTestSuite() {
    delete open_;
    delete tmp_;
  }

  registry::RegistryOptions Options() {
    registry::RegistryOptions o;
    o.initial_backoff = absl::Milliseconds(1);
    o.docker_config_dir = tmp_->path() + "/no-docker-config";
    return o;
  }

  // An image with a gzip and a zstd layer, made in `cas_`.
  image::ImageRecord MakeImage(const std::string& salt, const std::string& arch = "amd64",
                               image::ManifestFormat format = ManifestFormat::kOci) {
    farm::v1::Layer a =
        PutLayer(cas_, MakeTar({{"data", Noise(200000, 7)}}), Compression::kGzip).value();
    farm::v1::Layer b =
        PutLayer(cas_, MakeTar({{"salt", salt + arch}}),
                 format == ManifestFormat::kOci ? Compression::kZstd : Compression::kGzip)
            .value();
    image::AssembleRequest r;
    r.config.architecture = arch;
    r.config.config.cmd = std::vector<std::string>{"/bin/sh"};
    r.steps.push_back({"COPY data / # buildkit", a});
    r.steps.push_back({"COPY salt / # buildkit", b});
    r.source_date_epoch = 0;
    r.format = format;
    image::AssembledImage img = image::Assemble(cas_, r).value();
    last_assembled_ = img;
    return image::DescribeImage(cas_, img.manifest, img.layers).value();
  }

  oci::Reference Ref(const registry::testing::LocalRegistry& reg, const std::string& rest) {
    return oci::Reference::Parse(reg.domain() + "/" + rest).value();
  }

  static common::TempDir* tmp_;
  static registry::testing::LocalRegistry* open_;
  cache::testing::MemoryBlobStore cas_;
  image::AssembledImage last_assembled_;
};

common::TempDir* RegistryTest::tmp_ = nullptr;
registry::testing::LocalRegistry* RegistryTest::open_ = nullptr;

TEST_F(RegistryTest, PushThenPullGivesTheSameImage) {
  for (image::ManifestFormat format : {ManifestFormat::kOci, ManifestFormat::kDocker}) {
    image::ImageRecord rec = MakeImage("roundtrip", "amd64", format);
    auto client = registry::Client::Create(open_->domain(), Options()).value();
    oci::Reference ref = Ref(*open_, "farm/roundtrip:v1");
    absl::StatusOr<PushResult> pushed = PushImage(*client, cas_, rec, ref, {});
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    EXPECT_EQ(pushed->digest, rec.digest);
    EXPECT_EQ(client->base_url(), "http://" + open_->domain());  // loopback: plain HTTP

    cache::testing::MemoryBlobStore fresh;
    auto puller = registry::Client::Create(open_->domain(), Options()).value();
    absl::StatusOr<PullResult> pulled = PullImage(*puller, fresh, ref, {});
    ASSERT_TRUE(pulled.ok()) << pulled.status();
    EXPECT_EQ(pulled->record.digest, rec.digest);
    EXPECT_EQ(pulled->record.Id(), rec.Id());
    EXPECT_EQ(pulled->record.media_type, rec.media_type);
    EXPECT_TRUE(pulled->downloaded);
    EXPECT_EQ(pulled->record.sources,
              std::vector<std::string>{open_->domain() + "/farm/roundtrip"});
    for (const common::Digest& d : rec.Blobs()) EXPECT_TRUE(fresh.Has(d).value());
    // Pulling again fetches nothing.
    absl::StatusOr<PullResult> again = PullImage(*puller, fresh, ref, {});
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE(again->downloaded);
  }
}

TEST_F(RegistryTest, ChunkedUploadAndCrossRepositoryMount) {
  image::ImageRecord rec = MakeImage("chunked");
  registry::RegistryOptions o = Options();
  o.chunk_size = 64 << 10;
  auto client = registry::Client::Create(open_->domain(), o).value();
  ASSERT_TRUE(PushImage(*client, cas_, rec, Ref(*open_, "chunk/a:1"), {}).ok());
  EXPECT_GE(client->stats().chunk_uploads, 3);  // the 200 kB layer in 64 KiB chunks

  // The same image into another repository of the registry: blobs are mounted, not sent.
  rec.sources = {open_->domain() + "/chunk/a"};
  auto c2 = registry::Client::Create(open_->domain(), Options()).value();
  absl::StatusOr<PushResult> r = PushImage(*c2, cas_, rec, Ref(*open_, "chunk/b:1"), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->mounted, 3);  // two layers and the config
  EXPECT_EQ(r->uploaded, 0);
  EXPECT_EQ(c2->stats().bytes_uploaded, rec.size);  // only the manifest

  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<PullResult> pulled = PullImage(*c2, fresh, Ref(*open_, "chunk/b:1"), {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->record.digest, rec.digest);
}

TEST_F(RegistryTest, IndexPushAndPlatformSelection) {
  image::ImageRecord amd = MakeImage("multi", "amd64");
  image::AssembledImage amd_img = last_assembled_;
  image::ImageRecord arm = MakeImage("multi", "arm64");
  image::AssembledImage arm_img = last_assembled_;
  oci::Descriptor idx =
      image::AssembleIndex(cas_, {amd_img, arm_img}, ManifestFormat::kOci).value();
  image::ImageRecord rec = image::DescribeImage(cas_, idx).value();
  auto client = registry::Client::Create(open_->domain(), Options()).value();
  absl::StatusOr<PushResult> pushed = PushImage(*client, cas_, rec, Ref(*open_, "multi:1"), {});
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->digest, idx.digest);
  for (const char* platform : {"linux/amd64", "linux/arm64"}) {
    cache::testing::MemoryBlobStore fresh;
    PullOptions po;
    po.platform = oci::Platform::Parse(platform).value();
    absl::StatusOr<PullResult> pulled = PullImage(*client, fresh, Ref(*open_, "multi:1"), po);
    ASSERT_TRUE(pulled.ok()) << pulled.status();
    EXPECT_EQ(pulled->record.digest,
              std::string(platform) == "linux/amd64" ? amd.digest : arm.digest);
    EXPECT_EQ(pulled->resolved_digest, idx.digest);
    EXPECT_EQ(pulled->record.manifests[0].platform, platform);
  }
}

TEST_F(RegistryTest, TamperedRegistryStorageIsDetected) {
  image::ImageRecord rec = MakeImage("tamper");
  auto client = registry::Client::Create(open_->domain(), Options()).value();
  oci::Reference ref = Ref(*open_, "tamper:1");
  ASSERT_TRUE(PushImage(*client, cas_, rec, ref, {}).ok());
  // Flip one byte of the first layer in the registry's own storage (same length).
  const farm::v1::Layer& layer = rec.manifests[0].layers[0];
  std::string path = open_->BlobDataPath(layer.digest());
  std::string data = common::ReadFile(path).value();
  data[data.size() / 2] = static_cast<char>(data[data.size() / 2] ^ 0x40);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
  }
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<PullResult> pulled = PullImage(*client, fresh, ref, {});
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(pulled.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(pulled.status().message()).find(layer.digest()), std::string::npos)
      << pulled.status();
  EXPECT_FALSE(fresh.Has(common::Digest::ParseOci(layer.digest(), layer.size()).value()).value());
  EXPECT_FALSE(fresh.Has(common::Digest::ParseOci(rec.digest, rec.size).value()).value());
}

// Fails every blob upload after the first `allowed`, as if the network went away.
class CutAfterUploads : public registry::HttpTransport {
 public:
  CutAfterUploads(registry::HttpTransport::Ptr inner, int allowed)
      : inner_(inner), allowed_(allowed) {}
  absl::StatusOr<registry::HttpResponse> Do(const registry::HttpRequest& req,
                                            const registry::BodySink* sink) override {
    if (req.method == "PUT" && absl::StrContains(req.url, "/blobs/uploads/") && allowed_-- <= 0) {
      return absl::UnavailableError("PUT " + req.url + ": connection reset by peer");
    }
    return inner_->Do(req, sink);
  }

 private:
  registry::HttpTransport::Ptr inner_;
  int allowed_;
};

TEST_F(RegistryTest, InterruptedPushResumes) {
  image::ImageRecord rec = MakeImage("resume");
  oci::Reference ref = Ref(*open_, "resume:1");
  registry::RegistryOptions cut = Options();
  cut.max_attempts = 1;
  cut.transport = std::make_shared<CutAfterUploads>(registry::CurlTransport::Create(), 1);
  PushOptions one_at_a_time;
  one_at_a_time.max_concurrent_uploads = 1;
  auto broken = registry::Client::Create(open_->domain(), cut).value();
  absl::StatusOr<PushResult> first = PushImage(*broken, cas_, rec, ref, one_at_a_time);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(broken->stats().blob_uploads, 1);

  auto client = registry::Client::Create(open_->domain(), Options()).value();
  absl::StatusOr<PushResult> second = PushImage(*client, cas_, rec, ref, {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->existed, 1);
  EXPECT_EQ(second->uploaded, 2);
  EXPECT_EQ(client->stats().blob_uploads, 2);
  // A third push sends no blob at all.
  auto third = registry::Client::Create(open_->domain(), Options()).value();
  ASSERT_TRUE(PushImage(*third, cas_, rec, ref, {}).ok());
  EXPECT_EQ(third->stats().blob_uploads, 0);
  EXPECT_EQ(third->stats().blobs_skipped, 3);
}

TEST_F(RegistryTest, HtpasswdBasicAuthWithDockerConfigCredentials) {
  absl::StatusOr<std::unique_ptr<registry::testing::LocalRegistry>> secured =
      registry::testing::LocalRegistry::Start(tmp_->path() + "/secured", {"farmer", "s3cret"});
  ASSERT_TRUE(secured.ok()) << secured.status();
  const registry::testing::LocalRegistry& reg = **secured;
  image::ImageRecord rec = MakeImage("auth");
  oci::Reference ref = Ref(reg, "private/app:1");

  // No credentials: refused, with the registry's reason.
  auto anon = registry::Client::Create(reg.domain(), Options()).value();
  absl::StatusOr<PushResult> denied = PushImage(*anon, cas_, rec, ref, {});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kUnauthenticated) << denied.status();
  EXPECT_EQ(anon->CheckLogin().code(), absl::StatusCode::kUnauthenticated);

  // Credentials from a config.json as `docker login` (and `farm login`) write it.
  std::string docker_dir = tmp_->path() + "/docker-config";
  registry::DockerConfig cfg = registry::DockerConfig::Load(docker_dir).value();
  ASSERT_TRUE(cfg.Set(reg.domain(), {"farmer", "s3cret"}).ok());
  ASSERT_TRUE(cfg.Save().ok());
  registry::RegistryOptions o = Options();
  o.docker_config_dir = docker_dir;
  auto client = registry::Client::Create(reg.domain(), o).value();
  EXPECT_TRUE(client->CheckLogin().ok());
  absl::StatusOr<PushResult> pushed = PushImage(*client, cas_, rec, ref, {});
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<PullResult> pulled = PullImage(*client, fresh, ref, {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->record.digest, rec.digest);

  // A wrong password is refused by CheckLogin (what `farm login` runs).
  registry::RegistryOptions wrong = Options();
  wrong.credentials = registry::Credentials{"farmer", "nope"};
  absl::Status login = registry::Client::Create(reg.domain(), wrong).value()->CheckLogin();
  EXPECT_EQ(login.code(), absl::StatusCode::kUnauthenticated) << login;
}

TEST_F(RegistryTest, MissingImageIsNotFound) {
  auto client = registry::Client::Create(open_->domain(), Options()).value();
  cache::testing::MemoryBlobStore fresh;
  absl::StatusOr<PullResult> r = PullImage(*client, fresh, Ref(*open_, "nothing:here"), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(r.status().message()).find("nothing:here not found"), std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace farm::scheduler::image
