// LayerTree: builds the tree of a new layer (overlay form, later archived by
// worker::layer::WriteLayerFromDir) for a step that writes into an image without running anything:
// WORKDIR's directory, COPY/ADD's files.
//
// Directories on the way to what the step writes are included as the image has them (mode,
// owner, mtime, xattrs), so the layer changes nothing but what the step wrote; directories the
// image lacks are created with the attributes the caller gives (COPY: --chown owner, 0755,
// SOURCE_DATE_EPOCH or 0). With `image == nullptr` (COPY --link), every directory is created.
//
//   worker::copy::LayerTree tree(out_dir, &view);
//   RETURN_IF_ERROR(tree.EnsureDir("usr/local/bin", {0755, 0, 0, 0}));
#ifndef FARM_WORKER_COPY_LAYER_TREE_H_
#define FARM_WORKER_COPY_LAYER_TREE_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "worker/layerstore/stack_view.h"

namespace farm::worker::copy {

struct Attrs {
  uint32_t mode = 0755;
  uint32_t uid = 0;
  uint32_t gid = 0;
  int64_t mtime = 0;
};

class LayerTree {
 public:
  LayerTree(std::string out_dir, const layerstore::StackView* image)
      : out_(std::move(out_dir)), image_(image) {}

  // `rel`: clean relative path with the image's symlinks already resolved ("" = root).
  absl::Status EnsureDir(const std::string& rel, const Attrs& created);
  std::string HostPath(const std::string& rel) const {
    return rel.empty() ? out_ : out_ + "/" + rel;
  }
  // Records a directory written by the caller (not through EnsureDir) so Finish() restores its
  // mtime after its content is written.
  void AddDir(const std::string& rel, const Attrs& attrs) { dirs_[rel] = attrs; }
  // Re-applies every directory's mtime, deepest first (adding entries changed them).
  absl::Status Finish();
  // Sets a directory's or file's metadata (not following symlinks).
  static absl::Status Apply(const std::string& host_path, const Attrs& attrs, bool is_symlink);

  const std::string& dir() const { return out_; }
  const layerstore::StackView* image() const { return image_; }

 private:
  std::string out_;
  const layerstore::StackView* image_;
  std::map<std::string, Attrs> dirs_;  // every directory of the layer (relative)
};

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_LAYER_TREE_H_
