#include "oci/chain_id.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace farm::oci {
namespace {

TEST(ChainIdTest, FollowsTheImageSpec) {
  common::Digest a = common::DigestOf("layer a");
  common::Digest b = common::DigestOf("layer b");
  EXPECT_EQ(ChainId({}), "");
  EXPECT_EQ(ChainId({a}), a.OciString());
  std::string ab = common::DigestOf(absl::StrCat(a.OciString(), " ", b.OciString())).OciString();
  EXPECT_EQ(ChainId({a, b}), ab);
  EXPECT_EQ(NextChainId(a.OciString(), b.OciString()), ab);
  EXPECT_EQ(ChainIds({a.OciString(), b.OciString()}),
            (std::vector<std::string>{a.OciString(), ab}));
}

}  // namespace
}  // namespace farm::oci
