// Rootless steps: the parts of the sandbox runner that put a step in a user namespace of its
// own (SandboxRequest.userns), mapping container ids 0..65535 to a subordinate id range, so
// that root in the step is an unprivileged id on the host.
//
// How the root file system keeps the image's owners. Layers are unpacked on the host with the
// image's ids (0 for root). Seen from a user namespace that maps 0 to, say, 100000, those
// files would belong to nobody, and whatever the step writes would be stored as 100000+id.
// Three ways out were considered:
//   - chown every layer into the range (Docker's userns-remap): a copy of the layer store per
//     range, and the layer tar would have to be mapped back. Rejected.
//   - overlayfs mounted inside the user namespace (unprivileged overlay, Linux 5.11+): the
//     layers still need idmapping, and an unprivileged overlay cannot use trusted.overlay.*
//     xattrs, so the layer store's opaque directories would have to be rewritten as
//     user.overlay.* and the upperdir read back differently. Rejected.
//   - chosen: idmapped mounts (Linux 5.12+; overlayfs on idmapped layers, 5.19+). The runner
//     (real root, in the host's namespaces) clones the layer directory and the run directory
//     as detached mounts idmapped with the step's user namespace (mount_setattr
//     MOUNT_ATTR_IDMAP), and mounts the overlay on them with the new mount API (fsopen,
//     fsconfig lowerdir+, fsmount): a detached overlay that never appears in the host's mount
//     table, whose superblock belongs to the host (so trusted.overlay.* work as before), where
//     an on-disk 0 reads as the namespace's 0 and a file the step chowns to 1000 is stored as
//     1000. The upperdir is therefore byte for byte what a rootful run writes: same layer tar,
//     same diff_id. No chown, no copy; the cost is a few mount syscalls per step (measured:
//     docs/benchmarks.md, "Rootless steps").
// The same goes for RUN --mount bind sources (idmapped clones: a cache directory keeps its
// owners) and stage overlays. Host files bound read-only (/etc/resolv.conf, /etc/hosts) are
// plain clones. Every such mount is handed to the sandbox's init, which lives in the user
// namespace, over a socket (SCM_RIGHTS), and init attaches it with move_mount.
//
// init cannot walk the worker's state directory (0700, owned by real root, hence by nobody
// in the namespace): the runner starts it with the run directory as its working directory
// (made searchable, o+x, for the namespace's root) and init reaches the root file system and
// the mount points there by relative paths (LocalPath).
//
//   ASSIGN_OR_RETURN(MountSources s, PrepareMountSources(req, userns_fd));   // runner
//   RETURN_IF_ERROR(SendMountSources(sock, s));
//   ASSIGN_OR_RETURN(MountSources got, ReceiveMountSources(sock));          // init
#ifndef FARM_WORKER_SANDBOX_ROOTLESS_H_
#define FARM_WORKER_SANDBOX_ROOTLESS_H_

#include <sys/types.h>

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "common/fs.h"
#include "farm/v1/sandbox.pb.h"

namespace farm::worker::sandbox::internal {

// Where each prepared mount goes: the root, /etc/resolv.conf, /etc/hosts, then
// SandboxRequest.mounts(i) at kFirstMountSlot + i (bind and overlay mounts only).
inline constexpr int kRootSlot = 0;
inline constexpr int kResolvConfSlot = 1;
inline constexpr int kHostsSlot = 2;
inline constexpr int kFirstMountSlot = 3;

// Detached mounts (open_tree/fsmount descriptors) by slot.
using MountSources = std::map<int, common::UniqueFd>;

// The run directory: the parent of SandboxRequest.rootfs_dir, init's working directory.
std::string RunDirOf(const farm::v1::SandboxRequest& req);
// `path` relative to the run directory when it lies below it, else unchanged.
std::string LocalPath(const farm::v1::SandboxRequest& req, const std::string& path);

// Runner side. Makes the run directory searchable for the namespace's root (o+x).
absl::Status OpenRunDirForNamespace(const farm::v1::SandboxRequest& req);
// Writes /proc/PID/uid_map and gid_map ("0 START COUNT"), as the parent (real root).
absl::Status WriteIdMaps(pid_t pid, const farm::v1::SandboxUserNamespace& ns);
// The root overlay, bind sources and stage overlays of `req`, idmapped with `userns_fd`.
absl::StatusOr<MountSources> PrepareMountSources(const farm::v1::SandboxRequest& req,
                                                 int userns_fd);
absl::Status SendMountSources(int sock, const MountSources& sources);

// init side: what SendMountSources sent, until its end marker.
absl::StatusOr<MountSources> ReceiveMountSources(int sock);

}  // namespace farm::worker::sandbox::internal

#endif  // FARM_WORKER_SANDBOX_ROOTLESS_H_
