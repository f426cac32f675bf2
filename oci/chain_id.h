// OCI ChainIDs: the identity of a stack of layers (image-spec config.md#layer-chainid).
// ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)), as
// "sha256:<hex>". Workers report the stacks they hold by ChainID and the dispatcher places
// steps by the ChainIDs of their parents, so both must compute them here, the one way.
//
//   std::string top = oci::ChainId({diff0, diff1});
//   std::string next = oci::NextChainId(top, "sha256:…");
#ifndef FARM_OCI_CHAIN_ID_H_
#define FARM_OCI_CHAIN_ID_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace farm::oci {

// The ChainID of `parent_chain` (a ChainID, or "" for none) with `diff_id` on top.
std::string NextChainId(absl::string_view parent_chain, absl::string_view diff_id);
// The ChainID of the whole stack (bottom first); "" for an empty one.
std::string ChainId(const std::vector<common::Digest>& diff_ids);
// The ChainIDs of every prefix of the stack: [ChainID(L0), ChainID(L0,L1), ...].
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

}  // namespace farm::oci

#endif  // FARM_OCI_CHAIN_ID_H_
