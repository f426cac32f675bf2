#include "worker/copy/trees.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::copy {

namespace {

FileInfo FromStat(const struct stat& st) {
  FileInfo info;
  if (S_ISREG(st.st_mode)) {
    info.type = FileType::kRegular;
  } else if (S_ISDIR(st.st_mode)) {
    info.type = FileType::kDirectory;
  } else if (S_ISLNK(st.st_mode)) {
    info.type = FileType::kSymlink;
  } else {
    info.type = FileType::kOther;
  }
  info.mode = st.st_mode & 07777;
  info.uid = st.st_uid;
  info.gid = st.st_gid;
  info.size = S_ISREG(st.st_mode) ? st.st_size : 0;
  info.mtime_sec = st.st_mtim.tv_sec;
  if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
    info.hardlink_group = absl::StrCat(st.st_dev, ":", st.st_ino);
  }
  return info;
}

std::string ReadLink(const std::string& path, size_t size_hint) {
  std::string target(size_hint + 1, '\0');
  ssize_t n = readlink(path.c_str(), &target[0], target.size());
  if (n < 0) return "";
  target.resize(static_cast<size_t>(n));
  return target;
}

}  // namespace

absl::StatusOr<FileInfo> HostFileInfo(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return common::ErrnoToStatus(errno, "lstat " + path);
  FileInfo info = FromStat(st);
  if (info.is_symlink()) info.link_target = ReadLink(path, static_cast<size_t>(st.st_size));
  return info;
}

absl::Status ReadHostFile(const std::string& path, const ReadSink& sink) {
  int fd = open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, "open " + path);
  struct stat st;
  std::vector<char> buf(common::ReadBufferSize(fstat(fd, &st) == 0 ? st.st_size : 1 << 20));
  absl::Status s;
  while (true) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s = common::ErrnoToStatus(errno, "read " + path);
      break;
    }
    if (n == 0) break;
    s = sink(absl::string_view(buf.data(), static_cast<size_t>(n)));
    if (!s.ok()) break;
  }
  close(fd);
  return s;
}

// ---- CasTree ----

absl::StatusOr<std::shared_ptr<const CasTree::Directory>> CasTree::Fetch(
    const common::Digest& d) const {
  {
    absl::MutexLock lock(&mu_);
    auto it = dirs_.find(d);
    if (it != dirs_.end()) return it->second;
  }
  ASSIGN_OR_RETURN(std::string bytes, cas_->ReadBlob(d, 64 << 20));
  auto dir = std::make_shared<Directory>();
  if (!dir->ParseFromString(bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("context directory ", d.OciString(), " is not a REAPI Directory message"));
  }
  absl::MutexLock lock(&mu_);
  dirs_[d] = dir;
  return std::shared_ptr<const Directory>(dir);
}

absl::StatusOr<std::pair<std::shared_ptr<const CasTree::Directory>, common::Digest>> CasTree::Dir(
    absl::string_view path) const {
  common::Digest digest = root_;
  ASSIGN_OR_RETURN(std::shared_ptr<const Directory> dir, Fetch(digest));
  if (path.empty()) return std::make_pair(dir, digest);
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    const build::bazel::remote::execution::v2::DirectoryNode* found = nullptr;
    for (const auto& d : dir->directories()) {
      if (d.name() == part) found = &d;
    }
    if (found == nullptr) {
      bool other = std::any_of(dir->files().begin(), dir->files().end(),
                               [&](const auto& f) { return f.name() == part; }) ||
                   std::any_of(dir->symlinks().begin(), dir->symlinks().end(),
                               [&](const auto& s) { return s.name() == part; });
      if (other)
        return absl::FailedPreconditionError(absl::StrCat("\"", path, "\": not a directory"));
      return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
    }
    ASSIGN_OR_RETURN(digest,
                     common::Digest::Create(found->digest().hash(), found->digest().size_bytes()));
    ASSIGN_OR_RETURN(dir, Fetch(digest));
  }
  return std::make_pair(dir, digest);
}

namespace {

FileInfo DirInfo(const build::bazel::remote::execution::v2::Directory& d) {
  FileInfo info;
  info.type = FileType::kDirectory;
  info.mode =
      d.node_properties().has_unix_mode() ? d.node_properties().unix_mode().value() & 07777 : 0755;
  return info;
}

}  // namespace

absl::StatusOr<FileInfo> CasTree::Lstat(absl::string_view path) const {
  if (path.empty()) {
    ASSIGN_OR_RETURN(auto root, Dir(""));
    return DirInfo(*root.first);
  }
  size_t slash = path.rfind('/');
  absl::string_view parent = slash == absl::string_view::npos ? "" : path.substr(0, slash);
  absl::string_view name = slash == absl::string_view::npos ? path : path.substr(slash + 1);
  auto dir = Dir(parent);
  if (!dir.ok()) {
    if (absl::IsFailedPrecondition(dir.status())) {
      return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
    }
    return dir.status();
  }
  const Directory& d = *dir->first;
  for (const auto& f : d.files()) {
    if (f.name() != name) continue;
    FileInfo info;
    info.type = FileType::kRegular;
    info.size = f.digest().size_bytes();
    if (f.node_properties().has_unix_mode()) {
      info.mode = f.node_properties().unix_mode().value() & 07777;
    } else {
      info.mode = f.is_executable() ? 0755 : 0644;
    }
    for (const auto& p : f.node_properties().properties()) {
      if (p.name() == kHardlinkProperty) info.hardlink_group = p.value();
    }
    ASSIGN_OR_RETURN(common::Digest digest,
                     common::Digest::Create(f.digest().hash(), f.digest().size_bytes()));
    info.digest = digest;
    return info;
  }
  for (const auto& s : d.symlinks()) {
    if (s.name() != name) continue;
    FileInfo info;
    info.type = FileType::kSymlink;
    info.mode = 0777;
    info.link_target = s.target();
    return info;
  }
  for (const auto& sub : d.directories()) {
    if (sub.name() != name) continue;
    ASSIGN_OR_RETURN(common::Digest digest,
                     common::Digest::Create(sub.digest().hash(), sub.digest().size_bytes()));
    ASSIGN_OR_RETURN(std::shared_ptr<const Directory> child, Fetch(digest));
    return DirInfo(*child);
  }
  return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
}

absl::StatusOr<std::vector<DirEntry>> CasTree::ReadDir(absl::string_view path) const {
  ASSIGN_OR_RETURN(auto dir, Dir(path));
  std::vector<DirEntry> out;
  std::string prefix = path.empty() ? "" : absl::StrCat(path, "/");
  for (const auto& f : dir.first->files()) out.push_back({f.name(), {}});
  for (const auto& s : dir.first->symlinks()) out.push_back({s.name(), {}});
  for (const auto& d : dir.first->directories()) out.push_back({d.name(), {}});
  std::sort(out.begin(), out.end(),
            [](const DirEntry& a, const DirEntry& b) { return a.name < b.name; });
  for (DirEntry& e : out) {
    ASSIGN_OR_RETURN(e.info, Lstat(prefix + e.name));
  }
  return out;
}

absl::Status CasTree::ReadFile(absl::string_view path, const ReadSink& sink) const {
  ASSIGN_OR_RETURN(FileInfo info, Lstat(path));
  if (info.type != FileType::kRegular || !info.digest.has_value()) {
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\": not a regular file"));
  }
  return common::Annotate(cas_->Read(*info.digest, 0, 0, sink),
                          absl::StrCat("reading context file \"", path, "\""));
}

absl::StatusOr<common::Digest> CasTree::DirectoryDigest(absl::string_view path) const {
  ASSIGN_OR_RETURN(auto dir, Dir(path));
  return dir.second;
}

// ---- DirectoryTree ----

std::string DirectoryTree::HostPath(absl::string_view path) const {
  return path.empty() ? dir_ : absl::StrCat(dir_, "/", path);
}

absl::StatusOr<FileInfo> DirectoryTree::Lstat(absl::string_view path) const {
  auto info = HostFileInfo(HostPath(path));
  if (!info.ok() && absl::IsNotFound(info.status())) {
    return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  }
  return info;
}

absl::StatusOr<std::vector<DirEntry>> DirectoryTree::ReadDir(absl::string_view path) const {
  std::string host = HostPath(path);
  ASSIGN_OR_RETURN(FileInfo self, Lstat(path));
  if (!self.is_dir())
    return absl::FailedPreconditionError(absl::StrCat("\"", path, "\": not a directory"));
  DIR* d = opendir(host.c_str());
  if (d == nullptr) return common::ErrnoToStatus(errno, "opendir " + host);
  std::vector<std::string> names;
  while (struct dirent* de = readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  std::vector<DirEntry> out;
  for (std::string& n : names) {
    ASSIGN_OR_RETURN(FileInfo info, HostFileInfo(host + "/" + n));
    out.push_back({std::move(n), std::move(info)});
  }
  return out;
}

absl::Status DirectoryTree::ReadFile(absl::string_view path, const ReadSink& sink) const {
  return ReadHostFile(HostPath(path), sink);
}

// ---- StackTree ----

absl::StatusOr<FileInfo> StackTree::Lstat(absl::string_view path) const {
  ASSIGN_OR_RETURN(auto found, view_.Lookup(path));
  if (!found.has_value()) return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  FileInfo info = FromStat(found->st);
  if (info.is_symlink())
    info.link_target = ReadLink(found->host_path, static_cast<size_t>(found->st.st_size));
  return info;
}

absl::StatusOr<std::vector<DirEntry>> StackTree::ReadDir(absl::string_view path) const {
  auto names = view_.ReadDir(path);
  if (!names.ok()) return names.status();
  std::vector<DirEntry> out;
  std::string prefix = path.empty() ? "" : absl::StrCat(path, "/");
  for (const std::string& n : *names) {
    ASSIGN_OR_RETURN(FileInfo info, Lstat(prefix + n));
    out.push_back({n, std::move(info)});
  }
  return out;
}

absl::Status StackTree::ReadFile(absl::string_view path, const ReadSink& sink) const {
  ASSIGN_OR_RETURN(auto found, view_.Lookup(path));
  if (!found.has_value()) return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
  return ReadHostFile(found->host_path, sink);
}

std::string StackTree::HostPath(absl::string_view path) const {
  auto found = view_.Lookup(path);
  if (!found.ok() || !found->has_value()) return "";
  return (*found)->host_path;
}

}  // namespace farm::worker::copy
