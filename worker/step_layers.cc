#include "worker/step_layers.h"

#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace farm::worker {

absl::StatusOr<std::vector<layerstore::LayerDesc>> LayerDescs(
    const google::protobuf::RepeatedPtrField<farm::v1::Layer>& layers) {
  std::vector<layerstore::LayerDesc> out;
  for (int i = 0; i < layers.size(); ++i) {
    const farm::v1::Layer& l = layers[i];
    auto d =
        layerstore::LayerDesc::FromOci(l.digest(), l.size(), l.diff_id(), l.uncompressed_size());
    if (!d.ok()) return common::Annotate(d.status(), absl::StrCat("layer ", i + 1));
    out.push_back(*d);
  }
  return out;
}

}  // namespace farm::worker
