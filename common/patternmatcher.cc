#include "common/patternmatcher.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fs.h"

namespace farm::common {

namespace {

constexpr char32_t kRuneError = 0xFFFD;

// Decodes one UTF-8 code point at the front of `s` like Go's utf8.DecodeRuneInString: an
// invalid byte decodes as (RuneError, 1).
char32_t DecodeRune(absl::string_view s, size_t* n) {
  if (s.empty()) {
    *n = 0;
    return kRuneError;
  }
  unsigned char c = static_cast<unsigned char>(s[0]);
  if (c < 0x80) {
    *n = 1;
    return c;
  }
  int len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || static_cast<size_t>(len) > s.size()) {
    *n = 1;
    return kRuneError;
  }
  char32_t r = c & (0x7F >> len);
  for (int i = 1; i < len; ++i) {
    unsigned char cc = static_cast<unsigned char>(s[i]);
    if ((cc & 0xC0) != 0x80) {
      *n = 1;
      return kRuneError;
    }
    r = (r << 6) | (cc & 0x3F);
  }
  *n = static_cast<size_t>(len);
  return r;
}

absl::Status BadPattern(absl::string_view pattern) {
  return absl::InvalidArgumentError(absl::StrCat("syntax error in pattern \"", pattern, "\""));
}

// Go's getEsc (path/filepath/match.go).
bool GetEsc(absl::string_view* chunk, char32_t* r) {
  if (chunk->empty() || (*chunk)[0] == '-' || (*chunk)[0] == ']') return false;
  if ((*chunk)[0] == '\\') {
    chunk->remove_prefix(1);
    if (chunk->empty()) return false;
  }
  size_t n;
  *r = DecodeRune(*chunk, &n);
  if (*r == kRuneError && n == 1) return false;
  chunk->remove_prefix(n);
  return !chunk->empty();
}

// Go's scanChunk.
void ScanChunk(absl::string_view* pattern, bool* star, absl::string_view* chunk) {
  *star = false;
  while (!pattern->empty() && (*pattern)[0] == '*') {
    pattern->remove_prefix(1);
    *star = true;
  }
  bool inrange = false;
  size_t i = 0;
  for (; i < pattern->size(); ++i) {
    char c = (*pattern)[i];
    if (c == '\\') {
      if (i + 1 < pattern->size()) ++i;
    } else if (c == '[') {
      inrange = true;
    } else if (c == ']') {
      inrange = false;
    } else if (c == '*' && !inrange) {
      break;
    }
  }
  *chunk = pattern->substr(0, i);
  pattern->remove_prefix(i);
}

// Go's matchChunk. Returns false in *bad for a malformed chunk.
bool MatchChunk(absl::string_view chunk, absl::string_view s, absl::string_view* rest, bool* bad) {
  *bad = false;
  bool failed = false;
  while (!chunk.empty()) {
    if (!failed && s.empty()) failed = true;
    char c = chunk[0];
    if (c == '[') {
      char32_t r = 0;
      if (!failed) {
        size_t n;
        r = DecodeRune(s, &n);
        s.remove_prefix(n);
      }
      chunk.remove_prefix(1);
      bool negated = false;
      if (!chunk.empty() && chunk[0] == '^') {
        negated = true;
        chunk.remove_prefix(1);
      }
      bool match = false;
      int nrange = 0;
      while (true) {
        if (!chunk.empty() && chunk[0] == ']' && nrange > 0) {
          chunk.remove_prefix(1);
          break;
        }
        char32_t lo, hi;
        if (!GetEsc(&chunk, &lo)) {
          *bad = true;
          return false;
        }
        hi = lo;
        if (chunk[0] == '-') {
          chunk.remove_prefix(1);
          if (!GetEsc(&chunk, &hi)) {
            *bad = true;
            return false;
          }
        }
        if (lo <= r && r <= hi) match = true;
        ++nrange;
      }
      if (match == negated) failed = true;
    } else if (c == '?') {
      if (!failed) {
        if (s[0] == '/') failed = true;
        size_t n;
        DecodeRune(s, &n);
        s.remove_prefix(n);
      }
      chunk.remove_prefix(1);
    } else {
      if (c == '\\') {
        chunk.remove_prefix(1);
        if (chunk.empty()) {
          *bad = true;
          return false;
        }
      }
      if (!failed) {
        if (chunk[0] != s[0]) failed = true;
        s.remove_prefix(1);
      }
      chunk.remove_prefix(1);
    }
  }
  if (failed) return false;
  *rest = s;
  return true;
}

// Go's filepath.Clean, then a leading "/" dropped (moby cleans patterns this way).
std::string CleanPattern(absl::string_view p) { return CleanPath(p); }

}  // namespace

absl::StatusOr<bool> GlobMatch(absl::string_view pattern, absl::string_view name) {
  const absl::string_view original = pattern;
  while (!pattern.empty()) {
    bool star;
    absl::string_view chunk;
    ScanChunk(&pattern, &star, &chunk);
    if (star && chunk.empty()) {
      return !absl::StrContains(name, '/');
    }
    absl::string_view t;
    bool bad;
    bool ok = MatchChunk(chunk, name, &t, &bad);
    if (ok && (t.empty() || !pattern.empty())) {
      name = t;
      continue;
    }
    if (bad) return BadPattern(original);
    bool matched_later = false;
    if (star) {
      for (size_t i = 0; i < name.size() && name[i] != '/'; ++i) {
        ok = MatchChunk(chunk, name.substr(i + 1), &t, &bad);
        if (ok) {
          if (pattern.empty() && !t.empty()) continue;
          name = t;
          matched_later = true;
          break;
        }
        if (bad) return BadPattern(original);
      }
    }
    if (matched_later) continue;
    // Before returning false, check that the rest of the pattern is well-formed.
    while (!pattern.empty()) {
      ScanChunk(&pattern, &star, &chunk);
      MatchChunk(chunk, "", &t, &bad);
      if (bad) return BadPattern(original);
    }
    return false;
  }
  return name.empty();
}

bool ContainsWildcards(absl::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if (c == '\\') {
      ++i;
    } else if (c == '*' || c == '?' || c == '[') {
      return true;
    }
  }
  return false;
}

std::vector<std::string> ReadIgnoreFile(absl::string_view text) {
  std::vector<std::string> out;
  if (absl::StartsWith(text, "\xEF\xBB\xBF")) text.remove_prefix(3);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    absl::ConsumeSuffix(&line, "\r");
    if (absl::StartsWith(line, "#")) continue;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    bool invert = line[0] == '!';
    if (invert) line = absl::StripAsciiWhitespace(line.substr(1));
    std::string pattern;
    if (!line.empty()) {
      pattern = CleanPattern(line);
      if (pattern.size() > 1 && pattern[0] == '/') pattern = pattern.substr(1);
    }
    out.push_back(invert ? absl::StrCat("!", pattern) : pattern);
  }
  return out;
}

absl::StatusOr<PatternMatcher::Pattern> PatternMatcher::Compile(absl::string_view text) {
  Pattern p;
  absl::string_view s = text;
  if (!s.empty() && s[0] == '!') {
    if (s.size() == 1) return absl::InvalidArgumentError("illegal exclusion pattern: \"!\"");
    p.exclusion = true;
    s.remove_prefix(1);
  }
  p.cleaned = CleanPattern(s);
  // Validate like moby does (filepath.Match(pattern, ".")).
  absl::StatusOr<bool> valid = GlobMatch(p.cleaned, ".");
  if (!valid.ok()) return valid.status();

  // Translate into tokens, following moby/patternmatcher's compile() rule by rule, including
  // its shortcut match types (exact, prefix for "x**", suffix for "**x").
  absl::string_view pat = p.cleaned;
  p.type = Type::kExact;
  std::vector<Token>& toks = p.tokens;
  auto literal = [&toks](absl::string_view bytes) {
    if (!toks.empty() && toks.back().kind == Token::kLiteral) {
      toks.back().text.append(bytes.data(), bytes.size());
    } else {
      toks.push_back(Token{Token::kLiteral, std::string(bytes)});
    }
  };
  size_t pos = 0;
  for (int i = 0; pos < pat.size(); ++i) {
    char ch = pat[pos];
    if (ch == '*') {
      if (pos + 1 < pat.size() && pat[pos + 1] == '*') {
        pos += 2;
        if (pos < pat.size() && pat[pos] == '/') ++pos;
        if (pos >= pat.size()) {
          if (p.type == Type::kExact) {
            p.type = Type::kPrefix;
          } else {
            toks.push_back(Token{Token::kAnything, ""});
            p.type = Type::kRegexp;
          }
        } else {
          toks.push_back(Token{Token::kDoubleStarDir, ""});
          p.type = Type::kRegexp;
        }
        if (i == 0) p.type = Type::kSuffix;
        continue;
      }
      toks.push_back(Token{Token::kStar, ""});
      p.type = Type::kRegexp;
      ++pos;
    } else if (ch == '?') {
      toks.push_back(Token{Token::kAnyRune, ""});
      p.type = Type::kRegexp;
      ++pos;
    } else if (ch == '\\') {
      if (pos + 1 < pat.size()) {
        size_t n;
        DecodeRune(pat.substr(pos + 1), &n);
        literal(pat.substr(pos + 1, n));
        p.type = Type::kRegexp;
        pos += 1 + n;
      } else {
        literal("\\");
        ++pos;
      }
    } else if (ch == '[') {
      // A character class, as Go's regexp reads it: up to the first unescaped ']' that is
      // not the class's first character. The pattern was validated above.
      size_t end = pos + 1;
      Token t{Token::kClass, ""};
      if (end < pat.size() && pat[end] == '^') {
        t.negated = true;
        ++end;
      }
      size_t body_start = end;
      while (end < pat.size() && (pat[end] != ']' || end == body_start)) {
        if (pat[end] == '\\') ++end;
        ++end;
      }
      if (end >= pat.size()) return BadPattern(text);
      t.text = std::string(pat.substr(body_start, end - body_start));
      toks.push_back(std::move(t));
      p.type = Type::kRegexp;
      pos = end + 1;
    } else {
      size_t n;
      DecodeRune(pat.substr(pos), &n);
      literal(pat.substr(pos, n));
      pos += n;
    }
  }
  return p;
}

absl::StatusOr<PatternMatcher> PatternMatcher::Create(const std::vector<std::string>& patterns) {
  PatternMatcher pm;
  for (const std::string& raw : patterns) {
    absl::string_view s = absl::StripAsciiWhitespace(raw);
    if (s.empty()) continue;
    absl::StatusOr<Pattern> p = Compile(s);
    if (!p.ok()) return p.status();
    pm.has_exclusions_ |= p->exclusion;
    pm.patterns_.push_back(*std::move(p));
  }
  return pm;
}

namespace {

// Does `r` match the class body (Go regexp class syntax: ranges, escapes)?
bool ClassMatches(absl::string_view body, char32_t r) {
  size_t i = 0;
  while (i < body.size()) {
    size_t n;
    if (body[i] == '\\' && i + 1 < body.size()) ++i;
    char32_t lo = DecodeRune(body.substr(i), &n);
    i += n;
    char32_t hi = lo;
    if (i + 1 < body.size() && body[i] == '-') {
      ++i;
      if (body[i] == '\\' && i + 1 < body.size()) ++i;
      hi = DecodeRune(body.substr(i), &n);
      i += n;
    }
    if (lo <= r && r <= hi) return true;
  }
  return false;
}

}  // namespace

bool PatternMatcher::MatchTokens(const std::vector<Token>& tokens, size_t ti, absl::string_view s,
                                 size_t si) {
  while (ti < tokens.size()) {
    const Token& t = tokens[ti];
    switch (t.kind) {
      case Token::kLiteral:
        if (s.substr(si, t.text.size()) != t.text) return false;
        si += t.text.size();
        ++ti;
        break;
      case Token::kAnyRune: {
        if (si >= s.size() || s[si] == '/') return false;
        size_t n;
        DecodeRune(s.substr(si), &n);
        si += n;
        ++ti;
        break;
      }
      case Token::kClass: {
        if (si >= s.size()) return false;
        size_t n;
        char32_t r = DecodeRune(s.substr(si), &n);
        if (ClassMatches(t.text, r) == t.negated) return false;
        si += n;
        ++ti;
        break;
      }
      case Token::kStar:
        // [^/]*: try every length up to the next '/'.
        for (size_t end = si;; ++end) {
          if (MatchTokens(tokens, ti + 1, s, end)) return true;
          if (end >= s.size() || s[end] == '/') return false;
        }
      case Token::kDoubleStarDir:
        // (.*/)?: nothing, or anything ending with '/'.
        if (MatchTokens(tokens, ti + 1, s, si)) return true;
        for (size_t end = si; end < s.size(); ++end) {
          if (s[end] == '/' && MatchTokens(tokens, ti + 1, s, end + 1)) return true;
        }
        return false;
      case Token::kAnything:
        for (size_t end = s.size() + 1; end-- > si;) {
          if (MatchTokens(tokens, ti + 1, s, end)) return true;
        }
        return false;
    }
  }
  return si == s.size();
}

bool PatternMatcher::MatchOne(const Pattern& p, absl::string_view path) {
  switch (p.type) {
    case Type::kExact:
      return path == p.cleaned;
    case Type::kPrefix:
      return absl::StartsWith(path, absl::string_view(p.cleaned).substr(0, p.cleaned.size() - 2));
    case Type::kSuffix: {
      absl::string_view suffix = absl::string_view(p.cleaned).substr(2);
      if (absl::EndsWith(path, suffix)) return true;
      return !suffix.empty() && suffix[0] == '/' && path == suffix.substr(1);
    }
    case Type::kRegexp:
      return MatchTokens(p.tokens, 0, path, 0);
  }
  return false;
}

bool PatternMatcher::Matches(absl::string_view path) const {
  bool matched = false;
  size_t slash = path.rfind('/');
  absl::string_view parent = slash == absl::string_view::npos ? "." : path.substr(0, slash);
  for (const Pattern& p : patterns_) {
    if (p.exclusion != matched) continue;
    bool match = MatchOne(p, path);
    if (!match && parent != ".") {
      // A pattern matching one of the parent directories matches the path too.
      for (size_t i = 0; i <= parent.size(); ++i) {
        if (i == parent.size() || parent[i] == '/') {
          if (MatchOne(p, parent.substr(0, i))) {
            match = true;
            break;
          }
        }
      }
    }
    if (match) matched = !p.exclusion;
  }
  return matched;
}

}  // namespace farm::common
