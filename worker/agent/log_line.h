// Pieces of farm-worker's log lines (one line per state change, see agent.h).
#ifndef FARM_WORKER_AGENT_LOG_LINE_H_
#define FARM_WORKER_AGENT_LOG_LINE_H_

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace farm::worker::agent {

// A duration: "250ms", "1.5s".
inline std::string FormatSeconds(absl::Duration d) {
  if (d < absl::Seconds(1)) return absl::StrCat(absl::ToInt64Milliseconds(d), "ms");
  char buf[32];
  snprintf(buf, sizeof(buf), "%.1fs", absl::ToDoubleSeconds(d));
  return buf;
}

// A status message on one line, whatever the server put in it.
inline std::string OneLine(absl::string_view message) {
  std::string s(message);
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_LOG_LINE_H_
