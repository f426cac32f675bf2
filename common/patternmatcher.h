// Path patterns with Docker's semantics: `.dockerignore`, `COPY --exclude`, and COPY source
// wildcards.
//
// Two matchers exist because Docker has two:
//   - GlobMatch: Go's filepath.Match (`*` and `?` never match '/', `[a-z]`, `[^a]`, `\`
//     escapes). COPY source wildcards are matched one path component at a time with it.
//   - PatternMatcher: moby/patternmatcher, which .dockerignore and --exclude use: each pattern
//     is cleaned like Go's filepath.Clean, `**` matches any number of directories, a leading
//     `!` re-includes, later patterns win, and a path also matches when one of its parent
//     directories does (excluding `dir` excludes everything under it).
//
//   ASSIGN_OR_RETURN(auto pm, common::PatternMatcher::Create({"*.md", "!README.md", "**/tmp"}));
//   bool ignored = pm.Matches("docs/a.md");   // false: "*.md" matches only top-level names
#ifndef FARM_COMMON_PATTERNMATCHER_H_
#define FARM_COMMON_PATTERNMATCHER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::common {

// Go's filepath.Match(pattern, name). INVALID_ARGUMENT ("syntax error in pattern") for a
// malformed pattern (unterminated class, trailing backslash, empty class).
absl::StatusOr<bool> GlobMatch(absl::string_view pattern, absl::string_view name);

// True if `name` contains an unescaped '*', '?' or '[' (BuildKit's containsWildcards).
bool ContainsWildcards(absl::string_view name);

// Reads .dockerignore text the way Docker does: a leading UTF-8 BOM dropped, lines starting
// with '#' skipped, surrounding whitespace trimmed, empty lines skipped, each pattern cleaned
// (a leading "/" or "./" removed) with its '!' prefix kept.
std::vector<std::string> ReadIgnoreFile(absl::string_view text);

class PatternMatcher {
 public:
  // INVALID_ARGUMENT for a bad pattern, naming it (a lone "!", a malformed class).
  static absl::StatusOr<PatternMatcher> Create(const std::vector<std::string>& patterns);
  PatternMatcher() = default;

  // moby's MatchesOrParentMatches: `path` is slash-separated and relative (no leading "/").
  bool Matches(absl::string_view path) const;
  // True when there are no patterns (nothing is ever matched).
  bool empty() const { return patterns_.empty(); }
  // True if some pattern starts with '!': a directory that matches may still have re-included
  // entries below it, so a walker must descend into it.
  bool has_exclusions() const { return has_exclusions_; }

 private:
  enum class Type { kExact, kPrefix, kSuffix, kRegexp };
  struct Token {
    enum Kind { kLiteral, kAnyRune, kStar, kDoubleStarDir, kAnything, kClass } kind;
    std::string text;  // literal bytes, or the class body (between the brackets)
    bool negated = false;
  };
  struct Pattern {
    std::string cleaned;
    bool exclusion = false;
    Type type = Type::kExact;
    std::vector<Token> tokens;
  };
  static absl::StatusOr<Pattern> Compile(absl::string_view text);
  static bool MatchOne(const Pattern& p, absl::string_view path);
  static bool MatchTokens(const std::vector<Token>& tokens, size_t ti, absl::string_view s,
                          size_t si);

  std::vector<Pattern> patterns_;
  bool has_exclusions_ = false;
};

}  // namespace farm::common

#endif  // FARM_COMMON_PATTERNMATCHER_H_
