// Farm's components report events as plain lines through callbacks ("build b-12 started
// (tenant \"team-a\", ...)", "worker w1 connected from ...", "task t-3 ... requeued ..."). This
// turns each into one structured event of a Logger, with the ids a line starts with as fields,
// so that --log-format json lines carry build, worker, tenant and task ids without every
// component taking a Logger (farm-scheduler's dispatcher and builds, farm-worker's agent).
//
//   dispatch_options.event_log = FieldedLineFunc(log);
//   // "build b-12 started (tenant \"team-a\")" -> {"msg": "...", "build": "b-12", "tenant":
//   "team-a"}
#ifndef FARM_COMMON_LOGGING_LINE_FIELDS_H_
#define FARM_COMMON_LOGGING_LINE_FIELDS_H_

#include <functional>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/logging/logging.h"

namespace farm::common::logging {

// The fields a line names: "build <id>", "worker <id>" or "task <id>" at its start (build,
// worker, task), and a `tenant "<name>"` anywhere (tenant).
std::vector<Field> FieldsOfLine(absl::string_view line);

// Logs each line at info (warning when it starts with "WARNING: ", which is dropped) with
// FieldsOfLine's fields.
std::function<void(absl::string_view)> FieldedLineFunc(const Logger& log);

}  // namespace farm::common::logging

#endif  // FARM_COMMON_LOGGING_LINE_FIELDS_H_
