#include "scheduler/dockerfile/parser.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "scheduler/dockerfile/shell_lex.h"

namespace farm::scheduler::dockerfile {

namespace {

// Go's unicode.IsSpace on ASCII (the only whitespace Docker's Dockerfiles use in practice).
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}
// reWhitespace in BuildKit's parser: [\t\v\f\r ]+ (no newline: lines are already split).
bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r'; }

size_t SkipLeftSpace(absl::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsSpace(s[i])) ++i;
  return i;
}

bool IsComment(absl::string_view raw_line) {
  absl::string_view t = raw_line.substr(SkipLeftSpace(raw_line));
  return !t.empty() && t[0] == '#';
}

// A logical line (continuations joined) and where each of its pieces came from, so that an
// offset into it maps back to a line and column of the file.
struct LogicalLine {
  std::string text;
  struct Segment {
    size_t offset;  // in text
    int line;       // 1-based physical line
    int col0;       // 0-based column of text[offset] in that line
  };
  std::vector<Segment> segments;

  void Append(absl::string_view piece, int line, int col0) {
    segments.push_back(Segment{text.size(), line, col0});
    text.append(piece.data(), piece.size());
  }
  Position At(size_t offset) const {
    const Segment* s = &segments.front();
    for (const Segment& seg : segments) {
      if (seg.offset <= offset) s = &seg;
    }
    return Position{s->line, s->col0 + static_cast<int>(offset - s->offset) + 1};
  }
};

struct ParseState {
  std::string filename;
  char escape = '\\';
  bool directives_done = false;
  std::set<std::string> seen;
  std::vector<Directive> directives;
  std::vector<Warning> warnings;
};

// reDirective: ^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$
bool MatchDirective(absl::string_view line, std::string* key, std::string* value) {
  size_t i = 0;
  if (i >= line.size() || line[i] != '#') return false;
  ++i;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  if (i >= line.size() || !absl::ascii_isalpha(line[i])) return false;
  size_t ks = i;
  while (i < line.size() && absl::ascii_isalnum(line[i])) ++i;
  *key = std::string(line.substr(ks, i - ks));
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  if (i >= line.size() || line[i] != '=') return false;
  ++i;
  while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
  size_t end = line.size();
  while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t')) --end;
  if (end <= i) return false;
  *value = std::string(line.substr(i, end - i));
  return true;
}

absl::Status PossibleDirective(ParseState* st, absl::string_view line, int line_no, int col0) {
  if (st->directives_done) return absl::OkStatus();
  std::string key, value;
  if (!MatchDirective(line, &key, &value)) {
    st->directives_done = true;
    return absl::OkStatus();
  }
  key = absl::AsciiStrToLower(key);
  if (key != "syntax" && key != "escape" && key != "check") {
    st->directives_done = true;
    return absl::OkStatus();
  }
  if (!st->seen.insert(key).second) {
    return ErrorAt(st->filename, Position{line_no, col0 + 1},
                   absl::StrCat("only one ", key, " parser directive can be used"));
  }
  if (key == "escape") {
    if (value != "`" && value != "\\") {
      return ErrorAt(st->filename, Position{line_no, col0 + 1},
                     absl::StrCat("invalid escape token '", value, "' does not match ` or \\"));
    }
    st->escape = value[0];
  }
  st->directives.push_back(Directive{key, value, line_no});
  return absl::OkStatus();
}

}  // namespace

// BuildKit's lineContinuationRegex, `([^\\])\\[ \t]*$|^\\[ \t]*$` with the escape token for
// `\\`: the escape character followed only by spaces/tabs ends a line that continues, unless
// the escape is itself escaped (`echo foo \\` runs `echo foo \\` and the next line is an
// instruction of its own). Only the character before counts, not how many escapes there are.
bool TrimContinuation(std::string* line, char escape) {
  size_t end = line->size();
  while (end > 0 && ((*line)[end - 1] == ' ' || (*line)[end - 1] == '\t')) --end;
  if (end == 0 || (*line)[end - 1] != escape) return false;
  if (end >= 2 && (*line)[end - 2] == escape) return false;
  line->resize(end - 1);
  return true;
}

namespace {

// BuildKit's extractBuilderFlags: leading "--name[=value]" words (with quotes and backslash
// escapes inside them). Returns the offset where the remaining text starts.
size_t ExtractFlags(absl::string_view line, std::vector<std::string>* flags,
                    std::vector<size_t>* offsets) {
  enum { kSpaces, kWord, kQuote } phase = kSpaces;
  std::string word;
  size_t word_start = 0;
  char quote = 0;
  bool blank_ok = false;
  for (size_t pos = 0; pos <= line.size(); ++pos) {
    char ch = pos < line.size() ? line[pos] : 0;
    if (phase == kSpaces) {
      if (pos == line.size()) break;
      if (IsSpace(ch)) continue;
      if (ch != '-' || pos + 1 == line.size() || line[pos + 1] != '-') return pos;
      phase = kWord;
      word_start = pos;
    }
    if ((phase == kWord || phase == kQuote) && pos == line.size()) {
      if (word != "--" && (blank_ok || !word.empty())) {
        flags->push_back(word);
        offsets->push_back(word_start);
      }
      break;
    }
    if (phase == kWord) {
      if (IsSpace(ch)) {
        phase = kSpaces;
        if (word == "--") return pos;
        if (blank_ok || !word.empty()) {
          flags->push_back(word);
          offsets->push_back(word_start);
        }
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = kQuote;
        continue;
      }
      if (ch == '\\') {
        if (pos + 1 == line.size()) continue;
        ch = line[++pos];
      }
      word.push_back(ch);
      continue;
    }
    // kQuote
    if (ch == quote) {
      phase = kWord;
      continue;
    }
    if (ch == '\\') {
      if (pos + 1 == line.size()) {
        phase = kWord;
        continue;
      }
      ch = line[++pos];
    }
    word.push_back(ch);
  }
  return line.size();
}

// BuildKit's parseWords: splits on whitespace, keeping quotes and escapes in the words.
void ParseWords(absl::string_view rest, char escape, std::vector<std::string>* words,
                std::vector<size_t>* offsets) {
  enum { kSpaces, kWord, kQuote } phase = kSpaces;
  std::string word;
  size_t start = 0;
  char quote = 0;
  bool blank_ok = false;
  for (size_t pos = 0; pos <= rest.size(); ++pos) {
    char ch = pos < rest.size() ? rest[pos] : 0;
    if (phase == kSpaces) {
      if (pos == rest.size()) break;
      if (IsSpace(ch)) continue;
      phase = kWord;
      start = pos;
    }
    if ((phase == kWord || phase == kQuote) && pos == rest.size()) {
      if (blank_ok || !word.empty()) {
        words->push_back(word);
        offsets->push_back(start);
      }
      break;
    }
    if (phase == kWord) {
      if (IsSpace(ch)) {
        phase = kSpaces;
        if (blank_ok || !word.empty()) {
          words->push_back(word);
          offsets->push_back(start);
        }
        word.clear();
        blank_ok = false;
        continue;
      }
      if (ch == '\'' || ch == '"') {
        quote = ch;
        blank_ok = true;
        phase = kQuote;
      }
      if (ch == escape) {
        if (pos + 1 == rest.size()) continue;
        word.push_back(ch);
        ch = rest[++pos];
      }
      word.push_back(ch);
      continue;
    }
    // kQuote
    if (ch == quote) phase = kWord;
    if (ch == escape && quote != '\'') {
      if (pos + 1 == rest.size()) {
        phase = kWord;
        continue;
      }
      word.push_back(ch);
      ch = rest[++pos];
    }
    word.push_back(ch);
  }
}

void SplitWhitespace(absl::string_view rest, std::vector<std::string>* out,
                     std::vector<size_t>* offsets) {
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && IsWs(rest[i])) ++i;
    if (i >= rest.size()) break;
    size_t s = i;
    while (i < rest.size() && !IsWs(rest[i])) ++i;
    out->emplace_back(rest.substr(s, i - s));
    offsets->push_back(s);
  }
}

enum class JsonResult { kOk, kNotJson, kNotStrings };

// parseJSON: a JSON array of strings after optional leading whitespace.
JsonResult ParseJsonArray(absl::string_view rest, std::vector<std::string>* out) {
  absl::string_view t = rest.substr(SkipLeftSpace(rest));
  if (t.empty() || t[0] != '[') return JsonResult::kNotJson;
  nlohmann::json j = nlohmann::json::parse(t.begin(), t.end(), nullptr, false);
  if (j.is_discarded() || !j.is_array()) return JsonResult::kNotJson;
  for (const auto& e : j) {
    if (!e.is_string()) return JsonResult::kNotStrings;
    out->push_back(e.get<std::string>());
  }
  return JsonResult::kOk;
}

constexpr char kNotStringsMessage[] =
    "when using JSON array syntax, arrays must be comprised of strings only";

class LineParser {
 public:
  LineParser(ParseState* st, const LogicalLine& ll) : st_(st), ll_(ll) {}

  absl::StatusOr<Node> ParseNode(size_t begin) {
    absl::string_view line = absl::string_view(ll_.text).substr(begin);
    // splitCommand: TrimSpace, then the first whitespace run separates the command.
    size_t lead = SkipLeftSpace(line);
    size_t end = line.size();
    while (end > lead && IsSpace(line[end - 1])) --end;
    absl::string_view trimmed = line.substr(lead, end - lead);
    size_t base = begin + lead;
    Node node;
    node.start = ll_.At(base);
    size_t cmd_end = 0;
    while (cmd_end < trimmed.size() && !IsWs(trimmed[cmd_end])) ++cmd_end;
    node.command = std::string(trimmed.substr(0, cmd_end));
    node.keyword = absl::AsciiStrToLower(node.command);
    node.original = std::string(trimmed);
    size_t rest_start = cmd_end;
    while (rest_start < trimmed.size() && IsWs(trimmed[rest_start])) ++rest_start;
    absl::string_view rest = trimmed.substr(rest_start);
    size_t rest_base = base + rest_start;
    std::vector<size_t> flag_offsets;
    size_t args_at = rest.empty() ? 0 : ExtractFlags(rest, &node.flags, &flag_offsets);
    for (size_t o : flag_offsets) node.flag_positions.push_back(ll_.At(rest_base + o));
    absl::string_view args = rest.substr(std::min(args_at, rest.size()));
    size_t args_base = rest_base + std::min(args_at, rest.size());
    size_t a_lead = SkipLeftSpace(args);
    args.remove_prefix(a_lead);
    args_base += a_lead;
    while (!args.empty() && IsSpace(args.back())) args.remove_suffix(1);
    absl::Status s = Dispatch(&node, args, args_base);
    if (!s.ok()) return s;
    return node;
  }

 private:
  Position At(size_t off) const { return ll_.At(off); }

  absl::Status Error(size_t off, absl::string_view msg) const {
    return ErrorAt(st_->filename, At(off), msg);
  }

  void AddArg(Node* n, std::string value, size_t off) {
    n->args.push_back(std::move(value));
    n->arg_positions.push_back(At(off));
  }

  absl::Status Dispatch(Node* n, absl::string_view rest, size_t base) {
    const std::string& k = n->keyword;
    if (k == "add" || k == "copy" || k == "volume") return MaybeJsonToList(n, rest, base);
    if (k == "run" || k == "cmd" || k == "entrypoint" || k == "shell") {
      return MaybeJson(n, rest, base);
    }
    if (k == "expose" || k == "from") {
      std::vector<std::string> words;
      std::vector<size_t> offs;
      SplitWhitespace(rest, &words, &offs);
      for (size_t i = 0; i < words.size(); ++i) AddArg(n, words[i], base + offs[i]);
      return absl::OkStatus();
    }
    if (k == "env" || k == "label") return NameVal(n, rest, base, k == "env" ? "ENV" : "LABEL");
    if (k == "arg") {
      std::vector<std::string> words;
      std::vector<size_t> offs;
      ParseWords(rest, st_->escape, &words, &offs);
      for (size_t i = 0; i < words.size(); ++i) AddArg(n, words[i], base + offs[i]);
      return absl::OkStatus();
    }
    if (k == "healthcheck") return Healthcheck(n, rest, base);
    if (k == "onbuild") return OnBuild(n, rest, base);
    // maintainer, stopsignal, user, workdir (parseString) and unknown instructions (kept as
    // one argument so stage 2 can name them).
    if (!rest.empty()) AddArg(n, std::string(rest), base);
    return absl::OkStatus();
  }

  absl::Status MaybeJson(Node* n, absl::string_view rest, size_t base) {
    if (rest.empty()) return absl::OkStatus();
    std::vector<std::string> arr;
    switch (ParseJsonArray(rest, &arr)) {
      case JsonResult::kOk:
        n->json = true;
        for (std::string& a : arr) AddArg(n, std::move(a), base);
        return absl::OkStatus();
      case JsonResult::kNotStrings:
        return Error(base, kNotStringsMessage);
      case JsonResult::kNotJson:
        AddArg(n, std::string(rest), base);
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status MaybeJsonToList(Node* n, absl::string_view rest, size_t base) {
    std::vector<std::string> arr;
    switch (ParseJsonArray(rest, &arr)) {
      case JsonResult::kOk:
        n->json = true;
        for (std::string& a : arr) AddArg(n, std::move(a), base);
        return absl::OkStatus();
      case JsonResult::kNotStrings:
        return Error(base, kNotStringsMessage);
      case JsonResult::kNotJson: {
        std::vector<std::string> words;
        std::vector<size_t> offs;
        SplitWhitespace(rest, &words, &offs);
        for (size_t i = 0; i < words.size(); ++i) AddArg(n, words[i], base + offs[i]);
        return absl::OkStatus();
      }
    }
    return absl::OkStatus();
  }

  absl::Status NameVal(Node* n, absl::string_view rest, size_t base, absl::string_view key) {
    std::vector<std::string> words;
    std::vector<size_t> offs;
    ParseWords(rest, st_->escape, &words, &offs);
    if (words.empty()) return absl::OkStatus();
    if (!absl::StrContains(words[0], '=')) {
      // Legacy form: KEY name value (everything after the first whitespace run).
      size_t i = 0;
      while (i < rest.size() && !IsWs(rest[i])) ++i;
      size_t j = i;
      while (j < rest.size() && IsWs(rest[j])) ++j;
      if (j >= rest.size()) {
        return Error(base, absl::StrCat(key, " must have two arguments"));
      }
      n->key_values.push_back(
          KeyValue{std::string(rest.substr(0, i)), std::string(rest.substr(j)), true});
      AddArg(n, std::string(rest.substr(0, i)), base);
      AddArg(n, std::string(rest.substr(j)), base + j);
      return absl::OkStatus();
    }
    for (size_t i = 0; i < words.size(); ++i) {
      const std::string& w = words[i];
      size_t eq = w.find('=');
      if (eq == std::string::npos) {
        return Error(base + offs[i], absl::StrCat("Syntax error - can't find = in \"", w,
                                                  "\". Must be of the form: name=value"));
      }
      n->key_values.push_back(KeyValue{w.substr(0, eq), w.substr(eq + 1), false});
      AddArg(n, w, base + offs[i]);
    }
    return absl::OkStatus();
  }

  absl::Status Healthcheck(Node* n, absl::string_view rest, size_t base) {
    size_t sep = 0;
    while (sep < rest.size() && !IsSpace(rest[sep])) ++sep;
    size_t next = sep;
    while (next < rest.size() && IsSpace(rest[next])) ++next;
    if (sep == 0) return absl::OkStatus();
    AddArg(n, std::string(rest.substr(0, sep)), base);
    absl::string_view cmd = rest.substr(next);
    if (cmd.empty()) return absl::OkStatus();
    std::vector<std::string> arr;
    switch (ParseJsonArray(cmd, &arr)) {
      case JsonResult::kOk:
        n->json = true;
        for (std::string& a : arr) AddArg(n, std::move(a), base + next);
        return absl::OkStatus();
      case JsonResult::kNotStrings:
        return Error(base + next, kNotStringsMessage);
      case JsonResult::kNotJson:
        AddArg(n, std::string(cmd), base + next);
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status OnBuild(Node* n, absl::string_view rest, size_t base) {
    if (rest.empty()) return absl::OkStatus();
    LineParser sub(st_, ll_);
    absl::StatusOr<Node> child = sub.ParseNode(base);
    if (!child.ok()) return child.status();
    AddArg(n, std::string(rest), base);
    n->onbuild = std::make_unique<Node>(*std::move(child));
    return absl::OkStatus();
  }

  ParseState* st_;
  const LogicalLine& ll_;
};

bool CanContainHeredoc(const Node& n) {
  const Node* node = &n;
  if (node->keyword == "onbuild" && node->onbuild) node = node->onbuild.get();
  if (node->keyword != "run" && node->keyword != "copy" && node->keyword != "add") return false;
  return !node->json;
}

// heredocsFromLine: shell words of the whole line (escape '\', quotes and escapes kept),
// each checked for the <<[-]WORD form.
absl::StatusOr<std::vector<Heredoc>> HeredocsFromLine(absl::string_view line) {
  ShellLex lex('\\');
  lex.raw_quotes = true;
  lex.raw_escapes = true;
  EnvLookup empty = [](absl::string_view) { return std::optional<std::string>(); };
  absl::StatusOr<std::vector<std::string>> words = lex.ProcessWords(line, empty);
  std::vector<Heredoc> out;
  if (!words.ok()) return out;  // Docker ignores lexing errors here
  for (const std::string& w : *words) {
    absl::StatusOr<Heredoc> h = ParseHeredocWord(w);
    if (!h.ok()) return h.status();
    if (!h->name.empty()) out.push_back(*std::move(h));
  }
  return out;
}

// Splits `text` into lines like Go's bufio.ScanLines (a trailing "\r" dropped).
std::vector<absl::string_view> SplitLines(absl::string_view text) {
  std::vector<absl::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    absl::string_view line =
        nl == absl::string_view::npos ? text.substr(start) : text.substr(start, nl - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == absl::string_view::npos) break;
    start = nl + 1;
  }
  return lines;
}

}  // namespace

absl::Status ErrorAt(absl::string_view filename, Position pos, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(filename, ":", pos.line, ":", pos.column, ": ", message));
}

Node Node::Clone() const {
  Node n;
  n.command = command;
  n.keyword = keyword;
  n.original = original;
  n.flags = flags;
  n.flag_positions = flag_positions;
  n.args = args;
  n.arg_positions = arg_positions;
  n.key_values = key_values;
  n.json = json;
  n.heredocs = heredocs;
  if (onbuild) n.onbuild = std::make_unique<Node>(onbuild->Clone());
  n.start = start;
  n.end_line = end_line;
  n.comments = comments;
  return n;
}

std::string ChompHeredocContent(absl::string_view content) {
  std::string out;
  for (absl::string_view line : absl::StrSplit(content, '\n')) {
    size_t i = 0;
    while (i < line.size() && line[i] == '\t') ++i;
    out.append(line.data() + i, line.size() - i);
    out.push_back('\n');
  }
  out.pop_back();  // StrSplit yields one more piece than there are newlines
  return out;
}

absl::StatusOr<Heredoc> ParseHeredocWord(absl::string_view src) {
  // ^(\d*)<<(-?)([^<]*)$
  Heredoc h;
  size_t i = 0;
  while (i < src.size() && absl::ascii_isdigit(src[i])) ++i;
  absl::string_view fd = src.substr(0, i);
  if (src.substr(i, 2) != "<<") return h;
  i += 2;
  bool chomp = false;
  if (i < src.size() && src[i] == '-') {
    chomp = true;
    ++i;
  }
  absl::string_view rest = src.substr(i);
  if (absl::StrContains(rest, '<') || rest.empty()) return h;
  ShellLex lex('\\');
  lex.skip_unset_env = true;
  EnvLookup empty = [](absl::string_view) { return std::optional<std::string>(); };
  absl::StatusOr<std::vector<std::string>> words = lex.ProcessWords(rest, empty);
  if (!words.ok()) return words.status();
  if (words->size() != 1) return h;
  lex.raw_quotes = true;
  absl::StatusOr<std::vector<std::string>> raw = lex.ProcessWords(rest, empty);
  if (!raw.ok()) return raw.status();
  if (raw->size() != words->size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("internal lexing of heredoc produced inconsistent results: ", rest));
  }
  auto quotes = [](const std::string& s) {
    return std::count(s.begin(), s.end(), '\'') + std::count(s.begin(), s.end(), '"');
  };
  h.name = (*words)[0];
  h.expand = quotes((*words)[0]) == quotes((*raw)[0]);
  h.chomp = chomp;
  int64_t fd_value = 0;
  for (char c : fd) {
    fd_value = fd_value * 10 + (c - '0');
    if (fd_value > 1024) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid file descriptor \"", fd, "\" in heredoc \"", src, "\""));
    }
  }
  h.fd = static_cast<int>(fd_value);
  return h;
}

absl::StatusOr<Node> ParseLine(absl::string_view line, char escape, absl::string_view filename,
                               int line_number) {
  ParseState st;
  st.filename = std::string(filename);
  st.escape = escape;
  st.directives_done = true;
  LogicalLine ll;
  ll.Append(line, line_number, 0);
  LineParser lp(&st, ll);
  absl::StatusOr<Node> n = lp.ParseNode(0);
  if (n.ok()) n->end_line = line_number;
  return n;
}

absl::StatusOr<SyntaxTree> Parse(absl::string_view text, absl::string_view filename) {
  ParseState st;
  st.filename = std::string(filename);
  std::vector<absl::string_view> lines = SplitLines(text);
  if (!lines.empty() && absl::StartsWith(lines[0], "\xEF\xBB\xBF")) lines[0].remove_prefix(3);

  SyntaxTree tree;
  tree.filename = st.filename;
  std::vector<std::string> comments;
  size_t i = 0;
  const size_t n = lines.size();
  while (i < n) {
    absl::string_view raw = lines[i];
    int line_no = static_cast<int>(i) + 1;
    ++i;
    if (IsComment(raw)) {
      size_t lead = SkipLeftSpace(raw);
      std::string c(absl::StripAsciiWhitespace(raw.substr(lead + 1)));
      if (c.empty()) {
        comments.clear();
      } else {
        comments.push_back(std::move(c));
      }
    }
    // processLine(stripLeftWhitespace=true)
    size_t lead = SkipLeftSpace(raw);
    absl::string_view trimmed = raw.substr(lead);
    absl::Status ds = PossibleDirective(&st, trimmed, line_no, static_cast<int>(lead));
    if (!ds.ok()) return ds;
    if (IsComment(trimmed)) trimmed = absl::string_view();

    LogicalLine ll;
    std::string first(trimmed);
    bool continued = TrimContinuation(&first, st.escape);
    if (!continued && first.empty()) continue;
    ll.Append(first, line_no, static_cast<int>(lead));
    int start_line = line_no;
    int last_line = line_no;
    bool empty_continuation = false;
    while (continued && i < n) {
      absl::string_view cont = lines[i];
      int cont_no = static_cast<int>(i) + 1;
      ++i;
      last_line = cont_no;
      ds = PossibleDirective(&st, cont, cont_no, 0);
      if (!ds.ok()) return ds;
      if (IsComment(cont)) continue;
      if (SkipLeftSpace(cont) == cont.size()) {
        empty_continuation = true;
        continue;
      }
      std::string piece(cont);
      continued = TrimContinuation(&piece, st.escape);
      ll.Append(piece, cont_no, 0);
    }
    if (empty_continuation) {
      st.warnings.push_back(
          Warning{absl::StrCat("Empty continuation line found in: ", ll.text), start_line});
    }

    LineParser lp(&st, ll);
    absl::StatusOr<Node> node = lp.ParseNode(0);
    if (!node.ok()) return node.status();
    node->comments = std::move(comments);
    comments.clear();

    if (CanContainHeredoc(*node) && absl::StrContains(ll.text, "<<")) {
      absl::StatusOr<std::vector<Heredoc>> docs = HeredocsFromLine(ll.text);
      if (!docs.ok()) {
        return ErrorAt(st.filename, node->start, docs.status().message());
      }
      size_t search_from = 0;
      for (Heredoc& h : *docs) {
        size_t at = ll.text.find("<<", search_from);
        Position where = at == std::string::npos ? node->start : ll.At(at);
        if (at != std::string::npos) search_from = at + 2;
        bool terminated = false;
        while (i < n) {
          absl::string_view body = lines[i];
          ++i;
          last_line = static_cast<int>(i);
          absl::string_view candidate = body;
          if (h.chomp) {
            size_t t = 0;
            while (t < candidate.size() && candidate[t] == '\t') ++t;
            candidate.remove_prefix(t);
          }
          if (candidate == h.name) {
            terminated = true;
            break;
          }
          h.content.append(body.data(), body.size());
          h.content.push_back('\n');
        }
        if (!terminated) {
          return ErrorAt(st.filename, where,
                         absl::StrCat("unterminated heredoc: no line \"", h.name,
                                      "\" closes the heredoc started here"));
        }
        node->heredocs.push_back(h);
        if (node->onbuild) node->onbuild->heredocs.push_back(h);
      }
    }
    node->end_line = last_line;
    if (node->onbuild) node->onbuild->end_line = last_line;
    tree.nodes.push_back(*std::move(node));
  }
  if (tree.nodes.empty()) {
    return ErrorAt(st.filename, Position{1, 1}, "file with no instructions");
  }
  tree.escape = st.escape;
  tree.directives = std::move(st.directives);
  tree.warnings = std::move(st.warnings);
  return tree;
}

namespace {

nlohmann::ordered_json NodeJson(const Node& n) {
  using oj = nlohmann::ordered_json;
  oj j = oj::object();
  j["name"] = absl::AsciiStrToUpper(n.keyword);
  j["start"] = oj::object({{"line", n.start.line}, {"column", n.start.column}});
  j["end_line"] = n.end_line;
  j["form"] = n.json ? "json" : "shell";
  j["flags"] = n.flags;
  j["args"] = n.args;
  if (!n.key_values.empty()) {
    oj kvs = oj::array();
    for (const KeyValue& kv : n.key_values) {
      oj e = oj::object({{"key", kv.key}, {"value", kv.value}});
      if (kv.legacy) e["legacy"] = true;
      kvs.push_back(std::move(e));
    }
    j["key_values"] = std::move(kvs);
  }
  if (!n.heredocs.empty()) {
    oj hs = oj::array();
    for (const Heredoc& h : n.heredocs) {
      hs.push_back(oj::object({{"name", h.name},
                               {"content", h.content},
                               {"expand", h.expand},
                               {"chomp", h.chomp},
                               {"fd", h.fd}}));
    }
    j["heredocs"] = std::move(hs);
  }
  if (n.onbuild) j["trigger"] = NodeJson(*n.onbuild);
  j["original"] = n.original;
  return j;
}

}  // namespace

std::string SyntaxTreeToJson(const SyntaxTree& tree) {
  using oj = nlohmann::ordered_json;
  oj j = oj::object();
  j["file"] = tree.filename;
  j["escape"] = std::string(1, tree.escape);
  oj dirs = oj::array();
  for (const Directive& d : tree.directives) {
    dirs.push_back(oj::object({{"name", d.name}, {"value", d.value}, {"line", d.line}}));
  }
  j["directives"] = std::move(dirs);
  oj warns = oj::array();
  for (const Warning& w : tree.warnings) {
    warns.push_back(oj::object({{"line", w.line}, {"message", w.message}}));
  }
  j["warnings"] = std::move(warns);
  oj ins = oj::array();
  for (const Node& n : tree.nodes) ins.push_back(NodeJson(n));
  j["instructions"] = std::move(ins);
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

}  // namespace farm::scheduler::dockerfile
