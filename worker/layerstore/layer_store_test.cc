// LayerStore: unpack once (also under concurrency), verification, leases vs eviction, crash
// recovery and restarts, the exclusive lock, adoption, and flattening deep stacks.
#include "worker/layerstore/layer_store.h"

#include <sys/stat.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"
#include "worker/layer/layer_io.h"
#include "worker/layerstore/stack_view.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::layerstore {
namespace {

using testing::WriteFile;

class LayerStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("layer-store-test");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    dir_ = tmp_->path() + "/store";
  }

  // Makes a layer holding `files` (path -> content) and `whiteouts`, stores it in the CAS.
  LayerDesc MakeLayer(const std::map<std::string, std::string>& files,
                      const std::vector<std::string>& whiteouts = {}) {
    std::string src = absl::StrCat(tmp_->path(), "/src", counter_++);
    EXPECT_OK(common::MakeDirs(src));
    for (const auto& [p, c] : files) EXPECT_OK(WriteFile(src + "/" + p, c));
    for (const auto& w : whiteouts) EXPECT_OK(testing::Whiteout(src + "/" + w));
    layer::WriteOptions opts;
    opts.source_date_epoch = 0;
    auto w = layer::WriteLayerFromDir(src, opts, cas_.get());
    EXPECT_OK(w);
    return LayerDesc{w->blob, w->diff_id};
  }

  std::unique_ptr<LayerStore> Open(int64_t budget = 0, int max_direct = 0) {
    auto s = LayerStore::Create({dir_, budget, cas_, 0, max_direct});
    EXPECT_OK(s);
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::shared_ptr<cache::testing::MemoryBlobStore> cas_ =
      std::make_shared<cache::testing::MemoryBlobStore>();
  std::unique_ptr<common::TempDir> tmp_;
  std::string dir_;
  int counter_ = 0;
};

TEST_F(LayerStoreTest, UnpacksOnceAndStacksTopFirst) {
  LayerDesc a = MakeLayer({{"etc/a", "A"}});
  LayerDesc b = MakeLayer({{"etc/b", "B"}}, {"etc/a"});
  auto store = Open();
  {
    auto stack = store->AcquireStack({a, b});
    ASSERT_OK(stack);
    ASSERT_EQ((*stack)->lower_names().size(), 2u);
    EXPECT_EQ((*stack)->lower_names()[0], "l/" + b.diff_id.hash.substr(0, 12));
    EXPECT_TRUE(
        common::PathExists((*stack)->base_dir() + "/" + (*stack)->lower_names()[1] + "/etc/a"));
    StackView view((*stack)->lower_dirs());
    EXPECT_FALSE(view.Lookup("etc/a")->has_value());
    EXPECT_TRUE(view.Lookup("etc/b")->has_value());
  }
  auto again = store->AcquireStack({a, b});
  ASSERT_OK(again);
  EXPECT_EQ(store->GetStats().unpacks, 2);
  EXPECT_TRUE(store->Has(a.diff_id));
}

TEST_F(LayerStoreTest, ConcurrentAcquiresShareOneUnpack) {
  std::vector<LayerDesc> layers;
  for (int i = 0; i < 4; ++i) layers.push_back(MakeLayer({{absl::StrCat("f", i), "x"}}));
  auto store = Open();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto s = store->AcquireStack(layers);
      if (s.ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(store->GetStats().unpacks, 4);
}

TEST_F(LayerStoreTest, EmptyStackIsOneEmptyDir) {
  auto store = Open();
  auto stack = store->AcquireStack({});
  ASSERT_OK(stack);
  EXPECT_EQ((*stack)->lower_names(), std::vector<std::string>{"empty"});
}

TEST_F(LayerStoreTest, VerificationFailureLeavesNothing) {
  LayerDesc a = MakeLayer({{"x", "1"}});
  LayerDesc bad = a;
  bad.diff_id = common::DigestOf("something else");
  auto store = Open();
  absl::Status s = store->AcquireStack({bad}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(std::string(s.message()).find("layer 1/1"), std::string::npos) << s;
  EXPECT_FALSE(store->Has(bad.diff_id));
  EXPECT_TRUE(common::PathExists(dir_ + "/tmp"));
  EXPECT_EQ(store->GetStats().layers, 0);

  LayerDesc missing{common::DigestOf("absent"), common::DigestOf("absent tar")};
  EXPECT_EQ(store->AcquireStack({missing}).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LayerStoreTest, LeasesPreventEvictionAndLruEvictsTheOldest) {
  LayerDesc a = MakeLayer({{"a", std::string(100000, 'a')}});
  LayerDesc b = MakeLayer({{"b", std::string(100000, 'b')}});
  LayerDesc c = MakeLayer({{"c", std::string(100000, 'c')}});
  auto store = Open(/*budget=*/250000);
  { ASSERT_OK(store->AcquireStack({a})); }
  auto hold_b = store->AcquireStack({b});
  ASSERT_OK(hold_b);
  {
    auto hold_c = store->AcquireStack({c});  // over budget: a (unused, oldest) goes
    ASSERT_OK(hold_c);
    EXPECT_FALSE(store->Has(a.diff_id));
    EXPECT_TRUE(store->Has(b.diff_id));
    EXPECT_TRUE(store->Has(c.diff_id));
    // Both in use: acquiring a again goes over budget but evicts neither.
    auto hold_a = store->AcquireStack({a});
    ASSERT_OK(hold_a);
    EXPECT_TRUE(store->Has(b.diff_id));
    EXPECT_TRUE(store->Has(c.diff_id));
  }
  // Releasing brings the store back under budget.
  EXPECT_LE(store->GetStats().bytes, 250000);
  EXPECT_TRUE(store->Has(b.diff_id));  // still leased
  EXPECT_GE(store->GetStats().evictions, 2);
}

TEST_F(LayerStoreTest, SurvivesRestartAndCleansCrashLeftovers) {
  LayerDesc a = MakeLayer({{"a", "1"}});
  {
    auto store = Open();
    ASSERT_OK(store->AcquireStack({a}));
    // Only one process at a time.
    EXPECT_EQ(LayerStore::Create({dir_, 0, cas_}).status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  // Simulate a crash mid-unpack and a half-installed entry.
  ASSERT_OK(WriteFile(dir_ + "/tmp/123-0-0/root/partial", "x"));
  ASSERT_OK(common::MakeDirs(dir_ + "/sha256/" + common::DigestOf("half").hash + "/root"));
  auto store = Open();
  EXPECT_TRUE(store->Has(a.diff_id));
  EXPECT_FALSE(common::PathExists(dir_ + "/tmp/123-0-0"));
  EXPECT_FALSE(store->Has(common::DigestOf("half")));
  ASSERT_OK(store->AcquireStack({a}));
  EXPECT_EQ(store->GetStats().unpacks, 0);
}

TEST_F(LayerStoreTest, AdoptedDirectoryServesAsTheLayer) {
  LayerDesc a = MakeLayer({{"adopted", "yes"}});
  auto store = Open();
  std::string upper = tmp_->path() + "/upper";
  ASSERT_OK(WriteFile(upper + "/adopted", "yes"));
  ASSERT_OK(store->Adopt(upper, a.diff_id, 100));
  EXPECT_FALSE(common::PathExists(upper));
  auto stack = store->AcquireStack({a});
  ASSERT_OK(stack);
  EXPECT_EQ(store->GetStats().unpacks, 0);
  EXPECT_EQ(*common::ReadFile((*stack)->lower_dirs()[0] + "/adopted"), "yes");
}

TEST_F(LayerStoreTest, EvictingALayerSweepsThePooledFilesOnlyItHeld) {
  LayerDesc a = MakeLayer({{"f", std::string(100000, 'f')}});
  LayerDesc b = MakeLayer({{"g", std::string(100000, 'g')}});
  auto store = Open(/*budget=*/150000);
  std::string upper = tmp_->path() + "/upper";
  ASSERT_OK(WriteFile(upper + "/f", std::string(100000, 'f')));
  FilePool::Key key{"f", common::DigestOf(std::string(100000, 'f')), 0644, 0, 0, 0};
  ASSERT_EQ(chmod((upper + "/f").c_str(), 0644), 0);
  struct timespec t[2] = {{0, 0}, {0, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, (upper + "/f").c_str(), t, 0), 0);
  store->files()->Add(key, upper + "/f");
  ASSERT_TRUE(common::PathExists(store->files()->PathOf(key)));
  ASSERT_OK(store->Adopt(upper, a.diff_id, 100000));
  { ASSERT_OK(store->AcquireStack({b})); }  // over budget: a goes, and its pooled file
  EXPECT_FALSE(store->Has(a.diff_id));
  EXPECT_FALSE(common::PathExists(store->files()->PathOf(key)));
}

TEST_F(LayerStoreTest, DeepStacksAreFlattenedAtTheBottom) {
  std::vector<LayerDesc> layers;
  layers.push_back(MakeLayer({{"base/keep", "k"}, {"base/gone", "g"}}));
  for (int i = 0; i < 6; ++i) layers.push_back(MakeLayer({{absl::StrCat("f", i), "x"}}));
  layers.push_back(MakeLayer({{"top", "t"}}, {"base/gone"}));
  auto store = Open(0, /*max_direct=*/3);
  auto stack = store->AcquireStack(layers);
  ASSERT_OK(stack);
  EXPECT_TRUE((*stack)->flattened());
  ASSERT_EQ((*stack)->lower_names().size(), 3u);
  EXPECT_EQ((*stack)->lower_names()[2].substr(0, 3), "l/F");
  StackView view((*stack)->lower_dirs());
  auto root = view.ReadDir("/");
  ASSERT_OK(root);
  EXPECT_EQ(*root, (std::vector<std::string>{"base", "f0", "f1", "f2", "f3", "f4", "f5", "top"}));
  EXPECT_FALSE(view.Lookup("base/gone")->has_value());
  // The flattened bottom is cached by chain id.
  auto again = store->AcquireStack(layers);
  ASSERT_OK(again);
  EXPECT_EQ((*again)->lower_dirs(), (*stack)->lower_dirs());
}

}  // namespace
}  // namespace farm::worker::layerstore
