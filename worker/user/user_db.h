// Resolving a Dockerfile USER / --chown spec against an image's own /etc/passwd and
// /etc/group, with Docker's (runc's) rules:
//   ""            → as "0": root, its home from the passwd entry of uid 0 if any
//   "name"        → the passwd entry's uid and gid; supplementary groups: every /etc/group
//                   entry listing the name as a member
//   "uid"         → that uid; gid and home from the passwd entry with that uid, if any, else 0
//   "x:group"     → as above, but gid from the group spec (a name in /etc/group or a number)
//                   and no supplementary groups
// A name that is not in the file is FAILED_PRECONDITION ("unable to find user nobody: no
// matching entries in passwd file"), as `docker build` reports it.
//
//   ASSIGN_OR_RETURN(worker::user::ResolvedUser u, worker::user::ResolveUser("app:staff", passwd,
//   group));
#ifndef FARM_WORKER_USER_USER_DB_H_
#define FARM_WORKER_USER_USER_DB_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::worker::user {

struct ResolvedUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> groups;  // supplementary groups (may include gid)
  std::string name;              // "" if unknown
  std::string home = "/";
};

// `passwd` / `group`: the files' contents, nullopt if the image has none.
absl::StatusOr<ResolvedUser> ResolveUser(absl::string_view spec,
                                         const std::optional<std::string>& passwd,
                                         const std::optional<std::string>& group);

// A group spec alone (name or number), for `--chown=:group`.
absl::StatusOr<uint32_t> ResolveGroup(absl::string_view spec,
                                      const std::optional<std::string>& group);

// COPY/ADD --chown (BuildKit's rules, which differ from USER's): "name" → the passwd entry's
// uid and primary gid; "uid" → uid:uid; ":group" or "x:group" sets the gid from /etc/group or a
// number. Unknown names are FAILED_PRECONDITION.
struct Owner {
  uint32_t uid = 0;
  uint32_t gid = 0;
};
absl::StatusOr<Owner> ResolveChown(absl::string_view spec, const std::optional<std::string>& passwd,
                                   const std::optional<std::string>& group);

}  // namespace farm::worker::user

#endif  // FARM_WORKER_USER_USER_DB_H_
