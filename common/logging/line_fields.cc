#include "common/logging/line_fields.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"

namespace farm::common::logging {

namespace {

// The word after `prefix` at the start of `line` (up to a space, ':' or ','), or "".
absl::string_view IdAfter(absl::string_view line, absl::string_view prefix) {
  if (!absl::StartsWith(line, prefix)) return "";
  absl::string_view rest = line.substr(prefix.size());
  size_t end = rest.find_first_of(" :,");
  return rest.substr(0, end);
}

}  // namespace

std::vector<Field> FieldsOfLine(absl::string_view line) {
  std::vector<Field> fields;
  for (const auto& [prefix, key] :
       {std::pair<absl::string_view, absl::string_view>{"build ", "build"},
        {"worker ", "worker"},
        {"task ", "task"}}) {
    absl::string_view id = IdAfter(line, prefix);
    if (!id.empty()) {
      fields.emplace_back(key, id);
      break;
    }
  }
  constexpr absl::string_view kTenant = "tenant \"";
  size_t t = line.find(kTenant);
  if (t != absl::string_view::npos) {
    absl::string_view rest = line.substr(t + kTenant.size());
    size_t end = rest.find('"');
    if (end != absl::string_view::npos) fields.emplace_back("tenant", rest.substr(0, end));
  }
  return fields;
}

std::function<void(absl::string_view)> FieldedLineFunc(const Logger& log) {
  return [log](absl::string_view line) {
    Level level = Level::kInfo;
    constexpr absl::string_view kWarning = "WARNING: ";
    if (absl::StartsWith(line, kWarning)) {
      level = Level::kWarning;
      line.remove_prefix(kWarning.size());
    }
    log.Log(level, line, FieldsOfLine(line));
  };
}

}  // namespace farm::common::logging
