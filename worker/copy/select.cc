#include "worker/copy/select.h"

#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace farm::worker::copy {

namespace {

constexpr int kMaxSymlinks = 40;  // Linux's MAXSYMLINKS

std::vector<std::string> Components(absl::string_view path) {
  std::vector<std::string> out;
  for (absl::string_view c : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    out.emplace_back(c);
  }
  return out;
}

std::string Join(const std::string& dir, absl::string_view name) {
  return dir.empty() ? std::string(name) : absl::StrCat(dir, "/", name);
}

std::string Dirname(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// Cleans a source as written into a root-relative path, or fails if it leaves the root.
absl::StatusOr<std::string> CleanSource(absl::string_view src) {
  if (src.empty()) return absl::InvalidArgumentError("empty source path");
  std::string c = common::CleanPath(src);
  if (c[0] == '/') {
    c = c.substr(1);  // rooted cleaning never climbs above "/"
  } else if (c == ".." || absl::StartsWith(c, "../")) {
    return absl::InvalidArgumentError(
        absl::StrCat("source \"", src, "\" is outside the build context"));
  }
  if (c == ".") c.clear();
  return c;
}

std::string RelativeTo(const std::string& path, const std::string& base) {
  if (base.empty()) return path;
  if (path == base) return std::string();
  if (absl::StartsWith(path, base) && path.size() > base.size() && path[base.size()] == '/') {
    return path.substr(base.size() + 1);
  }
  return path;
}

// Matches `pattern` (components) under directory `dir` (resolved) whose named form is
// `named_dir`; appends (named path, resolved-parent path) pairs.
absl::Status Glob(const SourceTree& tree, const std::string& dir, const std::string& named_dir,
                  const std::vector<std::string>& pattern, size_t level,
                  std::vector<std::pair<std::string, std::string>>* out) {
  absl::StatusOr<std::vector<DirEntry>> entries = tree.ReadDir(dir);
  if (!entries.ok()) {
    if (absl::IsNotFound(entries.status()) || absl::IsFailedPrecondition(entries.status())) {
      return absl::OkStatus();
    }
    return entries.status();
  }
  for (const DirEntry& e : *entries) {
    ASSIGN_OR_RETURN(bool m, common::GlobMatch(pattern[level], e.name));
    if (!m) continue;
    if (level + 1 == pattern.size()) {
      out->emplace_back(Join(named_dir, e.name), Join(dir, e.name));
    } else if (e.info.is_dir()) {
      RETURN_IF_ERROR(
          Glob(tree, Join(dir, e.name), Join(named_dir, e.name), pattern, level + 1, out));
    }
  }
  return absl::OkStatus();
}

bool AnyIncludedBelow(const SourceTree& tree, const std::string& dir, const std::string& rel,
                      const common::PatternMatcher& excludes) {
  absl::StatusOr<std::vector<DirEntry>> entries = tree.ReadDir(dir);
  if (!entries.ok()) return false;
  for (const DirEntry& e : *entries) {
    std::string child_rel = Join(rel, e.name);
    if (!excludes.Matches(child_rel)) return true;
    if (e.info.is_dir() && AnyIncludedBelow(tree, Join(dir, e.name), child_rel, excludes)) {
      return true;
    }
  }
  return false;
}

absl::Status Walk(const SourceTree& tree, const std::string& dir, const std::string& rel,
                  const common::PatternMatcher* excludes, const Visitor& visit) {
  ASSIGN_OR_RETURN(std::vector<DirEntry> entries, tree.ReadDir(dir));
  for (const DirEntry& e : entries) {
    std::string child_rel = Join(rel, e.name);
    std::string child = Join(dir, e.name);
    bool excluded = excludes != nullptr && excludes->Matches(child_rel);
    if (e.info.is_dir()) {
      if (excluded &&
          (!excludes->has_exclusions() || !AnyIncludedBelow(tree, child, child_rel, *excludes))) {
        continue;
      }
      RETURN_IF_ERROR(visit(child_rel, e.info));
      RETURN_IF_ERROR(Walk(tree, child, child_rel, excludes, visit));
    } else if (!excluded) {
      RETURN_IF_ERROR(visit(child_rel, e.info));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ResolvePath(const SourceTree& tree, absl::string_view path,
                                        bool follow_final) {
  const bool contained = tree.symlink_policy() == SymlinkPolicy::kContained;
  std::deque<std::string> todo;
  for (std::string& c : Components(path)) todo.push_back(std::move(c));
  std::vector<std::string> resolved;
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c == ".") continue;
    if (c == "..") {
      if (resolved.empty()) {
        if (contained) {
          return absl::InvalidArgumentError(
              absl::StrCat("\"", path,
                           "\": a symlink on the way points outside the build "
                           "context"));
        }
        continue;
      }
      resolved.pop_back();
      continue;
    }
    std::string candidate = Join(absl::StrJoin(resolved, "/"), c);
    absl::StatusOr<FileInfo> st = tree.Lstat(candidate);
    if (!st.ok()) {
      if (absl::IsNotFound(st.status())) {
        return absl::NotFoundError(absl::StrCat("\"", path, "\": not found"));
      }
      return st.status();
    }
    if (st->is_symlink() && (!todo.empty() || follow_final)) {
      if (++links > kMaxSymlinks) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", path, "\": too many levels of symbolic links"));
      }
      const std::string& target = st->link_target;
      if (!target.empty() && target[0] == '/') {
        if (contained) {
          return absl::InvalidArgumentError(absl::StrCat("\"", path, "\": symlink \"", candidate,
                                                         "\" -> \"", target,
                                                         "\" points outside the build context"));
        }
        resolved.clear();
      }
      std::vector<std::string> tc = Components(target);
      todo.insert(todo.begin(), tc.begin(), tc.end());
      continue;
    }
    if (!todo.empty() && !st->is_dir()) {
      return absl::NotFoundError(
          absl::StrCat("\"", path, "\": \"", candidate, "\" is not a directory"));
    }
    resolved.push_back(std::move(c));
  }
  return absl::StrJoin(resolved, "/");
}

absl::StatusOr<std::vector<Match>> ResolveSources(const SourceTree& tree,
                                                  absl::Span<const std::string> srcs,
                                                  const SelectOptions& options) {
  std::vector<Match> out;
  for (const std::string& src : srcs) {
    std::string pivot;
    bool has_pivot = false;
    if (options.parents) {
      size_t p = src.find("/./");
      if (p != std::string::npos) {
        has_pivot = true;
        ASSIGN_OR_RETURN(pivot, CleanSource(src.substr(0, p).empty() ? "/" : src.substr(0, p)));
      }
    }
    ASSIGN_OR_RETURN(std::string clean, CleanSource(src));
    if (!common::ContainsWildcards(clean)) {
      absl::StatusOr<std::string> resolved = ResolvePath(tree, clean, /*follow_final=*/true);
      if (!resolved.ok()) {
        return absl::Status(resolved.status().code(),
                            absl::StrCat("source ", resolved.status().message()));
      }
      ASSIGN_OR_RETURN(FileInfo info, tree.Lstat(*resolved));
      Match m;
      m.src = src;
      m.path = clean;
      m.resolved = *resolved;
      m.info = std::move(info);
      m.base = options.parents ? (has_pivot ? pivot : std::string()) : Dirname(clean);
      out.push_back(std::move(m));
      continue;
    }
    std::vector<std::string> comps = Components(clean);
    size_t k = 0;
    while (k < comps.size() && !common::ContainsWildcards(comps[k])) ++k;
    std::string named_base = absl::StrJoin(comps.begin(), comps.begin() + k, "/");
    absl::StatusOr<std::string> base = ResolvePath(tree, named_base, /*follow_final=*/true);
    if (!base.ok() && !absl::IsNotFound(base.status())) {
      return absl::Status(base.status().code(), absl::StrCat("source ", base.status().message()));
    }
    std::vector<std::string> pattern(comps.begin() + k, comps.end());
    std::vector<std::pair<std::string, std::string>> found;
    if (base.ok()) {
      absl::Status s = Glob(tree, *base, named_base, pattern, 0, &found);
      if (!s.ok()) {
        return absl::Status(s.code(), absl::StrCat("source \"", src, "\": ", s.message()));
      }
    }
    // A wildcard matching nothing copies nothing: BuildKit's AllowEmptyWildcard.
    for (auto& [named, at] : found) {
      if (options.excludes != nullptr && options.excludes->Matches(RelativeTo(named, named_base))) {
        continue;
      }
      ASSIGN_OR_RETURN(std::string resolved, ResolvePath(tree, at, /*follow_final=*/true));
      ASSIGN_OR_RETURN(FileInfo info, tree.Lstat(resolved));
      Match m;
      m.src = src;
      m.path = named;
      m.resolved = std::move(resolved);
      m.info = std::move(info);
      m.base = options.parents ? (has_pivot ? pivot : std::string()) : named_base;
      m.wildcard = true;
      out.push_back(std::move(m));
    }
  }
  return out;
}

absl::Status WalkMatch(const SourceTree& tree, const Match& match,
                       const common::PatternMatcher* excludes, const Visitor& visit) {
  RETURN_IF_ERROR(visit("", match.info));
  if (!match.info.is_dir()) return absl::OkStatus();
  if (excludes != nullptr && excludes->empty()) excludes = nullptr;
  return Walk(tree, match.resolved, "", excludes, visit);
}

}  // namespace farm::worker::copy
