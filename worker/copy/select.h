// Which files a COPY/ADD takes: Docker's (BuildKit's) source rules, in one place shared by
// the planner (the step's cache key covers exactly these files) and the worker (which copies
// exactly these files). The destination side (where they land) is the worker's.
//
// The rules, per source as written after variable expansion:
//   - A source is relative to the tree's root; a leading "/" means the same. A relative
//     source whose cleaned form leaves the root ("../x") is an error, as is a symlink on the
//     way whose target leaves a kContained tree (the build context).
//   - Without wildcards the path is looked up following symlinks (every component, the last
//     one included: `COPY link /d/` copies the link's target under the name "link").
//   - With wildcards (`*`, `?`, `[...]`, Go filepath.Match), the components before the first
//     wildcard are looked up as above, and the rest is matched component by component
//     against the tree (symlinks are not followed while matching; a matched symlink is
//     followed afterwards). Matches are sorted. A wildcard matching nothing (even below a
//     directory that does not exist) matches nothing: not an error, as in BuildKit.
//   - A match that is a directory stands for its contents (COPY dir /d/ copies dir's
//     children into /d/), unless --parents; symlinks below it are copied as symlinks.
//   - --exclude patterns (moby patternmatcher syntax) are matched against an entry's path
//     relative to the directory being copied, and a wildcard match's path relative to the
//     wildcard's base directory; an excluded directory is skipped with its content unless a
//     "!" pattern re-includes something below it. A source named without wildcards is never
//     excluded itself.
//   - --parents: a "/./" in a source marks the pivot: paths below it are kept at the
//     destination (`COPY --parents a/./b/c.txt /d/` gives /d/b/c.txt); without a pivot the
//     whole path from the root is kept.
//
//   ASSIGN_OR_RETURN(std::vector<worker::copy::Match> m, worker::copy::ResolveSources(tree, srcs,
//   opts)); for (const worker::copy::Match& x : m) RETURN_IF_ERROR(worker::copy::WalkMatch(tree, x,
//   excludes, visit));
#ifndef FARM_WORKER_COPY_SELECT_H_
#define FARM_WORKER_COPY_SELECT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/patternmatcher.h"
#include "worker/copy/source_tree.h"

namespace farm::worker::copy {

struct SelectOptions {
  bool parents = false;  // --parents: honour "/./" pivots, keep paths at the destination
  const common::PatternMatcher* excludes = nullptr;  // --exclude; may be null
};

struct Match {
  std::string src;       // the source as written (after expansion)
  std::string path;      // the matched path as named, relative to the root ("" = the root)
  std::string resolved;  // `path` with symlinks followed: whose content is copied
  FileInfo info;         // Lstat of `resolved`: a regular file, a directory or (rarely) other
  // The directory paths are kept relative to at the destination with --parents (the pivot,
  // or "" for the root), and that wildcard matches are excluded relative to.
  std::string base;
  bool wildcard = false;  // the source had wildcards
};

// Resolves every source (see the rules above). Errors are INVALID_ARGUMENT (a source that
// leaves the root, a bad pattern) or NOT_FOUND (a missing source, a wildcard with no match),
// with messages that name the source; the caller adds the Dockerfile position.
absl::StatusOr<std::vector<Match>> ResolveSources(const SourceTree& tree,
                                                  absl::Span<const std::string> srcs,
                                                  const SelectOptions& options);

// Visits `match.resolved` and, if it is a directory, every entry below it in sorted
// pre-order (a directory before its content), skipping excluded entries. `rel` is relative
// to match.resolved ("" for the match itself); `info` is the entry's Lstat. A visit error
// stops the walk and is returned.
using Visitor = std::function<absl::Status(const std::string& rel, const FileInfo& info)>;
absl::Status WalkMatch(const SourceTree& tree, const Match& match,
                       const common::PatternMatcher* excludes, const Visitor& visit);

// Resolves `path` in `tree` following symlinks in every component (the last one too, if
// `follow_final`), with the tree's SymlinkPolicy. Returns the resolved clean path.
absl::StatusOr<std::string> ResolvePath(const SourceTree& tree, absl::string_view path,
                                        bool follow_final);

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_SELECT_H_
