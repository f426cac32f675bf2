// The layer store's descriptions of a step's layers (farm::v1::Layer: digest, size, diff ID,
// uncompressed size), for LayerStore::AcquireStack.
#ifndef FARM_WORKER_STEP_LAYERS_H_
#define FARM_WORKER_STEP_LAYERS_H_

#include <vector>

#include "absl/status/statusor.h"
#include "farm/v1/step.pb.h"
#include "worker/layerstore/layer_store.h"

namespace farm::worker {

// In order; a malformed layer is its error annotated "layer N" (1-based).
absl::StatusOr<std::vector<layerstore::LayerDesc>> LayerDescs(
    const google::protobuf::RepeatedPtrField<farm::v1::Layer>& layers);

}  // namespace farm::worker

#endif  // FARM_WORKER_STEP_LAYERS_H_
