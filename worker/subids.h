// Subordinate id ranges for rootless steps: `--subid-range START:COUNT` or the ranges
// /etc/subuid and /etc/subgid give a user (`--subid-user NAME`, as shadow's newuidmap reads
// them: "name:start:count" or "uid:start:count" lines, the first that fits wins).
//
//   ASSIGN_OR_RETURN(worker::SubIdRange r, worker::SubIdsOfUser("farm"));
//   req.mutable_userns()->set_uid_start(r.uid_start);
#ifndef FARM_WORKER_SUBIDS_H_
#define FARM_WORKER_SUBIDS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::worker {

// How many ids a step's user namespace maps: container ids 0..65535, as Docker and Podman.
inline constexpr uint32_t kRootlessIdCount = 65536;

struct SubIdRange {
  uint32_t uid_start = 0;
  uint32_t gid_start = 0;
  uint32_t count = 0;  // 0: none configured
};

// "START:COUNT" (the same range for uids and gids). INVALID_ARGUMENT when malformed, when
// COUNT < 65536, when it contains host id 0 or runs past 2^32-1.
absl::StatusOr<SubIdRange> ParseSubIdRange(absl::string_view text);

// The first range of at least 65536 ids for `user` (a name, or its uid when `uid` >= 0) in
// the contents of /etc/subuid and /etc/subgid. FAILED_PRECONDITION naming the file when the
// user has no range there, or only smaller ones.
absl::StatusOr<SubIdRange> FindSubIds(absl::string_view user, int64_t uid, absl::string_view subuid,
                                      absl::string_view subgid,
                                      absl::string_view subuid_name = "/etc/subuid",
                                      absl::string_view subgid_name = "/etc/subgid");

// FindSubIds on `subuid_path` and `subgid_path` (the user's uid looked up in the host's
// passwd database when it has one).
absl::StatusOr<SubIdRange> SubIdsOfUser(absl::string_view user,
                                        const std::string& subuid_path = "/etc/subuid",
                                        const std::string& subgid_path = "/etc/subgid");

}  // namespace farm::worker

#endif  // FARM_WORKER_SUBIDS_H_
