// Helpers for worker tests that look at layers and build inputs:
//   - ReadLayer: a layer's tar entries from the CAS (decompressed), by name;
//   - ContextBuilder: a build context as a REAPI Directory tree in the CAS;
//   - MakeLayer: a layer from a directory (stored in the CAS), as a farm.v1.Layer.
#ifndef FARM_WORKER_TESTING_LAYERS_H_
#define FARM_WORKER_TESTING_LAYERS_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cache/blob_store.h"
#include "farm/v1/step.pb.h"
#include "worker/layer/tar_writer.h"

namespace farm::worker::testing {

struct Entry {
  layer::TarHeader header;
  std::string data;
};

// name (as in the tar, without a trailing "/") -> entry, plus the names in archive order.
struct LayerContents {
  std::map<std::string, Entry> entries;
  std::vector<std::string> order;
  bool has(const std::string& name) const { return entries.count(name) > 0; }
  const Entry& at(const std::string& name) const { return entries.at(name); }
};

absl::StatusOr<LayerContents> ReadLayer(cache::BlobStore* cas, const farm::v1::Layer& layer);

absl::StatusOr<farm::v1::Layer> MakeLayer(cache::BlobStore* cas, const std::string& dir,
                                          int64_t source_date_epoch = 0);

// Builds a context tree: files (with the executable bit, optionally the full mode as a client
// records it unless --normalize-permissions), directories and symlinks.
class ContextBuilder {
 public:
  ContextBuilder& File(const std::string& path, const std::string& content, bool executable = false,
                       int unix_mode = -1);
  ContextBuilder& Symlink(const std::string& path, const std::string& target);
  // A file in hard-link group `group` (as a client records context hard links).
  ContextBuilder& Linked(const std::string& path, const std::string& content,
                         const std::string& group);
  ContextBuilder& Dir(const std::string& path);
  // Stores every Directory and file blob; returns the root as the step proto wants it.
  absl::StatusOr<farm::v1::ContextRoot> Store(cache::BlobStore* cas) const;

 private:
  struct Node {
    enum Kind { kFile, kDir, kLink } kind = kDir;
    std::string content;
    bool executable = false;
    int unix_mode = -1;
    std::string target;
    std::string hardlink_group;
    std::map<std::string, Node> children;
  };
  Node* Parent(const std::string& path, std::string* name);
  Node root_;
};

}  // namespace farm::worker::testing

#endif  // FARM_WORKER_TESTING_LAYERS_H_
