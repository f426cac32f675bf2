#include "worker/layerstore/file_pool.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"

namespace farm::worker::layerstore {

std::string FilePool::PathOf(const Key& key) const {
  // The path cannot hold a NUL: it separates the fields.
  std::string hex = common::Sha256Hex(
      absl::StrCat("farm-file-pool-v1", std::string(1, '\0'), key.path, std::string(1, '\0'),
                   key.digest.hash, ":", key.digest.size_bytes, ":", key.mode & 07777, ":", key.uid,
                   ":", key.gid, ":", key.mtime));
  return absl::StrCat(dir_, "/", hex.substr(0, 2), "/", hex.substr(2));
}

bool FilePool::LinkInto(const Key& key, const std::string& target) const {
  std::string pooled = PathOf(key);
  struct stat st;
  if (lstat(pooled.c_str(), &st) != 0) return false;
  // Checked again before every use: a pooled inode that somehow changed is not spread further.
  if (!S_ISREG(st.st_mode) || st.st_size != key.digest.size_bytes ||
      (st.st_mode & 07777) != (key.mode & 07777) || st.st_uid != key.uid || st.st_gid != key.gid ||
      st.st_mtim.tv_sec != key.mtime || st.st_mtim.tv_nsec != 0) {
    unlink(pooled.c_str());
    return false;
  }
  return link(pooled.c_str(), target.c_str()) == 0;
}

void FilePool::Add(const Key& key, const std::string& file) const {
  std::string pooled = PathOf(key);
  if (link(file.c_str(), pooled.c_str()) == 0 || errno != ENOENT) return;
  // The first file of this prefix: make its directory and try again.
  std::string sub = pooled.substr(0, pooled.rfind('/'));
  if (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) return;
  if (mkdir(sub.c_str(), 0700) != 0 && errno != EEXIST) return;
  (void)link(file.c_str(), pooled.c_str());
}

FilePool::SweepStats FilePool::Sweep() const {
  SweepStats stats;
  DIR* top = opendir(dir_.c_str());
  if (top == nullptr) return stats;
  while (struct dirent* de = readdir(top)) {
    std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    std::string sub = absl::StrCat(dir_, "/", name);
    int fd = open(sub.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) continue;
    DIR* d = fdopendir(fd);
    if (d == nullptr) {
      close(fd);
      continue;
    }
    while (struct dirent* f = readdir(d)) {
      if (f->d_name[0] == '.') continue;
      struct stat st;
      if (fstatat(fd, f->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      if (S_ISREG(st.st_mode) && st.st_nlink > 1) {
        ++stats.kept;
        continue;
      }
      if (unlinkat(fd, f->d_name, 0) == 0) {
        ++stats.removed;
        if (S_ISREG(st.st_mode)) stats.removed_bytes += st.st_size;
      }
    }
    closedir(d);
  }
  closedir(top);
  return stats;
}

}  // namespace farm::worker::layerstore
