// REAPI instance names and ByteStream resource names (reapi.md §4).
//
//   ASSIGN_OR_RETURN(cache::server::ReadResource r,
//                    cache::server::ParseReadResource("team/a/blobs/<hash>/42"));
//   // r.instance == "team/a", r.digest == {<hash>, 42}
//   ASSIGN_OR_RETURN(cache::server::WriteResource w,
//                    cache::server::ParseWriteResource("uploads/<uuid>/blobs/<hash>/42/meta"));
//
// Every error is INVALID_ARGUMENT and quotes the name.
#ifndef FARM_CACHE_SERVER_RESOURCE_NAME_H_
#define FARM_CACHE_SERVER_RESOURCE_NAME_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/digest.h"

namespace farm::cache::server {

// An instance name is "" or '/'-separated non-empty segments, none of which is a word REAPI
// reserves (blobs, uploads, actions, actionResults, operations, capabilities,
// compressed-blobs), of printable ASCII, at most 1024 bytes.
absl::Status ValidateInstanceName(absl::string_view instance);

struct ReadResource {
  std::string instance;
  common::Digest digest;
};
// "[{instance}/]blobs/{hash}/{size}". Compressed forms and non-SHA-256 digest functions are
// rejected with a message saying they are unsupported.
absl::StatusOr<ReadResource> ParseReadResource(absl::string_view name);

struct WriteResource {
  std::string instance;
  std::string uuid;
  common::Digest digest;
};
// "[{instance}/]uploads/{uuid}/blobs/{hash}/{size}[/{metadata...}]".
absl::StatusOr<WriteResource> ParseWriteResource(absl::string_view name);

}  // namespace farm::cache::server

#endif  // FARM_CACHE_SERVER_RESOURCE_NAME_H_
