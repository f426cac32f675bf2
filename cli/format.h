// Output formatting shared by the image commands, matching the Docker CLI byte for byte where
// it matters: tables laid out like Go's text/tabwriter as docker configures it (minwidth 10,
// padding 3), go-units sizes ("7.33MB") and durations ("2 weeks ago"), docker's ellipsis, and
// the subset of Go templates people pass to --format ({{.Field}}, {{json .}}, "table ...").
//
//   cli::Table t({"REPOSITORY", "TAG"});
//   t.AddRow({"alpine", "latest"});
//   std::cout << t.Render();
//   ASSIGN_OR_RETURN(std::string line, cli::RenderTemplate("{{.Repository}}:{{.Tag}}", obj));
#ifndef FARM_CLI_FORMAT_H_
#define FARM_CLI_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace farm::cli {

// go-units HumanSizeWithPrecision(bytes, 3): "0B", "512B", "7.33MB", "1.2GB".
std::string DockerSize(int64_t bytes);
// go-units HumanDuration: "Less than a second", "About a minute", "3 hours", "2 weeks", ...
std::string HumanDuration(absl::Duration d);
// "<HumanDuration> ago" for an RFC 3339 time; "N/A" when empty or unparsable.
std::string CreatedSince(const std::string& rfc3339, absl::Time now);
// An RFC 3339 time as Go's time.Format(time.RFC3339) prints it in UTC, to the second
// ("2024-01-02T03:04:05Z"); "N/A" when empty or unparsable.
std::string CreatedAt(const std::string& rfc3339);
// What Go's encoding/json writes for a string nlohmann::json dumped: the same, with <, > and &
// escaped as \u003c, \u003e and \u0026 (and U+2028/U+2029 as \u2028/\u2029), as docker
// prints {{json ...}} and inspect.
std::string GoJsonEscape(std::string dumped);
// Docker's stringutils.Ellipsis: at most `max` characters, the last one "…" when cut.
std::string Ellipsis(const std::string& s, size_t max);
// "sha256:<64 hex>" → the first 12 hex characters.
std::string ShortId(const std::string& id);
bool IsTerminal(int fd);

// Columns padded to max(10, widest cell + 3); the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// Renders a Go-template subset against `ctx`: literal text, {{.A.B}} (strings raw, lists as
// "[a b]", other values as JSON), {{json .}} / {{json .A}}, and the \t \n escapes docker
// accepts. INVALID_ARGUMENT naming the unsupported action or missing field.
absl::StatusOr<std::string> RenderTemplate(const std::string& tmpl, const nlohmann::json& ctx);

// A --format value: "table ..." renders a table whose header comes from `headers` (field name
// → column title), anything else one line per item. `items` are the objects to render.
absl::StatusOr<std::string> RenderFormat(
    const std::string& format, const std::vector<nlohmann::json>& items,
    const std::vector<std::pair<std::string, std::string>>& headers);

}  // namespace farm::cli

#endif  // FARM_CLI_FORMAT_H_
