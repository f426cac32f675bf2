#include "worker/agent/chain_index.h"

#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "oci/chain_id.h"
#include "worker/layerstore/layer_store.h"

namespace farm::worker::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

common::Digest D(char c) { return common::DigestOf(std::string(1, c)); }
std::string Chain(std::vector<common::Digest> d) { return oci::ChainId(d); }
absl::flat_hash_set<std::string> Present(std::vector<common::Digest> ds) {
  absl::flat_hash_set<std::string> s;
  for (const auto& d : ds) s.insert(d.OciString());
  return s;
}

class ChainIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = common::TempDir::Create("chains");
    ASSERT_OK(t);
    tmp_ = std::make_unique<common::TempDir>(std::move(*t));
    path_ = tmp_->path() + "/chains";
  }
  std::unique_ptr<common::TempDir> tmp_;
  std::string path_;
};

TEST_F(ChainIndexTest, ReportsHeldStacksAsOciChainIdsMostRecentFirst) {
  auto index = ChainIndex::Load(path_, 100);
  ASSERT_OK(index);
  (*index)->Record({D('a'), D('b')});
  (*index)->Record({D('a'), D('c'), D('d')});
  std::vector<std::string> held = (*index)->Reset(Present({D('a'), D('b'), D('c'), D('d')}));
  EXPECT_THAT(held, ElementsAre(Chain({D('a'), D('c'), D('d')}), Chain({D('a'), D('c')}),
                                Chain({D('a')}), Chain({D('a'), D('b')})));
  EXPECT_EQ(held[2], D('a').OciString());  // a bottom layer's chain is its diff_id
}

TEST_F(ChainIndexTest, AChainIsHeldOnlyWhileAllItsLayersAre) {
  auto index = ChainIndex::Load(path_, 100);
  ASSERT_OK(index);
  (*index)->Record({D('a'), D('b'), D('c')});
  EXPECT_THAT((*index)->Reset(Present({D('a'), D('c')})), ElementsAre(Chain({D('a')})));
  // b comes back (unpacked again), then a is evicted.
  ChainIndex::Delta d = (*index)->Diff(Present({D('a'), D('b'), D('c')}));
  EXPECT_THAT(d.added,
              UnorderedElementsAre(Chain({D('a'), D('b')}), Chain({D('a'), D('b'), D('c')})));
  EXPECT_THAT(d.removed, IsEmpty());
  d = (*index)->Diff(Present({D('b'), D('c')}));
  EXPECT_THAT(d.added, IsEmpty());
  EXPECT_THAT(d.removed, UnorderedElementsAre(Chain({D('a')}), Chain({D('a'), D('b')}),
                                              Chain({D('a'), D('b'), D('c')})));
  d = (*index)->Diff(Present({D('b'), D('c')}));
  EXPECT_THAT(d.added, IsEmpty());
  EXPECT_THAT(d.removed, IsEmpty());
}

TEST_F(ChainIndexTest, PersistsAndBoundsItsSize) {
  {
    auto index = ChainIndex::Load(path_, 3);
    ASSERT_OK(index);
    (*index)->Record({D('a'), D('b')});
    (*index)->Record({D('x')});
    (*index)->Record({D('a'), D('b')});  // a, ab used again: x is the oldest
    (*index)->Record({D('y')});
    EXPECT_EQ((*index)->size(), 3);
    ASSERT_OK((*index)->Save());
  }
  auto again = ChainIndex::Load(path_, 3);
  ASSERT_OK(again);
  EXPECT_EQ((*again)->skipped(), 0);
  EXPECT_THAT((*again)->Reset(Present({D('a'), D('b'), D('x'), D('y')})),
              ElementsAre(Chain({D('y')}), Chain({D('a'), D('b')}), Chain({D('a')})));
  // Limited reports keep the most recent.
  EXPECT_THAT((*again)->Reset(Present({D('a'), D('b'), D('y')}), 1), ElementsAre(Chain({D('y')})));
  EXPECT_THAT((*again)->Diff(Present({D('a'), D('b'), D('y')})).added, IsEmpty());
}

TEST_F(ChainIndexTest, MalformedLinesAreSkipped) {
  std::string good = Chain({D('a')});
  ASSERT_OK(common::WriteFileAtomic(path_, "farm-worker chains v1\n" + good + " - " +
                                               D('a').OciString() + " 7\n" +
                                               "garbage\nsha256:zz - sha256:yy 1\n"));
  auto index = ChainIndex::Load(path_, 10);
  ASSERT_OK(index);
  EXPECT_EQ((*index)->skipped(), 2);
  EXPECT_THAT((*index)->Reset(Present({D('a')})), ElementsAre(good));
}

}  // namespace
}  // namespace farm::worker::agent
