#include "worker/copy/layer_tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/layer/diff.h"

namespace farm::worker::copy {

absl::Status LayerTree::Apply(const std::string& path, const Attrs& a, bool is_symlink) {
  if (lchown(path.c_str(), a.uid, a.gid) != 0) return common::ErrnoToStatus(errno, "chown " + path);
  if (!is_symlink && chmod(path.c_str(), a.mode & 07777) != 0) {
    return common::ErrnoToStatus(errno, "chmod " + path);
  }
  struct timespec t[2] = {{a.mtime, 0}, {a.mtime, 0}};
  if (utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW) != 0) {
    return common::ErrnoToStatus(errno, "utimes " + path);
  }
  return absl::OkStatus();
}

absl::Status LayerTree::EnsureDir(const std::string& rel, const Attrs& created) {
  if (rel.empty()) return absl::OkStatus();
  std::string cur;
  for (absl::string_view part : absl::StrSplit(rel, '/')) {
    cur = cur.empty() ? std::string(part) : absl::StrCat(cur, "/", part);
    std::string host = HostPath(cur);
    struct stat st;
    if (lstat(host.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) continue;
      return absl::FailedPreconditionError(absl::StrCat("/", cur, " is not a directory"));
    }
    if (mkdir(host.c_str(), 0755) != 0) return common::ErrnoToStatus(errno, "mkdir " + host);
    std::optional<layerstore::StackView::Found> in_image;
    if (image_ != nullptr) {
      ASSIGN_OR_RETURN(in_image, image_->Lookup(cur));
    }
    if (in_image.has_value() && S_ISDIR(in_image->st.st_mode)) {
      // As the image has it: the layer must not change it.
      Attrs a{in_image->st.st_mode & 07777, in_image->st.st_uid, in_image->st.st_gid,
              in_image->st.st_mtim.tv_sec};
      RETURN_IF_ERROR(Apply(host, a, false));
      dirs_[cur] = a;
      char names[4096];
      ssize_t n = llistxattr(in_image->host_path.c_str(), names, sizeof(names));
      for (ssize_t i = 0; i < n;) {
        std::string name(&names[i]);
        i += static_cast<ssize_t>(name.size()) + 1;
        if (!layer::IsLayerXattr(name)) continue;
        char value[4096];
        ssize_t v = lgetxattr(in_image->host_path.c_str(), name.c_str(), value, sizeof(value));
        if (v >= 0) lsetxattr(host.c_str(), name.c_str(), value, static_cast<size_t>(v), 0);
      }
    } else {
      RETURN_IF_ERROR(Apply(host, created, false));
      dirs_[cur] = created;
    }
  }
  return absl::OkStatus();
}

absl::Status LayerTree::Finish() {
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    std::string host = HostPath(it->first);
    struct timespec t[2] = {{it->second.mtime, 0}, {it->second.mtime, 0}};
    if (utimensat(AT_FDCWD, host.c_str(), t, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) {
      return common::ErrnoToStatus(errno, "utimes " + host);
    }
  }
  return absl::OkStatus();
}

}  // namespace farm::worker::copy
