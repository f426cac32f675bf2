#include "scheduler/image/store_resolver.h"

#include <thread>

#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "scheduler/image/assemble.h"
#include "scheduler/image/testing/layers.h"
#include "scheduler/registry/testing/fake_registry.h"

namespace farm::scheduler::image {
namespace {

using testing::MakeTar;
using testing::PutLayer;

class StoreResolverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fake_.Start().ok());
    tmp_ = std::make_unique<common::TempDir>(common::TempDir::Create("resolver").value());
    cas_ = std::make_shared<cache::testing::MemoryBlobStore>();
    images_ = std::shared_ptr<ImageStore>(RocksDbImageStore::Create(tmp_->path() + "/img").value());
  }

  // Publishes an image for `arch` to the fake registry (built in a separate CAS).
  AssembledImage Publish(const std::string& repo, const std::string& tag,
                         const std::string& arch = "amd64") {
    farm::v1::Layer l =
        PutLayer(src_, MakeTar({{"f", "content-" + arch}}), oci::Compression::kGzip).value();
    AssembleRequest r;
    r.config.architecture = arch;
    r.config.config.env = {"PATH=/usr/local/bin:/usr/bin:/bin", "BASE=" + arch};
    r.config.config.working_dir = "/srv";
    r.steps.push_back({"COPY f / # buildkit", l});
    r.source_date_epoch = 0;
    AssembledImage img = Assemble(src_, r).value();
    auto read = [&](const std::string& d, int64_t s) {
      return src_.ReadBlob(common::Digest::ParseOci(d, s).value()).value();
    };
    fake_.PutBlob(repo, read(l.digest(), l.size()));
    fake_.PutBlob(repo, read(img.config.digest, img.config.size));
    fake_.PutManifest(repo, tag.empty() ? img.manifest.digest : tag, img.manifest.media_type,
                      read(img.manifest.digest, img.manifest.size));
    return img;
  }

  std::shared_ptr<StoreResolver> Resolver(PullPolicy policy) {
    StoreResolverOptions o;
    o.pull_policy = policy;
    o.registry.initial_backoff = absl::Milliseconds(1);
    o.registry.docker_config_dir = tmp_->path() + "/no-docker";
    return StoreResolver::Create(cas_, images_, o).value();
  }

  registry::testing::FakeRegistry fake_;
  std::unique_ptr<common::TempDir> tmp_;
  cache::testing::MemoryBlobStore src_;
  std::shared_ptr<cache::testing::MemoryBlobStore> cas_;
  std::shared_ptr<ImageStore> images_;
};

TEST_F(StoreResolverTest, PullsWhenMissingThenUsesTheLocalImage) {
  AssembledImage img = Publish("base", "1");
  std::string name = fake_.domain() + "/base:1";
  auto resolver = Resolver(PullPolicy::kMissing);
  absl::StatusOr<ResolvedImage> r = resolver->Resolve(name, "linux/amd64");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->reference, name);
  EXPECT_EQ(r->manifest_digest, img.manifest.digest);
  EXPECT_EQ(r->config_digest, img.config.digest);
  EXPECT_EQ(r->config.config.working_dir, "/srv");
  EXPECT_EQ(r->config.config.GetEnv("BASE").value(), "amd64");
  ASSERT_EQ(r->layers.size(), 1u);
  EXPECT_EQ(r->layers[0].diff_id(), r->config.diff_ids[0]);
  EXPECT_GT(r->layers[0].uncompressed_size(), 0);
  for (const farm::v1::Layer& l : r->layers) {
    EXPECT_TRUE(cas_->Has(common::Digest::ParseOci(l.digest(), l.size()).value()).value());
  }
  EXPECT_EQ(resolver->pulls(), 1);
  // Recorded like `docker pull`: the tag and the repo digest.
  EXPECT_EQ(LookupImage(*images_, name).value().digest, img.manifest.digest);
  EXPECT_TRUE(LookupImage(*images_, fake_.domain() + "/base@" + img.manifest.digest).ok());

  // A new resolver (a later build) finds it locally: no registry traffic at all.
  fake_.ClearRequests();
  auto later = Resolver(PullPolicy::kMissing);
  ASSERT_TRUE(later->Resolve(name, "linux/amd64").ok());
  EXPECT_EQ(later->pulls(), 0);
  EXPECT_TRUE(fake_.requests().empty());

  // --pull asks the registry again; nothing changed, so nothing is downloaded.
  auto always = Resolver(PullPolicy::kAlways);
  ASSERT_TRUE(always->Resolve(name, "linux/amd64").ok());
  EXPECT_EQ(always->pulls(), 1);
  EXPECT_EQ(fake_.CountRequests("GET", "/blobs/"), 0);
  // The tag moved upstream: --pull picks up the new image, the default does not.
  AssembledImage v2 = Publish("base", "", "amd64");  // same content: same digest
  EXPECT_EQ(v2.manifest.digest, img.manifest.digest);
}

TEST_F(StoreResolverTest, NeverPolicyAndBadInput) {
  auto never = Resolver(PullPolicy::kNever);
  absl::StatusOr<ResolvedImage> r = never->Resolve(fake_.domain() + "/absent:1", "linux/amd64");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(r.status().message()).find("pull policy is never"), std::string::npos);
  EXPECT_TRUE(fake_.requests().empty());

  auto resolver = Resolver(PullPolicy::kMissing);
  EXPECT_EQ(resolver->Resolve("Bad:Name", "linux/amd64").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(resolver->Resolve("alpine", "linux").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<ResolvedImage> unknown =
      resolver->Resolve(fake_.domain() + "/absent:1", "linux/amd64");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  // An unreachable registry is UNAVAILABLE (retryable), not NOT_FOUND.
  StoreResolverOptions o;
  o.registry.max_attempts = 1;
  auto offline = StoreResolver::Create(cas_, images_, o).value();
  EXPECT_EQ(offline->Resolve("127.0.0.1:1/x:1", "linux/amd64").status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(StoreResolverTest, PlatformFromIndexAndLocalMismatchPulls) {
  AssembledImage amd = Publish("multi", "");
  AssembledImage arm = Publish("multi", "", "arm64");
  oci::Descriptor idx = AssembleIndex(src_, {amd, arm}, ManifestFormat::kOci).value();
  fake_.PutManifest("multi", "latest", idx.media_type,
                    src_.ReadBlob(common::Digest::ParseOci(idx.digest, idx.size).value()).value());
  auto resolver = Resolver(PullPolicy::kMissing);
  std::string name = fake_.domain() + "/multi";
  absl::StatusOr<ResolvedImage> a = resolver->Resolve(name, "linux/amd64");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->manifest_digest, amd.manifest.digest);
  EXPECT_EQ(a->reference, name + ":latest");
  // The local image is amd64: asking for arm64 pulls the other platform.
  absl::StatusOr<ResolvedImage> b = resolver->Resolve(name, "linux/arm64");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->manifest_digest, arm.manifest.digest);
  EXPECT_EQ(b->config.architecture, "arm64");
  EXPECT_EQ(resolver->pulls(), 2);
  // NAME@<index digest> resolves locally to the image selected from it.
  auto local = Resolver(PullPolicy::kNever);
  absl::StatusOr<ResolvedImage> byidx =
      local->Resolve(fake_.domain() + "/multi@" + idx.digest, "linux/arm64");
  ASSERT_TRUE(byidx.ok()) << byidx.status();
}

TEST_F(StoreResolverTest, EvictedBlobsArePulledAgainAndConcurrentResolvesShareOnePull) {
  AssembledImage img = Publish("base", "1");
  std::string name = fake_.domain() + "/base:1";
  ASSERT_TRUE(Resolver(PullPolicy::kMissing)->Resolve(name, "linux/amd64").ok());
  cas_->Remove(common::Digest::ParseOci(img.layers[0].digest(), img.layers[0].size()).value());
  auto resolver = Resolver(PullPolicy::kMissing);
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(4);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] { results[i] = resolver->Resolve(name, "linux/amd64").status(); });
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(resolver->pulls(), 1);
  EXPECT_TRUE(
      cas_->Has(common::Digest::ParseOci(img.layers[0].digest(), img.layers[0].size()).value())
          .value());
}

}  // namespace
}  // namespace farm::scheduler::image
