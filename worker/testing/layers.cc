#include "worker/testing/layers.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "common/status_macros.h"
#include "oci/compression.h"
#include "worker/copy/source_tree.h"
#include "worker/layer/layer_io.h"
#include "worker/layer/tar_reader.h"

namespace farm::worker::testing {
namespace {

class Collector : public layer::TarEntryHandler {
 public:
  explicit Collector(LayerContents* out) : out_(out) {}
  absl::Status OnEntry(const layer::TarHeader& h) override {
    current_ = h.name;
    out_->order.push_back(h.name);
    out_->entries[h.name] = Entry{h, ""};
    return absl::OkStatus();
  }
  absl::Status OnData(absl::string_view d) override {
    out_->entries[current_].data.append(d.data(), d.size());
    return absl::OkStatus();
  }
  absl::Status OnEntryEnd() override { return absl::OkStatus(); }

 private:
  LayerContents* out_;
  std::string current_;
};

}  // namespace

absl::StatusOr<LayerContents> ReadLayer(cache::BlobStore* cas, const farm::v1::Layer& l) {
  ASSIGN_OR_RETURN(common::Digest d, common::Digest::ParseOci(l.digest(), l.size()));
  LayerContents out;
  Collector c(&out);
  layer::TarReader reader(&c);
  auto dec = oci::Decompressor::Create(&reader);
  RETURN_IF_ERROR(cas->Read(d, 0, 0, [&](absl::string_view chunk) { return dec->Write(chunk); }));
  RETURN_IF_ERROR(dec->Finish());
  RETURN_IF_ERROR(reader.Finish());
  return out;
}

absl::StatusOr<farm::v1::Layer> MakeLayer(cache::BlobStore* cas, const std::string& dir,
                                          int64_t sde) {
  layer::WriteOptions o;
  o.source_date_epoch = sde;
  ASSIGN_OR_RETURN(layer::WrittenLayer w, layer::WriteLayerFromDir(dir, o, cas));
  farm::v1::Layer l;
  l.set_digest(w.blob.OciString());
  l.set_size(w.blob.size_bytes);
  l.set_diff_id(w.diff_id.OciString());
  l.set_uncompressed_size(w.diff_id.size_bytes);
  l.set_media_type(w.media_type);
  return l;
}

ContextBuilder::Node* ContextBuilder::Parent(const std::string& path, std::string* name) {
  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  Node* n = &root_;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    Node& child = n->children[parts[i]];
    child.kind = Node::kDir;
    n = &child;
  }
  *name = parts.back();
  return n;
}

ContextBuilder& ContextBuilder::File(const std::string& path, const std::string& content,
                                     bool executable, int unix_mode) {
  std::string name;
  Node& f = Parent(path, &name)->children[name];
  f.kind = Node::kFile;
  f.content = content;
  f.executable = executable;
  f.unix_mode = unix_mode;
  return *this;
}

ContextBuilder& ContextBuilder::Linked(const std::string& path, const std::string& content,
                                       const std::string& group) {
  File(path, content);
  std::string name;
  Parent(path, &name)->children[name].hardlink_group = group;
  return *this;
}

ContextBuilder& ContextBuilder::Symlink(const std::string& path, const std::string& target) {
  std::string name;
  Node& f = Parent(path, &name)->children[name];
  f.kind = Node::kLink;
  f.target = target;
  return *this;
}

ContextBuilder& ContextBuilder::Dir(const std::string& path) {
  std::string name;
  Parent(path, &name)->children[name].kind = Node::kDir;
  return *this;
}

absl::StatusOr<farm::v1::ContextRoot> ContextBuilder::Store(cache::BlobStore* cas) const {
  namespace reapi = build::bazel::remote::execution::v2;
  std::function<absl::StatusOr<common::Digest>(const Node&)> store =
      [&](const Node& n) -> absl::StatusOr<common::Digest> {
    reapi::Directory d;
    for (const auto& [name, c] : n.children) {  // std::map: sorted, as REAPI wants
      if (c.kind == Node::kFile) {
        ASSIGN_OR_RETURN(common::Digest fd, cas->Put(c.content));
        reapi::FileNode* f = d.add_files();
        f->set_name(name);
        f->mutable_digest()->set_hash(fd.hash);
        f->mutable_digest()->set_size_bytes(fd.size_bytes);
        f->set_is_executable(c.executable);
        if (c.unix_mode >= 0)
          f->mutable_node_properties()->mutable_unix_mode()->set_value(c.unix_mode);
        if (!c.hardlink_group.empty()) {
          auto* p = f->mutable_node_properties()->add_properties();
          p->set_name(copy::kHardlinkProperty);
          p->set_value(c.hardlink_group);
        }
      } else if (c.kind == Node::kLink) {
        reapi::SymlinkNode* s = d.add_symlinks();
        s->set_name(name);
        s->set_target(c.target);
      } else {
        ASSIGN_OR_RETURN(common::Digest sub, store(c));
        reapi::DirectoryNode* dn = d.add_directories();
        dn->set_name(name);
        dn->mutable_digest()->set_hash(sub.hash);
        dn->mutable_digest()->set_size_bytes(sub.size_bytes);
      }
    }
    return cas->Put(d.SerializeAsString());
  };
  ASSIGN_OR_RETURN(common::Digest root, store(root_));
  farm::v1::ContextRoot out;
  out.set_digest(root.OciString());
  out.set_size(root.size_bytes);
  return out;
}

}  // namespace farm::worker::testing
