#include "worker/copy/source_tree.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace farm::worker::copy {

IndexedTree::IndexedTree(SymlinkPolicy policy, ContentReader reader, HostPathFn host_path)
    : policy_(policy), reader_(std::move(reader)), host_path_(std::move(host_path)) {
  Node root;
  root.info.type = FileType::kDirectory;
  root.info.mode = 0755;
  nodes_.push_back(std::move(root));
}

std::pair<size_t, bool> IndexedTree::FindChild(const Node& parent, absl::string_view name) const {
  const std::vector<uint32_t>& c = parent.children;
  // Walk order adds after the last child: check it first.
  if (c.empty() || nodes_[c.back()].name < name) return {c.size(), false};
  auto it = std::lower_bound(c.begin(), c.end(), name, [this](uint32_t i, absl::string_view n) {
    return absl::string_view(nodes_[i].name) < n;
  });
  size_t at = static_cast<size_t>(it - c.begin());
  return {at, it != c.end() && nodes_[*it].name == name};
}

const IndexedTree::Node* IndexedTree::Find(absl::string_view path) const {
  const Node* n = &nodes_[0];
  if (path.empty()) return n;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    auto [at, found] = FindChild(*n, part);
    if (!found) return nullptr;
    n = &nodes_[n->children[at]];
  }
  return n;
}

void IndexedTree::Add(absl::string_view path, FileInfo info) {
  if (path.empty()) {
    nodes_[0].info = std::move(info);
    return;
  }
  uint32_t cur = 0;
  std::vector<absl::string_view> parts = absl::StrSplit(path, '/');
  for (size_t k = 0; k < parts.size(); ++k) {
    bool last = k + 1 == parts.size();
    auto [at, found] = FindChild(nodes_[cur], parts[k]);
    if (found) {
      uint32_t child = nodes_[cur].children[at];
      if (last) nodes_[child].info = std::move(info);
      cur = child;
      continue;
    }
    Node n;
    n.name = std::string(parts[k]);
    if (last) {
      n.info = std::move(info);
    } else {
      n.info.type = FileType::kDirectory;
      n.info.mode = 0755;
    }
    uint32_t index = static_cast<uint32_t>(nodes_.size());
    nodes_.push_back(std::move(n));  // may move nodes_: index, never hold references
    std::vector<uint32_t>& c = nodes_[cur].children;
    c.insert(c.begin() + static_cast<ptrdiff_t>(at), index);
    cur = index;
  }
}

std::vector<std::string> IndexedTree::Paths() const {
  std::vector<std::string> out;
  out.reserve(size());
  std::function<void(const Node&, const std::string&)> visit = [&](const Node& n,
                                                                   const std::string& prefix) {
    for (uint32_t i : n.children) {
      std::string path =
          prefix.empty() ? nodes_[i].name : absl::StrCat(prefix, "/", nodes_[i].name);
      out.push_back(path);
      visit(nodes_[i], path);
    }
  };
  visit(nodes_[0], "");
  return out;
}

absl::StatusOr<FileInfo> IndexedTree::Lstat(absl::string_view path) const {
  const Node* n = Find(path);
  if (n == nullptr) return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  return n->info;
}

absl::StatusOr<std::vector<DirEntry>> IndexedTree::ReadDir(absl::string_view path) const {
  const Node* n = Find(path);
  if (n == nullptr) return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  if (!n->info.is_dir()) {
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\": not a directory"));
  }
  std::vector<DirEntry> out;
  out.reserve(n->children.size());
  for (uint32_t i : n->children) out.push_back(DirEntry{nodes_[i].name, nodes_[i].info});
  return out;
}

absl::Status IndexedTree::ReadFile(absl::string_view path, const ReadSink& sink) const {
  const Node* n = Find(path);
  if (n == nullptr || path.empty()) {
    return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  }
  if (n->info.type != FileType::kRegular) {
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\": not a regular file"));
  }
  if (!reader_) return absl::UnimplementedError("this tree has no file contents");
  return reader_(path, n->info, sink);
}

std::string IndexedTree::HostPath(absl::string_view path) const {
  return host_path_ ? host_path_(path) : std::string();
}

}  // namespace farm::worker::copy
