// Structured logs for Farm's servers (--log-format text|json): one line per event, with the
// ids that say what it is about (build, step, worker, tenant) and any other key/values.
//
//   text: 2026-12-03T09:29:28.123Z farm-scheduler: step finished build=b-12 step=s3 cached=true
//   json: {"ts":"2026-12-03T09:29:28.123Z","level":"info","msg":"step finished",
//          "component":"farm-scheduler","build":"b-12","step":"s3","cached":true}
//
//   ASSIGN_OR_RETURN(logging::Format format, logging::ParseFormat(log_format_flag));
//   logging::Logger::Options lo;
//   lo.component = "farm-scheduler";
//   lo.format = format;
//   logging::Logger log(lo);
//   log.Info("step finished", {{"build", id}, {"step", step}, {"cached", true}});
//   logging::Logger worker_log = log.With({{"worker", worker_id}});  // on every line
//   worker_log.Warning("heartbeat late", {{"late_seconds", 3.5}});
//   // Components that take a line callback today (BuildManager::Options::log,
//   // dispatch::Options::event_log, Agent::Options::log):
//   mopt.log = log.LineFunc();
//
// Text lines keep today's shape ("<time> <component>: <msg>"), with the level before the
// message unless it is info, and fields appended as key=value (quoted when needed). In both
// formats control characters are escaped, so an event is always exactly one line. JSON keys
// come in a fixed order: ts, level, msg, component, build, step, worker, tenant, then the rest
// as given; a field named like one of the first four is written as "field.<name>", and a repeated
// key keeps its first position and its last value.
#ifndef FARM_COMMON_LOGGING_LOGGING_H_
#define FARM_COMMON_LOGGING_LOGGING_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace farm::common::logging {

enum class Format { kText, kJson };
enum class Level { kDebug, kInfo, kWarning, kError };

// "text" or "json" (the --log-format values); INVALID_ARGUMENT otherwise.
absl::StatusOr<Format> ParseFormat(absl::string_view flag);
// "debug", "info", "warning", "error"; INVALID_ARGUMENT otherwise.
absl::StatusOr<Level> ParseLevel(absl::string_view flag);
// "debug", "info", "warning", "error".
absl::string_view LevelName(Level level);

// One key/value of a log line. Values are strings, integers, floating point or booleans, and
// keep their type in JSON.
class Field {
 public:
  Field(absl::string_view key, absl::string_view value) : key_(key), value_(std::string(value)) {}
  Field(absl::string_view key, const std::string& value) : key_(key), value_(value) {}
  // Without this, a string literal would pick the bool constructor.
  Field(absl::string_view key, const char* value) : key_(key), value_(std::string(value)) {}
  Field(absl::string_view key, bool value) : key_(key), value_(value) {}
  Field(absl::string_view key, double value) : key_(key), value_(value) {}
  template <typename T,
            std::enable_if_t<
                std::is_integral_v<T> && !std::is_same_v<T, bool> && std::is_signed_v<T>, int> = 0>
  Field(absl::string_view key, T value) : key_(key), value_(static_cast<int64_t>(value)) {}
  template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                             std::is_unsigned_v<T>,
                                         int> = 0>
  Field(absl::string_view key, T value) : key_(key), value_(static_cast<uint64_t>(value)) {}

  using Value = std::variant<std::string, int64_t, uint64_t, double, bool>;
  const std::string& key() const { return key_; }
  const Value& value() const { return value_; }

 private:
  std::string key_;
  Value value_;
};

class Logger {
 public:
  struct Options {
    // The program ("farm-scheduler"): text lines' prefix, JSON's "component".
    std::string component;
    Format format = Format::kText;
    // Lines below it are dropped.
    Level min_level = Level::kInfo;
    // Receives each line without its newline, one call at a time. Default: appends "\n" and
    // writes it to stderr in one write(2).
    std::function<void(absl::string_view line)> sink;
    // The clock for "ts". Default: absl::Now.
    std::function<absl::Time()> now;
  };

  explicit Logger(Options options);

  // A logger writing to the same sink that adds `fields` to each of its lines (before the
  // fields of the call). Cheap: loggers are small handles sharing one sink.
  Logger With(std::vector<Field> fields) const;

  // Thread-safe: lines are formatted by the caller and handed to the sink one at a time.
  void Log(Level level, absl::string_view msg, std::initializer_list<Field> fields = {}) const;
  void Log(Level level, absl::string_view msg, const std::vector<Field>& fields) const;
  void Debug(absl::string_view msg, std::initializer_list<Field> fields = {}) const {
    Log(Level::kDebug, msg, fields);
  }
  void Info(absl::string_view msg, std::initializer_list<Field> fields = {}) const {
    Log(Level::kInfo, msg, fields);
  }
  void Warning(absl::string_view msg, std::initializer_list<Field> fields = {}) const {
    Log(Level::kWarning, msg, fields);
  }
  void Error(absl::string_view msg, std::initializer_list<Field> fields = {}) const {
    Log(Level::kError, msg, fields);
  }
  bool Enabled(Level level) const;

  // For components that report plain lines through a callback: each line becomes one event at
  // `level` with this logger's fields. Converts to std::function<void(const std::string&)> too.
  std::function<void(absl::string_view)> LineFunc(Level level = Level::kInfo) const;

  // The line Log() would write (without the newline), whatever the level.
  std::string FormatLine(Level level, absl::string_view msg,
                         const std::vector<Field>& fields) const;

 private:
  struct Core;
  Logger(std::shared_ptr<Core> core, std::vector<Field> bound);

  // Shared by a logger and every logger made from it With(), so that their lines go through one
  // lock to one sink.
  std::shared_ptr<Core> core_;
  std::vector<Field> bound_;
};

}  // namespace farm::common::logging

#endif  // FARM_COMMON_LOGGING_LOGGING_H_
