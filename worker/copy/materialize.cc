#include "worker/copy/materialize.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/copy/layer_tree.h"

namespace farm::worker::copy {

absl::Status CopyFileContent(const SourceTree& tree, const std::string& path,
                             const std::string& dest) {
  int out = open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0) return common::ErrnoToStatus(errno, "create " + dest);
  absl::Status s;
  std::string host = tree.HostPath(path);
  int in = host.empty() ? -1 : open(host.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in >= 0) {
    // In-kernel copy (reflink on file systems that have them).
    while (true) {
      ssize_t n = copy_file_range(in, nullptr, out, nullptr, 1 << 30, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        s = common::ErrnoToStatus(errno, "copy " + host + " to " + dest);
        break;
      }
      if (n == 0) break;
    }
    close(in);
  } else {
    s = tree.ReadFile(path, [&](absl::string_view chunk) -> absl::Status {
      while (!chunk.empty()) {
        ssize_t n = write(out, chunk.data(), chunk.size());
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return common::ErrnoToStatus(errno, "write " + dest);
        chunk.remove_prefix(static_cast<size_t>(n));
      }
      return absl::OkStatus();
    });
  }
  if (close(out) != 0 && s.ok()) s = common::ErrnoToStatus(errno, "close " + dest);
  return s;
}

absl::Status Materialize(const SourceTree& tree, const std::string& path, const std::string& dest) {
  ASSIGN_OR_RETURN(FileInfo info, tree.Lstat(path));
  Attrs attrs{info.mode, info.uid, info.gid, info.mtime_sec};
  switch (info.type) {
    case FileType::kRegular:
      RETURN_IF_ERROR(CopyFileContent(tree, path, dest));
      return LayerTree::Apply(dest, attrs, false);
    case FileType::kSymlink:
      if (symlink(info.link_target.c_str(), dest.c_str()) != 0) {
        return common::ErrnoToStatus(errno, "symlink " + dest);
      }
      return LayerTree::Apply(dest, attrs, true);
    case FileType::kDirectory: {
      if (mkdir(dest.c_str(), 0700) != 0) return common::ErrnoToStatus(errno, "mkdir " + dest);
      ASSIGN_OR_RETURN(std::vector<DirEntry> entries, tree.ReadDir(path));
      for (const DirEntry& e : entries) {
        std::string child = path.empty() ? e.name : absl::StrCat(path, "/", e.name);
        RETURN_IF_ERROR(Materialize(tree, child, absl::StrCat(dest, "/", e.name)));
      }
      return LayerTree::Apply(dest, attrs, false);
    }
    case FileType::kOther:
      break;
  }
  return absl::OkStatus();  // devices, fifos, sockets: not materialized
}

}  // namespace farm::worker::copy
