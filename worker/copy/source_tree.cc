#include "worker/copy/source_tree.h"

#include "absl/strings/str_cat.h"

namespace farm::worker::copy {

namespace {

// Splits "a/b/c" into ("a/b", "c"); "c" into ("", "c").
std::pair<std::string, std::string> SplitParent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return {"", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

}  // namespace

IndexedTree::IndexedTree(SymlinkPolicy policy, ContentReader reader, HostPathFn host_path)
    : policy_(policy), reader_(std::move(reader)), host_path_(std::move(host_path)) {
  root_.type = FileType::kDirectory;
  root_.mode = 0755;
  children_[""];
}

void IndexedTree::Add(const std::string& path, FileInfo info) {
  if (path.empty()) {
    root_ = std::move(info);
    return;
  }
  auto [parent, name] = SplitParent(path);
  if (!parent.empty() && entries_.count(parent) == 0) {
    FileInfo dir;
    dir.type = FileType::kDirectory;
    dir.mode = 0755;
    Add(parent, dir);
  }
  children_[parent].insert(name);
  if (info.is_dir()) children_[path];
  entries_[path] = std::move(info);
}

absl::StatusOr<FileInfo> IndexedTree::Lstat(absl::string_view path) const {
  if (path.empty()) return root_;
  auto it = entries_.find(std::string(path));
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  }
  return it->second;
}

absl::StatusOr<std::vector<DirEntry>> IndexedTree::ReadDir(absl::string_view path) const {
  std::string p(path);
  if (!p.empty()) {
    auto e = entries_.find(p);
    if (e == entries_.end()) return absl::NotFoundError(absl::StrCat("\"", p, "\": not found"));
    if (!e->second.is_dir()) {
      return absl::FailedPreconditionError(absl::StrCat("\"", p, "\": not a directory"));
    }
  }
  std::vector<DirEntry> out;
  auto c = children_.find(p);
  if (c == children_.end()) return out;
  out.reserve(c->second.size());
  for (const std::string& name : c->second) {
    std::string child = p.empty() ? name : absl::StrCat(p, "/", name);
    out.push_back(DirEntry{name, entries_.at(child)});
  }
  return out;
}

absl::Status IndexedTree::ReadFile(absl::string_view path, const ReadSink& sink) const {
  auto e = entries_.find(std::string(path));
  if (e == entries_.end()) return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  if (e->second.type != FileType::kRegular) {
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\": not a regular file"));
  }
  if (!reader_) return absl::UnimplementedError("this tree has no file contents");
  return reader_(path, e->second, sink);
}

std::string IndexedTree::HostPath(absl::string_view path) const {
  return host_path_ ? host_path_(path) : std::string();
}

}  // namespace farm::worker::copy
