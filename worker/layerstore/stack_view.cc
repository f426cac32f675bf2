#include "worker/layerstore/stack_view.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/layerstore/flatten.h"

namespace farm::worker::layerstore {

std::vector<std::string> SplitClean(absl::string_view path) {
  std::vector<std::string> parts;
  for (absl::string_view p : absl::StrSplit(path, '/')) {
    if (p.empty() || p == ".") continue;
    if (p == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.emplace_back(p);
  }
  return parts;
}

namespace {

enum class Probe { kFound, kDeleted, kStop, kContinue };

// Looks `parts` up in one layer. kStop: not here, and an opaque directory on the way hides the
// lower layers; kDeleted: a whiteout or a non-directory on the way hides it.
Probe ProbeLayer(const std::string& root, const std::vector<std::string>& parts, size_t n,
                 std::string* host, struct stat* st) {
  std::string cur = root;
  bool opaque = false;
  for (size_t k = 0; k < n; ++k) {
    cur += "/" + parts[k];
    if (lstat(cur.c_str(), st) != 0) return opaque ? Probe::kStop : Probe::kContinue;
    if (IsOverlayWhiteout(cur, *st)) return Probe::kDeleted;
    if (k + 1 == n) {
      *host = cur;
      return Probe::kFound;
    }
    if (!S_ISDIR(st->st_mode)) return Probe::kDeleted;
    if (IsOverlayOpaque(cur)) opaque = true;
  }
  // n == 0: the root.
  *host = root;
  if (lstat(root.c_str(), st) != 0) return Probe::kContinue;
  return Probe::kFound;
}

absl::StatusOr<std::optional<StackView::Found>> LookupParts(const std::vector<std::string>& layers,
                                                            const std::vector<std::string>& parts,
                                                            size_t n) {
  for (const std::string& root : layers) {
    StackView::Found f;
    switch (ProbeLayer(root, parts, n, &f.host_path, &f.st)) {
      case Probe::kFound:
        return std::optional<StackView::Found>(std::move(f));
      case Probe::kDeleted:
      case Probe::kStop:
        return std::optional<StackView::Found>();
      case Probe::kContinue:
        break;
    }
  }
  return std::optional<StackView::Found>();
}

}  // namespace

absl::StatusOr<std::optional<StackView::Found>> StackView::Lookup(absl::string_view path) const {
  std::vector<std::string> parts = SplitClean(path);
  return LookupParts(layers_, parts, parts.size());
}

absl::StatusOr<std::vector<std::string>> StackView::ReadDir(absl::string_view path) const {
  std::vector<std::string> parts = SplitClean(path);
  std::set<std::string> seen, out;
  bool any = false;
  for (const std::string& root : layers_) {
    Found f;
    Probe p = ProbeLayer(root, parts, parts.size(), &f.host_path, &f.st);
    if (p == Probe::kDeleted || p == Probe::kStop) break;
    if (p == Probe::kContinue) continue;
    if (!S_ISDIR(f.st.st_mode)) {
      if (!any)
        return absl::FailedPreconditionError(
            absl::StrCat("/", absl::StrJoin(parts, "/"), " is not a directory"));
      break;  // a lower non-directory is hidden by the directory above
    }
    any = true;
    DIR* d = opendir(f.host_path.c_str());
    if (d == nullptr) return common::ErrnoToStatus(errno, "opendir " + f.host_path);
    while (struct dirent* de = readdir(d)) {
      std::string name = de->d_name;
      if (name == "." || name == ".." || !seen.insert(name).second) continue;
      struct stat st;
      std::string child = f.host_path + "/" + name;
      if (lstat(child.c_str(), &st) == 0 && IsOverlayWhiteout(child, st)) continue;
      out.insert(name);
    }
    closedir(d);
    if (IsOverlayOpaque(f.host_path)) break;
  }
  if (!any) return absl::NotFoundError(absl::StrCat("/", absl::StrJoin(parts, "/"), " not found"));
  return std::vector<std::string>(out.begin(), out.end());
}

absl::StatusOr<std::string> StackView::ReadFile(absl::string_view path, int64_t max_bytes) const {
  ASSIGN_OR_RETURN(std::optional<Found> f, Lookup(path));
  if (!f.has_value()) return absl::NotFoundError(absl::StrCat(path, " not found"));
  if (!S_ISREG(f->st.st_mode))
    return absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file"));
  if (f->st.st_size > max_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
  }
  int fd = open(f->host_path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, "open " + f->host_path);
  std::string out(static_cast<size_t>(f->st.st_size), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = read(fd, &out[got], out.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  out.resize(got);
  return out;
}

absl::StatusOr<std::string> StackView::Readlink(absl::string_view path) const {
  ASSIGN_OR_RETURN(std::optional<Found> f, Lookup(path));
  if (!f.has_value() || !S_ISLNK(f->st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a symlink"));
  }
  std::string target(static_cast<size_t>(f->st.st_size) + 1, '\0');
  ssize_t n = readlink(f->host_path.c_str(), &target[0], target.size());
  if (n < 0) return common::ErrnoToStatus(errno, "readlink " + f->host_path);
  target.resize(static_cast<size_t>(n));
  return target;
}

absl::StatusOr<StackView::Resolved> StackView::Resolve(absl::string_view path,
                                                       bool follow_final) const {
  std::vector<std::string> remaining = SplitClean(path);
  std::reverse(remaining.begin(), remaining.end());  // a stack: back() is next
  std::vector<std::string> done;
  int links = 0;
  Resolved out;
  while (!remaining.empty()) {
    std::string part = std::move(remaining.back());
    remaining.pop_back();
    if (part == "." || part.empty()) continue;
    if (part == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    done.push_back(part);
    ASSIGN_OR_RETURN(std::optional<Found> f, LookupParts(layers_, done, done.size()));
    if (!f.has_value()) {
      // Missing: the rest is taken as written (cleaned lexically).
      std::vector<std::string> rest(remaining.rbegin(), remaining.rend());
      for (const std::string& r : SplitClean(absl::StrJoin(rest, "/"))) done.push_back(r);
      out.path = absl::StrJoin(done, "/");
      out.exists = false;
      return out;
    }
    bool last = remaining.empty();
    if (S_ISLNK(f->st.st_mode) && (!last || follow_final)) {
      if (++links > 40) {
        return absl::FailedPreconditionError(
            absl::StrCat("too many levels of symbolic links resolving ", path));
      }
      std::string target(static_cast<size_t>(f->st.st_size) + 1, '\0');
      ssize_t n = readlink(f->host_path.c_str(), &target[0], target.size());
      if (n < 0) return common::ErrnoToStatus(errno, "readlink " + f->host_path);
      target.resize(static_cast<size_t>(n));
      done.pop_back();
      if (!target.empty() && target[0] == '/') done.clear();
      std::vector<std::string> t = absl::StrSplit(target, '/', absl::SkipEmpty());
      for (auto it = t.rbegin(); it != t.rend(); ++it) remaining.push_back(*it);
      continue;
    }
    if (!last && !S_ISDIR(f->st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("resolving ", path, ": /", absl::StrJoin(done, "/"), " is not a directory"));
    }
    if (last) {
      out.path = absl::StrJoin(done, "/");
      out.exists = true;
      out.st = f->st;
      return out;
    }
  }
  // The root (or everything resolved to it).
  ASSIGN_OR_RETURN(std::optional<Found> f, LookupParts(layers_, done, done.size()));
  out.path = absl::StrJoin(done, "/");
  out.exists = f.has_value();
  if (f.has_value()) out.st = f->st;
  return out;
}

}  // namespace farm::worker::layerstore
