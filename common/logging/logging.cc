#include "common/logging/logging.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace farm::common::logging {

struct Logger::Core {
  Options options;
  absl::Mutex mu;  // one line at a time into the sink
};

namespace {

constexpr absl::string_view kReserved[] = {"ts", "level", "msg", "component"};
constexpr absl::string_view kIds[] = {"build", "step", "worker", "tenant"};

bool IsReserved(absl::string_view key) {
  for (absl::string_view r : kReserved) {
    if (key == r) return true;
  }
  return false;
}

void WriteToStderr(absl::string_view line) {
  std::string buf;
  buf.reserve(line.size() + 1);
  buf.append(line.data(), line.size());
  buf.push_back('\n');
  // One write(2) per line (looping only on a partial write), so that lines of several
  // processes sharing the stream do not interleave within a line.
  size_t done = 0;
  while (done < buf.size()) {
    const ssize_t n = write(STDERR_FILENO, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += n;
  }
}

std::string Timestamp(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

// The message in a text line: control characters escaped so that an event stays one line.
void AppendEscapedText(std::string* out, absl::string_view s) {
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out->append("\\n");
    } else if (c == '\r') {
      out->append("\\r");
    } else if (c == '\t') {
      out->append("\\t");
    } else if (u < 0x20 || u == 0x7f) {
      absl::StrAppendFormat(out, "\\x%02x", u);
    } else {
      out->push_back(c);
    }
  }
}

// A text value: bare if it is a simple token, else double-quoted with \" \\ and control
// characters escaped.
void AppendTextValue(std::string* out, absl::string_view v) {
  bool bare = !v.empty();
  for (char c : v) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || u < 0x20 || u == 0x7f) {
      bare = false;
      break;
    }
  }
  if (bare) {
    out->append(v.data(), v.size());
    return;
  }
  out->push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else {
      AppendEscapedText(out, absl::string_view(&c, 1));
    }
  }
  out->push_back('"');
}

std::string ValueText(const Field::Value& v) {
  struct Visitor {
    std::string operator()(const std::string& s) const { return s; }
    std::string operator()(int64_t i) const { return absl::StrCat(i); }
    std::string operator()(uint64_t i) const { return absl::StrCat(i); }
    std::string operator()(double d) const {
      if (std::isnan(d)) return "NaN";
      if (std::isinf(d)) return d > 0 ? "+Inf" : "-Inf";
      char buf[64];  // the shortest text that reads back as `d`
      return std::string(buf, std::to_chars(buf, buf + sizeof(buf), d).ptr);
    }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
  };
  return std::visit(Visitor(), v);
}

nlohmann::ordered_json ValueJson(const Field::Value& v) {
  struct Visitor {
    nlohmann::ordered_json operator()(const std::string& s) const { return s; }
    nlohmann::ordered_json operator()(int64_t i) const { return i; }
    nlohmann::ordered_json operator()(uint64_t i) const { return i; }
    nlohmann::ordered_json operator()(double d) const { return d; }  // NaN/Inf: null
    nlohmann::ordered_json operator()(bool b) const { return b; }
  };
  return std::visit(Visitor(), v);
}

// The fields in output order: the ids first (in kIds order), then the rest in first-seen order;
// a repeated key keeps its first position and its last value; reserved names get "field.".
std::vector<std::pair<std::string, const Field::Value*>> Ordered(const std::vector<Field>& bound,
                                                                 const std::vector<Field>& fields) {
  std::vector<std::pair<std::string, const Field::Value*>> out;
  auto put = [&out](std::string key, const Field::Value* v) {
    for (auto& [k, old] : out) {
      if (k == key) {
        old = v;
        return;
      }
    }
    out.emplace_back(std::move(key), v);
  };
  for (absl::string_view id : kIds) {
    for (const std::vector<Field>* list : {&bound, &fields}) {
      for (const Field& f : *list) {
        if (f.key() == id) put(f.key(), &f.value());
      }
    }
  }
  for (const std::vector<Field>* list : {&bound, &fields}) {
    for (const Field& f : *list) {
      bool id = false;
      for (absl::string_view i : kIds) id = id || f.key() == i;
      if (id) continue;
      put(IsReserved(f.key()) ? absl::StrCat("field.", f.key()) : f.key(), &f.value());
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<Format> ParseFormat(absl::string_view flag) {
  if (flag == "text") return Format::kText;
  if (flag == "json") return Format::kJson;
  return absl::InvalidArgumentError(absl::StrCat("--log-format ", flag, ": want text or json"));
}

absl::StatusOr<Level> ParseLevel(absl::string_view flag) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarning, Level::kError}) {
    if (flag == LevelName(l)) return l;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--log-level ", flag, ": want debug, info, warning or error"));
}

absl::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarning:
      return "warning";
    case Level::kError:
      return "error";
  }
  return "info";
}

Logger::Logger(Options options) : core_(std::make_shared<Core>()) {
  if (!options.sink) options.sink = &WriteToStderr;
  if (!options.now) options.now = [] { return absl::Now(); };
  core_->options = std::move(options);
}

Logger::Logger(std::shared_ptr<Core> core, std::vector<Field> bound)
    : core_(std::move(core)), bound_(std::move(bound)) {}

Logger Logger::With(std::vector<Field> fields) const {
  std::vector<Field> bound = bound_;
  for (Field& f : fields) bound.push_back(std::move(f));
  return Logger(core_, std::move(bound));
}

bool Logger::Enabled(Level level) const { return level >= core_->options.min_level; }

void Logger::Log(Level level, absl::string_view msg, std::initializer_list<Field> fields) const {
  if (!Enabled(level)) return;
  Log(level, msg, std::vector<Field>(fields));
}

void Logger::Log(Level level, absl::string_view msg, const std::vector<Field>& fields) const {
  if (!Enabled(level)) return;
  const std::string line = FormatLine(level, msg, fields);
  absl::MutexLock l(&core_->mu);
  core_->options.sink(line);
}

std::function<void(absl::string_view)> Logger::LineFunc(Level level) const {
  Logger copy = *this;
  return [copy, level](absl::string_view line) { copy.Log(level, line, std::vector<Field>()); };
}

std::string Logger::FormatLine(Level level, absl::string_view msg,
                               const std::vector<Field>& fields) const {
  const Options& o = core_->options;
  const std::string ts = Timestamp(o.now());
  const auto ordered = Ordered(bound_, fields);
  if (o.format == Format::kText) {
    std::string out = ts;
    if (!o.component.empty()) absl::StrAppend(&out, " ", o.component, ":");
    out.push_back(' ');
    if (level != Level::kInfo) {
      absl::StrAppend(&out, absl::AsciiStrToUpper(LevelName(level)), ": ");
    }
    AppendEscapedText(&out, msg);
    for (const auto& [key, value] : ordered) {
      absl::StrAppend(&out, " ", key, "=");
      AppendTextValue(&out, ValueText(*value));
    }
    return out;
  }
  // nlohmann::json throws on some inputs; nothing may escape into our code.
  try {
    nlohmann::ordered_json j;
    j["ts"] = ts;
    j["level"] = std::string(LevelName(level));
    j["msg"] = std::string(msg);
    if (!o.component.empty()) j["component"] = o.component;
    for (const auto& [key, value] : ordered) j[key] = ValueJson(*value);
    // Invalid UTF-8 becomes U+FFFD instead of an exception.
    return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } catch (...) {
    return absl::StrCat("{\"ts\":\"", ts, "\",\"level\":\"error\",\"msg\":\"log line lost: ",
                        "cannot encode as JSON\"}");
  }
}

}  // namespace farm::common::logging
