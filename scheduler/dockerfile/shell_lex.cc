#include "scheduler/dockerfile/shell_lex.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace farm::scheduler::dockerfile {

namespace {

constexpr int kEof = -1;

bool IsSpace(int c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

// Go's unicode.IsLetter/IsDigit on the ASCII range; bytes of multi-byte UTF-8 sequences count
// as letters (names like $ä work as in Go, where the whole rune is a letter).
bool IsNameChar(int c) { return absl::ascii_isalnum(c) || c == '_' || c >= 0x80; }

bool IsSpecialParam(int c) {
  switch (c) {
    case '@':
    case '*':
    case '#':
    case '?':
    case '-':
    case '$':
    case '!':
    case '0':
      return true;
  }
  return false;
}

// Shell pattern (for ${v#p}, ${v%p}, ${v/p/r}) matching a whole string: '*' any string, '?'
// any character, [...] a class ([!...] or [^...] negated), '\' escapes. Compiled into tokens
// and matched with the two-pointer star backtracking algorithm: O(len(p) * len(s)), so no
// pattern can make it exponential.
struct PatToken {
  enum Kind { kLiteral, kAny, kStar, kClass } kind;
  char c = 0;
  bool negated = false;
  std::vector<std::pair<char, char>> ranges;
  bool Matches(char x) const {
    switch (kind) {
      case kLiteral:
        return x == c;
      case kAny:
        return true;
      case kClass: {
        bool in = false;
        for (const auto& [lo, hi] : ranges) in |= (x >= lo && x <= hi);
        return in != negated;
      }
      case kStar:
        return false;
    }
    return false;
  }
};

std::vector<PatToken> CompilePattern(absl::string_view p) {
  std::vector<PatToken> out;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '*') {
      if (out.empty() || out.back().kind != PatToken::kStar) out.push_back({PatToken::kStar});
    } else if (c == '?') {
      out.push_back({PatToken::kAny});
    } else if (c == '[') {
      size_t j = i + 1;
      PatToken t{PatToken::kClass};
      if (j < p.size() && (p[j] == '!' || p[j] == '^')) {
        t.negated = true;
        ++j;
      }
      size_t start = j;
      bool closed = false;
      while (j < p.size()) {
        if (p[j] == ']' && j > start) {
          closed = true;
          break;
        }
        char lo = p[j];
        if (lo == '\\' && j + 1 < p.size()) lo = p[++j];
        char hi = lo;
        if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
          hi = p[j + 2];
          j += 2;
        }
        t.ranges.push_back({lo, hi});
        ++j;
      }
      if (closed) {
        out.push_back(std::move(t));
        i = j;
      } else {
        PatToken lit{PatToken::kLiteral};
        lit.c = '[';
        out.push_back(lit);
      }
    } else {
      if (c == '\\' && i + 1 < p.size()) c = p[++i];
      PatToken lit{PatToken::kLiteral};
      lit.c = c;
      out.push_back(lit);
    }
  }
  return out;
}

bool ShellMatch(const std::vector<PatToken>& p, absl::string_view s) {
  size_t pi = 0, si = 0;
  size_t star = std::string::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi].kind == PatToken::kStar) {
      star = pi++;
      mark = si;
    } else if (pi < p.size() && p[pi].Matches(s[si])) {
      ++pi;
      ++si;
    } else if (star != std::string::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi].kind == PatToken::kStar) ++pi;
  return pi == p.size();
}

class ShellWord {
 public:
  ShellWord(absl::string_view input, const ShellLex& lex, char escape, const EnvLookup& env,
            ShellLex::Result* result)
      : in_(input), escape_(escape), env_(env), result_(result) {
    raw_quotes_ = lex.raw_quotes;
    raw_escapes_ = lex.raw_escapes;
    skip_unset_ = lex.skip_unset_env;
    skip_quotes_ = lex.skip_process_quotes;
  }

  absl::Status Run() {
    std::string word;
    absl::Status s = StopOn(kEof, raw_escapes_, &word, &result_->words);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("failed to process \"", in_, "\": ", s.message()));
    }
    result_->word = std::move(word);
    return absl::OkStatus();
  }

 private:
  struct Words {
    std::string word;
    std::vector<std::string> words;
    bool in_word = false;
    void AddChar(int c) {
      if (IsSpace(c) && in_word) {
        if (!word.empty()) {
          words.push_back(std::move(word));
          word.clear();
          in_word = false;
        }
      } else if (!IsSpace(c)) {
        AddRawChar(c);
      }
    }
    void AddRawChar(int c) {
      word.push_back(static_cast<char>(c));
      in_word = true;
    }
    void AddString(absl::string_view s) {
      for (char c : s) AddChar(static_cast<unsigned char>(c));
    }
    void AddRawString(absl::string_view s) {
      word.append(s.data(), s.size());
      in_word = true;
    }
    std::vector<std::string> Get() {
      if (!word.empty()) {
        words.push_back(std::move(word));
        word.clear();
        in_word = false;
      }
      return std::move(words);
    }
  };

  int Peek() const { return pos_ < in_.size() ? static_cast<unsigned char>(in_[pos_]) : kEof; }
  int Next() { return pos_ < in_.size() ? static_cast<unsigned char>(in_[pos_++]) : kEof; }

  // processStopOn: reads until `stop` (consumed) or the end.
  absl::Status StopOn(int stop, bool raw_escapes, std::string* out,
                      std::vector<std::string>* words_out) {
    bool saved = raw_escapes_;
    raw_escapes_ = raw_escapes;
    absl::Status s = StopOnImpl(stop, out, words_out);
    raw_escapes_ = saved;
    return s;
  }

  absl::Status StopOnImpl(int stop, std::string* out, std::vector<std::string>* words_out) {
    std::string result;
    Words words;
    while (Peek() != kEof) {
      int ch = Peek();
      if (stop != kEof && ch == stop) {
        Next();
        *out = std::move(result);
        if (words_out) *words_out = words.Get();
        return absl::OkStatus();
      }
      if (ch == '$' || (!skip_quotes_ && (ch == '\'' || ch == '"'))) {
        std::string tmp;
        absl::Status s = ch == '$'    ? Dollar(&tmp)
                         : ch == '\'' ? SingleQuote(&tmp)
                                      : DoubleQuote(&tmp);
        if (!s.ok()) return s;
        result += tmp;
        if (ch == '$') {
          words.AddString(tmp);
        } else {
          words.AddRawString(tmp);
        }
        continue;
      }
      ch = Next();
      if (ch == escape_) {
        if (raw_escapes_) {
          words.AddRawChar(ch);
          result.push_back(static_cast<char>(ch));
        }
        ch = Next();
        if (ch == kEof) break;
        words.AddRawChar(ch);
      } else {
        words.AddChar(ch);
      }
      result.push_back(static_cast<char>(ch));
    }
    if (stop != kEof) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unexpected end of statement while looking for matching ", std::string(1, stop)));
    }
    *out = std::move(result);
    if (words_out) *words_out = words.Get();
    return absl::OkStatus();
  }

  absl::Status SingleQuote(std::string* out) {
    int ch = Next();
    if (raw_quotes_) out->push_back(static_cast<char>(ch));
    while (true) {
      ch = Next();
      if (ch == kEof) {
        return absl::InvalidArgumentError(
            "unexpected end of statement while looking for matching single-quote");
      }
      if (ch == '\'') {
        if (raw_quotes_) out->push_back(static_cast<char>(ch));
        return absl::OkStatus();
      }
      out->push_back(static_cast<char>(ch));
    }
  }

  absl::Status DoubleQuote(std::string* out) {
    int ch = Next();
    if (raw_quotes_) out->push_back(static_cast<char>(ch));
    while (true) {
      int p = Peek();
      if (p == kEof) {
        return absl::InvalidArgumentError(
            "unexpected end of statement while looking for matching double-quote");
      }
      if (p == '"') {
        ch = Next();
        if (raw_quotes_) out->push_back(static_cast<char>(ch));
        return absl::OkStatus();
      }
      if (p == '$') {
        std::string v;
        absl::Status s = Dollar(&v);
        if (!s.ok()) return s;
        *out += v;
        continue;
      }
      ch = Next();
      if (ch == escape_) {
        if (raw_escapes_) out->push_back(static_cast<char>(ch));
        int q = Peek();
        if (q == kEof) continue;
        if (q == '"' || q == '$' || q == escape_) ch = Next();
      }
      out->push_back(static_cast<char>(ch));
    }
  }

  std::string Name() {
    std::string name;
    while (Peek() != kEof) {
      int ch = Peek();
      if (name.empty() && absl::ascii_isdigit(ch)) {
        while (Peek() != kEof && absl::ascii_isdigit(Peek())) name.push_back(Next());
        return name;
      }
      if (name.empty() && IsSpecialParam(ch)) {
        name.push_back(Next());
        return name;
      }
      if (!IsNameChar(ch)) break;
      name.push_back(Next());
    }
    return name;
  }

  std::optional<std::string> Get(const std::string& name) {
    std::optional<std::string> v = env_ ? env_(name) : std::nullopt;
    if (v.has_value()) {
      result_->matched.insert(name);
    } else {
      result_->unmatched.insert(name);
    }
    return v;
  }

  absl::Status Dollar(std::string* out) {
    Next();  // '$'
    if (Peek() != '{') {
      std::string name = Name();
      if (name.empty()) {
        *out = "$";
        return absl::OkStatus();
      }
      std::optional<std::string> v = Get(name);
      if (!v && skip_unset_) {
        *out = absl::StrCat("$", name);
      } else {
        *out = v.value_or("");
      }
      return absl::OkStatus();
    }
    Next();  // '{'
    int p = Peek();
    if (p == kEof) return absl::InvalidArgumentError("syntax error: missing '}'");
    if (p == '{' || p == '}' || p == ':') {
      return absl::InvalidArgumentError("syntax error: bad substitution");
    }
    std::string name = Name();
    int ch = Next();
    std::string chs = ch == kEof ? "" : std::string(1, static_cast<char>(ch));
    bool null_is_unset = false;
    switch (ch) {
      case '}': {
        std::optional<std::string> v = Get(name);
        if (!v && skip_unset_) {
          *out = absl::StrCat("${", name, "}");
        } else {
          *out = v.value_or("");
        }
        return absl::OkStatus();
      }
      case ':':
        null_is_unset = true;
        ch = Next();
        if (ch != kEof) chs.push_back(static_cast<char>(ch));
        [[fallthrough]];
      case '+':
      case '-':
      case '?':
      case '#':
      case '%': {
        bool raw = ch == '#' || ch == '%';
        if (null_is_unset && raw) {
          return absl::InvalidArgumentError(
              absl::StrCat("unsupported modifier (", chs, ") in substitution"));
        }
        if (ch != '+' && ch != '-' && ch != '?' && ch != '#' && ch != '%') {
          return absl::InvalidArgumentError(
              absl::StrCat("unsupported modifier (", chs, ") in substitution"));
        }
        std::string word;
        absl::Status s = StopOn('}', raw, &word, nullptr);
        if (!s.ok()) {
          if (Peek() == kEof) return absl::InvalidArgumentError("syntax error: missing '}'");
          return s;
        }
        std::optional<std::string> v = Get(name);
        if (skip_unset_ && !v) {
          *out = absl::StrCat("${", name, chs, word, "}");
          return absl::OkStatus();
        }
        bool set = v.has_value();
        std::string value = v.value_or("");
        switch (ch) {
          case '-':
            *out = (!set || (null_is_unset && value.empty())) ? word : value;
            return absl::OkStatus();
          case '+':
            *out = (!set || (null_is_unset && value.empty())) ? "" : word;
            return absl::OkStatus();
          case '?':
            if (!set) {
              return absl::InvalidArgumentError(
                  absl::StrCat(name, ": ", word.empty() ? "is not allowed to be unset" : word));
            }
            if (null_is_unset && value.empty()) {
              return absl::InvalidArgumentError(
                  absl::StrCat(name, ": ", word.empty() ? "is not allowed to be empty" : word));
            }
            *out = value;
            return absl::OkStatus();
          default: {  // '#' or '%'
            bool greedy = false;
            if (!word.empty() && word[0] == ch) {
              greedy = true;
              word = word.substr(1);
            }
            *out = ch == '%' ? TrimSuffix(word, value, greedy) : TrimPrefix(word, value, greedy);
            return absl::OkStatus();
          }
        }
      }
      case '/': {
        bool all = Peek() == '/';
        if (all) Next();
        std::string pattern, replacement;
        absl::Status s = StopOn('/', true, &pattern, nullptr);
        if (!s.ok()) {
          if (Peek() == kEof) return absl::InvalidArgumentError("syntax error: missing '/' in ${}");
          return s;
        }
        s = StopOn('}', true, &replacement, nullptr);
        if (!s.ok()) {
          if (Peek() == kEof) return absl::InvalidArgumentError("syntax error: missing '}'");
          return s;
        }
        std::optional<std::string> v = Get(name);
        if (skip_unset_ && !v) {
          *out = absl::StrCat("${", name, "/", pattern, "/", replacement, "}");
          return absl::OkStatus();
        }
        *out = Replace(v.value_or(""), pattern, replacement, all);
        return absl::OkStatus();
      }
      default:
        if (ch == kEof) return absl::InvalidArgumentError("syntax error: missing '}'");
        return absl::InvalidArgumentError(
            absl::StrCat("unsupported modifier (", chs, ") in substitution"));
    }
  }

  static std::string TrimPrefix(absl::string_view pattern_text, const std::string& value,
                                bool greedy) {
    std::vector<PatToken> pattern = CompilePattern(pattern_text);
    if (greedy) {
      for (size_t n = value.size() + 1; n-- > 0;) {
        if (ShellMatch(pattern, absl::string_view(value).substr(0, n))) {
          return value.substr(n);
        }
      }
    } else {
      for (size_t n = 0; n <= value.size(); ++n) {
        if (ShellMatch(pattern, absl::string_view(value).substr(0, n))) {
          return value.substr(n);
        }
      }
    }
    return value;
  }

  static std::string TrimSuffix(absl::string_view pattern_text, const std::string& value,
                                bool greedy) {
    std::vector<PatToken> pattern = CompilePattern(pattern_text);
    if (greedy) {
      for (size_t start = 0; start <= value.size(); ++start) {
        if (ShellMatch(pattern, absl::string_view(value).substr(start))) {
          return value.substr(0, start);
        }
      }
    } else {
      for (size_t start = value.size() + 1; start-- > 0;) {
        if (ShellMatch(pattern, absl::string_view(value).substr(start))) {
          return value.substr(0, start);
        }
      }
    }
    return value;
  }

  // Leftmost-longest match of `pattern` in `value`, replaced once or everywhere. An empty
  // pattern replaces nothing (as in bash); an empty match still moves on by one character.
  static std::string Replace(const std::string& value, absl::string_view pattern_text,
                             absl::string_view replacement, bool all) {
    if (pattern_text.empty()) return value;
    std::vector<PatToken> pattern = CompilePattern(pattern_text);
    std::string out;
    size_t pos = 0;
    while (pos <= value.size()) {
      bool found = false;
      size_t start = pos;
      size_t end = 0;
      for (; start <= value.size() && !found; ++start) {
        for (end = value.size() + 1; end-- > start;) {
          if (ShellMatch(pattern, absl::string_view(value).substr(start, end - start))) {
            found = true;
            break;
          }
        }
        if (found) break;
      }
      if (!found) break;
      out.append(value, pos, start - pos);
      out.append(replacement.data(), replacement.size());
      if (end == start) {  // empty match: keep one character and move past it
        if (start < value.size()) out.push_back(value[start]);
        pos = start + 1;
      } else {
        pos = end;
      }
      if (!all) break;
    }
    if (pos < value.size()) out.append(value, pos, std::string::npos);
    return out;
  }

  absl::string_view in_;
  size_t pos_ = 0;
  char escape_;
  const EnvLookup& env_;
  ShellLex::Result* result_;
  bool raw_quotes_ = false;
  bool raw_escapes_ = false;
  bool skip_unset_ = false;
  bool skip_quotes_ = false;
};

}  // namespace

absl::StatusOr<ShellLex::Result> ShellLex::Process(absl::string_view input,
                                                   const EnvLookup& env) const {
  Result result;
  ShellWord sw(input, *this, escape_, env, &result);
  absl::Status s = sw.Run();
  if (!s.ok()) return s;
  return result;
}

absl::StatusOr<std::string> ShellLex::ProcessWord(absl::string_view input,
                                                  const EnvLookup& env) const {
  absl::StatusOr<Result> r = Process(input, env);
  if (!r.ok()) return r.status();
  return std::move(r->word);
}

absl::StatusOr<std::vector<std::string>> ShellLex::ProcessWords(absl::string_view input,
                                                                const EnvLookup& env) const {
  absl::StatusOr<Result> r = Process(input, env);
  if (!r.ok()) return r.status();
  return std::move(r->words);
}

EnvLookup EnvFromList(const std::vector<std::string>* env) {
  return [env](absl::string_view name) -> std::optional<std::string> {
    for (auto it = env->rbegin(); it != env->rend(); ++it) {
      const std::string& kv = *it;
      if (kv.size() > name.size() && kv.compare(0, name.size(), name.data(), name.size()) == 0 &&
          kv[name.size()] == '=') {
        return kv.substr(name.size() + 1);
      }
      if (kv == name) return std::string();
    }
    return std::nullopt;
  };
}

}  // namespace farm::scheduler::dockerfile
