// The registry client against FakeRegistry: auth flows, retries, resumption and verification
// that a real registry cannot be made to exercise on demand.
#include "scheduler/image/transfer.h"

#include <random>
#include <string>

#include "absl/strings/match.h"
#include "cache/testing/memory_stores.h"
#include "gtest/gtest.h"
#include "scheduler/image/assemble.h"
#include "scheduler/image/testing/layers.h"
#include "scheduler/registry/client.h"
#include "scheduler/registry/testing/fake_registry.h"

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

common::Digest DigestOf(const std::string& s) { return common::DigestOf(s); }

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(fake_.Start().ok()); }

  registry::RegistryOptions Options() {
    registry::RegistryOptions o;
    o.initial_backoff = absl::Milliseconds(1);
    o.max_backoff = absl::Milliseconds(5);
    o.docker_config_dir = "/nonexistent-farm-test";  // no ambient credentials
    return o;
  }

  std::unique_ptr<registry::Client> NewClient(registry::RegistryOptions o) {
    return registry::Client::Create(fake_.domain(), std::move(o)).value();
  }

  // An image with two layers built in `src_`, published to the fake under repo:tag.
  image::AssembledImage Publish(const std::string& repo, const std::string& tag,
                                const std::string& arch = "amd64") {
    farm::v1::Layer a =
        PutLayer(src_, MakeTar({{"a", Noise(100000, 1)}}), Compression::kGzip).value();
    farm::v1::Layer b = PutLayer(src_, MakeTar({{"b", "b-" + arch}}), Compression::kZstd).value();
    image::AssembleRequest r;
    r.config.architecture = arch;
    r.steps.push_back({"COPY a / # buildkit", a});
    r.steps.push_back({"COPY b / # buildkit", b});
    r.source_date_epoch = 0;
    image::AssembledImage img = image::Assemble(src_, r).value();
    for (const farm::v1::Layer& l : img.layers) {
      fake_.PutBlob(repo,
                    src_.ReadBlob(common::Digest::ParseOci(l.digest(), l.size()).value()).value());
    }
    fake_.PutBlob(repo, Read(img.config));
    if (!tag.empty()) fake_.PutManifest(repo, tag, img.manifest.media_type, Read(img.manifest));
    return img;
  }

  std::string Read(const oci::Descriptor& d) {
    return src_.ReadBlob(common::Digest::ParseOci(d.digest, d.size).value()).value();
  }

  registry::testing::FakeRegistry fake_;
  cache::testing::MemoryBlobStore src_;
};

TEST_F(ClientTest, BearerTokenFlowWithBasicCredentials) {
  image::AssembledImage img = Publish("team/app", "1.0");
  fake_.RequireBearer("user", "secret");
  registry::RegistryOptions o = Options();
  o.credentials = registry::Credentials{"user", "secret"};
  auto client = NewClient(o);
  cache::testing::MemoryBlobStore cas;
  oci::Reference ref = oci::Reference::Parse(fake_.domain() + "/team/app:1.0").value();
  absl::StatusOr<PullResult> r = PullImage(*client, cas, ref, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->record.digest, img.manifest.digest);
  std::vector<std::string> scopes = fake_.token_scopes();
  ASSERT_FALSE(scopes.empty());
  EXPECT_EQ(scopes[0], "repository:team/app:pull");
  // One token serves every request of the same scope.
  EXPECT_EQ(client->stats().token_fetches, 1);
  EXPECT_TRUE(client->CheckLogin().ok());

  // Wrong password: the token endpoint refuses, and the error says where.
  o.credentials = registry::Credentials{"user", "wrong"};
  absl::StatusOr<PullResult> denied = PullImage(*NewClient(o), cas, ref, {});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_NE(std::string(denied.status().message()).find("/token"), std::string::npos);
  EXPECT_EQ(NewClient(o)->CheckLogin().code(), absl::StatusCode::kUnauthenticated);
  // No credentials at all: says how to log in.
  o.credentials.reset();
  absl::Status anon = NewClient(o)->CheckLogin();
  EXPECT_NE(std::string(anon.message()).find("farm login"), std::string::npos) << anon;
}

TEST_F(ClientTest, RetriesWithBackoffOn5xxAnd429) {
  image::AssembledImage img = Publish("app", "1");
  fake_.FailNext("/v2/app/manifests/", 2, 503);
  fake_.FailNext("/v2/app/blobs/", 2, 429);
  auto client = NewClient(Options());
  cache::testing::MemoryBlobStore cas;
  absl::StatusOr<PullResult> r =
      PullImage(*client, cas, oci::Reference::Parse(fake_.domain() + "/app:1").value(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(client->stats().retries, 4);
  // Past max_attempts the failure is reported as UNAVAILABLE.
  fake_.FailNext("/v2/app/manifests/", 10, 500);
  registry::RegistryOptions o = Options();
  o.max_attempts = 3;
  absl::StatusOr<registry::ManifestInfo> head = NewClient(o)->HeadManifest("app", "1");
  ASSERT_FALSE(head.ok());
  EXPECT_EQ(head.status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ClientTest, WrongBlobIsDetectedAndNothingStored) {
  image::AssembledImage img = Publish("app", "1");
  fake_.TamperBlob(img.layers[0].digest());
  auto client = NewClient(Options());
  cache::testing::MemoryBlobStore cas;
  absl::StatusOr<PullResult> r =
      PullImage(*client, cas, oci::Reference::Parse(fake_.domain() + "/app:1").value(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(r.status().message())
                .find("verification failed for digest " + img.layers[0].digest()),
            std::string::npos)
      << r.status();
  EXPECT_FALSE(
      cas.Has(common::Digest::ParseOci(img.layers[0].digest(), img.layers[0].size()).value())
          .value());
  // The manifest is never stored before its layers: no half image is visible.
  EXPECT_FALSE(
      cas.Has(common::Digest::ParseOci(img.manifest.digest, img.manifest.size).value()).value());

  // A tampered config is refused the same way.
  image::AssembledImage other = Publish("app2", "1", "arm64");
  fake_.TamperBlob(other.config.digest);
  r = PullImage(*client, cas, oci::Reference::Parse(fake_.domain() + "/app2:1").value(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find(other.config.digest), std::string::npos)
      << r.status();
}

TEST_F(ClientTest, InterruptedDownloadResumesWithRange) {
  image::AssembledImage img = Publish("app", "1");
  fake_.CutBlobOnce(img.layers[0].digest());
  auto client = NewClient(Options());
  cache::testing::MemoryBlobStore cas;
  absl::StatusOr<PullResult> r =
      PullImage(*client, cas, oci::Reference::Parse(fake_.domain() + "/app:1").value(), {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fake_.CountRequests("GET", img.layers[0].digest()), 2);
  // The resumed download did not fetch the whole blob twice.
  EXPECT_LT(client->stats().bytes_downloaded,
            img.layers[0].size() + img.layers[0].size() / 2 + 10000);
}

TEST_F(ClientTest, SelectsThePlatformFromAnIndex) {
  image::AssembledImage amd = Publish("multi", "");
  image::AssembledImage arm = Publish("multi", "", "arm64");
  oci::Descriptor idx = image::AssembleIndex(src_, {amd, arm}, ManifestFormat::kOci).value();
  fake_.PutManifest("multi", "amd64-only", amd.manifest.media_type, Read(amd.manifest));
  fake_.PutManifest("multi", "x", arm.manifest.media_type, Read(arm.manifest));
  fake_.PutManifest("multi", "latest", idx.media_type, Read(idx));
  auto client = NewClient(Options());
  cache::testing::MemoryBlobStore cas;
  PullOptions po;
  po.platform = oci::Platform::Parse("linux/arm64").value();
  absl::StatusOr<PullResult> r =
      PullImage(*client, cas, oci::Reference::Parse(fake_.domain() + "/multi").value(), po);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->record.digest, arm.manifest.digest);
  EXPECT_EQ(r->resolved_digest, idx.digest);
  EXPECT_EQ(r->record.index_digests, std::vector<std::string>{idx.digest});
  EXPECT_EQ(r->record.manifests[0].platform, "linux/arm64");
  // The amd64 image's own layer was never fetched.
  EXPECT_EQ(fake_.CountRequests("GET", amd.layers[1].digest()), 0);
  po.platform = oci::Platform::Parse("linux/s390x").value();
  absl::StatusOr<PullResult> none =
      PullImage(*client, cas, oci::Reference::Parse(fake_.domain() + "/multi").value(), po);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(none.status().message()).find("no matching manifest for linux/s390x"),
            std::string::npos);
}

TEST_F(ClientTest, PullWithoutManifestHeadAndAgainFromTheCas) {
  image::AssembledImage img = Publish("app", "1");
  fake_.DisableManifestHead();
  auto client = NewClient(Options());
  cache::testing::MemoryBlobStore cas;
  oci::Reference ref = oci::Reference::Parse(fake_.domain() + "/app:1").value();
  std::vector<std::string> lines;
  PullOptions po;
  po.progress = [&](const Progress& p) {
    if (p.status != "Downloading") lines.push_back(p.id + ": " + p.status);
  };
  absl::StatusOr<PullResult> r = PullImage(*client, cas, ref, po);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->downloaded);
  EXPECT_EQ(lines.front(), ": 1: Pulling from app");
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      img.layers[0].digest().substr(7, 12) + ": Pull complete"),
            lines.end());
  // Everything is present now: only the manifest request goes out.
  fake_.ClearRequests();
  lines.clear();
  r = PullImage(*client, cas, ref, po);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(fake_.CountRequests("GET", "/blobs/"), 0);
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      img.layers[0].digest().substr(7, 12) + ": Already exists"),
            lines.end());
}

TEST_F(ClientTest, UploadsMonolithicChunkedMountedAndSkipped) {
  auto client = [&] {
    registry::RegistryOptions o = Options();
    o.chunk_size = 64 << 10;
    return NewClient(o);
  }();
  cache::testing::MemoryBlobStore cas;
  std::string small = Noise(1000, 2), big = Noise(300 << 10, 3);
  common::Digest ds = cas.Put(small).value(), db = cas.Put(big).value();
  registry::BlobSource from_cas = [&](const common::Digest& d) {
    return [&cas, d](int64_t off, int64_t lim, const registry::BodySink& s) {
      return cas.Read(d, off, lim, s);
    };
  }(ds);
  EXPECT_EQ(client->PushBlob("app", ds, {}, from_cas).value(), registry::BlobPushResult::kUploaded);
  EXPECT_EQ(fake_.CountRequests("PATCH", ""), 0);  // monolithic PUT
  EXPECT_EQ(client->PushBlob("app", ds, {}, from_cas).value(), registry::BlobPushResult::kExists);

  // Chunked, with the second chunk failing after the registry kept half of it: the client
  // asks where the upload stands and resumes from there.
  fake_.FailPatch(2);
  registry::BlobSource big_src = [&cas, db](int64_t off, int64_t lim, const registry::BodySink& s) {
    return cas.Read(db, off, lim, s);
  };
  absl::StatusOr<registry::BlobPushResult> r = client->PushBlob("app", db, {}, big_src);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, registry::BlobPushResult::kUploaded);
  EXPECT_TRUE(fake_.HasBlob("app", db.OciString()));
  EXPECT_GE(fake_.CountRequests("PATCH", ""), 6);
  EXPECT_EQ(fake_.CountRequests("GET", "/blobs/uploads/"), 1);

  // Another repository of the same registry mounts it instead of uploading.
  fake_.ClearRequests();
  EXPECT_EQ(client->PushBlob("other", db, {"app"}, big_src).value(),
            registry::BlobPushResult::kMounted);
  EXPECT_EQ(fake_.CountRequests("PATCH", ""), 0);
  EXPECT_EQ(fake_.CountRequests("POST", "mount=sha256"), 1);
  EXPECT_EQ(client->stats().blob_mounts, 1);
}

// A transport that fails every blob upload after the first `allowed` succeeded, as if the
// network went away in the middle of a push.
class CutAfterUploads : public registry::HttpTransport {
 public:
  CutAfterUploads(registry::HttpTransport::Ptr inner, int allowed)
      : inner_(inner), allowed_(allowed) {}
  absl::StatusOr<registry::HttpResponse> Do(const registry::HttpRequest& req,
                                            const registry::BodySink* sink) override {
    bool upload = req.method == "PUT" && absl::StrContains(req.url, "/blobs/uploads/");
    if (upload && allowed_-- <= 0) {
      return absl::UnavailableError("PUT " + req.url + ": connection reset by peer");
    }
    return inner_->Do(req, sink);
  }

 private:
  registry::HttpTransport::Ptr inner_;
  int allowed_;
};

TEST_F(ClientTest, InterruptedPushResumes) {
  cache::testing::MemoryBlobStore& cas = src_;
  image::AssembledImage img = Publish("unused", "");
  image::ImageRecord rec = image::DescribeImage(cas, img.manifest, img.layers).value();
  oci::Reference target = oci::Reference::Parse(fake_.domain() + "/pushed:v1").value();

  registry::RegistryOptions o = Options();
  o.max_attempts = 1;
  o.transport = std::make_shared<CutAfterUploads>(registry::CurlTransport::Create(), 1);
  PushOptions po;
  po.max_concurrent_uploads = 1;
  absl::StatusOr<PushResult> first = PushImage(*NewClient(o), cas, rec, target, po);
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable);

  auto client = NewClient(Options());
  absl::StatusOr<PushResult> second = PushImage(*client, cas, rec, target, {});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->existed, 1);   // the layer that made it the first time
  EXPECT_EQ(second->uploaded, 2);  // the other layer and the config
  EXPECT_EQ(second->digest, img.manifest.digest);
  // And the result pulls back intact.
  cache::testing::MemoryBlobStore back;
  absl::StatusOr<PullResult> pulled = PullImage(*client, back, target, {});
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->record.digest, img.manifest.digest);
}

TEST_F(ClientTest, UnreachableRegistryIsUnavailable) {
  registry::RegistryOptions o = Options();
  o.max_attempts = 2;
  // A port nobody listens on (the fake's port after it is closed is racy; use port 1).
  auto client = registry::Client::Create("127.0.0.1:1", o).value();
  absl::StatusOr<registry::ManifestInfo> r = client->HeadManifest("x", "latest");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(r.status().message()).find("127.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace farm::scheduler::image
