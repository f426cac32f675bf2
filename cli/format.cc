#include "cli/format.h"

#include <unistd.h>

#include <cmath>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace farm::cli {

namespace {

using nlohmann::json;

size_t RuneCount(absl::string_view s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xc0) != 0x80) ++n;
  }
  return n;
}

std::string GoValue(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return v.get<std::string>();
    case json::value_t::null:
      return "<no value>";
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::array: {
      std::vector<std::string> parts;
      for (const json& e : v) parts.push_back(GoValue(e));
      return absl::StrCat("[", absl::StrJoin(parts, " "), "]");
    }
    case json::value_t::object: {
      std::vector<std::string> parts;
      for (auto it = v.begin(); it != v.end(); ++it) {
        parts.push_back(absl::StrCat(it.key(), ":", GoValue(it.value())));
      }
      return absl::StrCat("map[", absl::StrJoin(parts, " "), "]");
    }
    default:
      return v.dump();
  }
}

absl::StatusOr<json> Lookup(const json& ctx, absl::string_view path) {
  if (path == ".") return ctx;
  if (!absl::StartsWith(path, ".")) {
    return absl::InvalidArgumentError(
        absl::StrCat("template: unsupported argument \"", path, "\" (only .Field paths)"));
  }
  const json* cur = &ctx;
  for (absl::string_view field : absl::StrSplit(path.substr(1), '.')) {
    if (!cur->is_object() || !cur->contains(std::string(field))) {
      return absl::InvalidArgumentError(
          absl::StrCat("template: can't evaluate field ", field, " in ", path));
    }
    cur = &(*cur)[std::string(field)];
  }
  return *cur;
}

}  // namespace

std::string DockerSize(int64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1000.0 && u < 8) {
    v /= 1000.0;
    ++u;
  }
  return absl::StrFormat("%.3g%s", v, kUnits[u]);
}

std::string HumanDuration(absl::Duration d) {
  int64_t seconds = absl::ToInt64Seconds(d);
  if (seconds < 1) return "Less than a second";
  if (seconds == 1) return "1 second";
  if (seconds < 60) return absl::StrCat(seconds, " seconds");
  int64_t minutes = absl::ToInt64Minutes(d);
  if (minutes == 1) return "About a minute";
  if (minutes < 60) return absl::StrCat(minutes, " minutes");
  int64_t hours = static_cast<int64_t>(std::round(absl::ToDoubleHours(d)));
  if (hours == 1) return "About an hour";
  if (hours < 48) return absl::StrCat(hours, " hours");
  if (hours < 24 * 7 * 2) return absl::StrCat(hours / 24, " days");
  if (hours < 24 * 30 * 2) return absl::StrCat(hours / 24 / 7, " weeks");
  if (hours < 24 * 365 * 2) return absl::StrCat(hours / 24 / 30, " months");
  return absl::StrCat(absl::ToInt64Hours(d) / 24 / 365, " years");
}

std::string CreatedSince(const std::string& rfc3339, absl::Time now) {
  absl::Time t;
  std::string err;
  if (rfc3339.empty() || !absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) return "N/A";
  return HumanDuration(now - t) + " ago";
}

std::string CreatedAt(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  if (rfc3339.empty() || !absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) return "N/A";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string GoJsonEscape(std::string dumped) {
  // Outside strings JSON has none of these characters, so every occurrence is in a string.
  return absl::StrReplaceAll(dumped, {{"<", "\\u003c"},
                                      {">", "\\u003e"},
                                      {"&", "\\u0026"},
                                      {"\xE2\x80\xA8", "\\u2028"},
                                      {"\xE2\x80\xA9", "\\u2029"}});
}

std::string Ellipsis(const std::string& s, size_t max) {
  if (max == 0) return "";
  if (RuneCount(s) <= max) return s;
  std::string out;
  size_t runes = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c & 0xc0) != 0x80) {
      if (runes == max - 1) break;
      ++runes;
    }
    out += s[i];
  }
  return out + "…";
}

std::string ShortId(const std::string& id) {
  absl::string_view v = id;
  absl::ConsumePrefix(&v, "sha256:");
  return std::string(v.substr(0, 12));
}

bool IsTerminal(int fd) { return isatty(fd) == 1; }

std::string Table::Render() const {
  std::vector<std::vector<std::string>> all;
  if (!header_.empty()) all.push_back(header_);
  all.insert(all.end(), rows_.begin(), rows_.end());
  std::vector<size_t> width;
  for (const auto& row : all) {
    for (size_t i = 0; i + 1 < row.size(); ++i) {
      if (width.size() <= i) width.resize(i + 1, 10);
      width[i] = std::max(width[i], RuneCount(row[i]) + 3);
    }
  }
  std::string out;
  for (const auto& row : all) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - RuneCount(row[i]), ' ');
    }
    out += line + "\n";
  }
  return out;
}

absl::StatusOr<std::string> RenderTemplate(const std::string& tmpl_in, const json& ctx) {
  std::string tmpl = absl::StrReplaceAll(tmpl_in, {{"\\t", "\t"}, {"\\n", "\n"}});
  std::string out;
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("{{", pos);
    if (open == std::string::npos) {
      out += tmpl.substr(pos);
      break;
    }
    out += tmpl.substr(pos, open - pos);
    size_t close = tmpl.find("}}", open);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError("template: unclosed action \"{{\"");
    }
    absl::string_view action =
        absl::StripAsciiWhitespace(absl::string_view(tmpl).substr(open + 2, close - open - 2));
    absl::ConsumePrefix(&action, "-");
    absl::ConsumeSuffix(&action, "-");
    action = absl::StripAsciiWhitespace(action);
    if (absl::ConsumePrefix(&action, "json ")) {
      absl::StatusOr<json> v = Lookup(ctx, absl::StripAsciiWhitespace(action));
      if (!v.ok()) return v.status();
      out += GoJsonEscape(v->dump(-1, ' ', false, json::error_handler_t::replace));
    } else {
      absl::StatusOr<json> v = Lookup(ctx, action);
      if (!v.ok()) return v.status();
      out += GoValue(*v);
    }
    pos = close + 2;
  }
  return out;
}

absl::StatusOr<std::string> RenderFormat(
    const std::string& format, const std::vector<json>& items,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  absl::string_view f = format;
  bool table = absl::ConsumePrefix(&f, "table");
  std::string tmpl(absl::StripAsciiWhitespace(f));
  if (!table) {
    std::string out;
    for (const json& item : items) {
      absl::StatusOr<std::string> line = RenderTemplate(tmpl, item);
      if (!line.ok()) return line.status();
      out += *line + "\n";
    }
    return out;
  }
  json header = json::object();
  for (const auto& [field, title] : headers) header[field] = title;
  absl::StatusOr<std::string> head = RenderTemplate(tmpl, header);
  if (!head.ok()) return head.status();
  Table t(absl::StrSplit(*head, '\t'));
  for (const json& item : items) {
    absl::StatusOr<std::string> line = RenderTemplate(tmpl, item);
    if (!line.ok()) return line.status();
    t.AddRow(absl::StrSplit(*line, '\t'));
  }
  return t.Render();
}

}  // namespace farm::cli
