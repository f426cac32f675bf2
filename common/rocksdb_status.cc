#include "common/rocksdb_status.h"

#include "absl/strings/str_cat.h"

namespace farm::common {

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  absl::StatusCode code = absl::StatusCode::kInternal;
  if (s.IsNotFound()) {
    code = absl::StatusCode::kNotFound;
  } else if (s.IsCorruption()) {
    code = absl::StatusCode::kDataLoss;
  } else if (s.IsNoSpace() || s.IsMemoryLimit()) {
    code = absl::StatusCode::kResourceExhausted;
  } else if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() || s.IsIncomplete() || s.IsAborted()) {
    code = absl::StatusCode::kUnavailable;
  }
  return absl::Status(code, absl::StrCat(context, ": ", s.ToString()));
}

}  // namespace farm::common
