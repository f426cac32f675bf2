// RocksDB status → absl::Status, in one place for every RocksDB user (the CAS, the image store,
// the scheduler's builds and dispatch state). The code follows the meaning: NotFound →
// NOT_FOUND, Corruption → DATA_LOSS, out of space or memory → RESOURCE_EXHAUSTED, transient
// conditions (busy, try again, timed out, incomplete, aborted) → UNAVAILABLE, anything else
// INTERNAL. The message is "<context>: <RocksDB's text>".
//
//   RETURN_IF_ERROR(common::FromRocks(db->Put(wo, key, value), "writing build b123"));
#ifndef FARM_COMMON_ROCKSDB_STATUS_H_
#define FARM_COMMON_ROCKSDB_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace farm::common {

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context);

}  // namespace farm::common

#endif  // FARM_COMMON_ROCKSDB_STATUS_H_
