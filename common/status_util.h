// Helpers for building and annotating absl::Status values, and for turning errno, into them.
//
//   if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
//   return common::Annotate(status, "staging layer sha256:ab12…");
#ifndef FARM_COMMON_STATUS_UTIL_H_
#define FARM_COMMON_STATUS_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace farm::common {

// Returns `status` with "`context`: " prepended to its message, keeping its code and payloads.
// OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view context);

// Maps an errno value to the absl code closest in meaning (ENOENT → NOT_FOUND, EACCES →
// PERMISSION_DENIED, ENOSPC → RESOURCE_EXHAUSTED, ...) with "`context`: strerror" as message.
absl::Status ErrnoToStatus(int errno_value, absl::string_view context);

}  // namespace farm::common

#endif  // FARM_COMMON_STATUS_UTIL_H_
