#include "oci/chain_id.h"

#include "absl/strings/str_cat.h"

namespace farm::oci {

std::string NextChainId(absl::string_view parent_chain, absl::string_view diff_id) {
  if (parent_chain.empty()) return std::string(diff_id);
  return common::DigestOf(absl::StrCat(parent_chain, " ", diff_id)).OciString();
}

std::string ChainId(const std::vector<common::Digest>& diff_ids) {
  std::string chain;
  for (const common::Digest& d : diff_ids) chain = NextChainId(chain, d.OciString());
  return chain;
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  std::string chain;
  for (const std::string& d : diff_ids) {
    chain = NextChainId(chain, d);
    out.push_back(chain);
  }
  return out;
}

}  // namespace farm::oci
