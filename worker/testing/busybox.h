// A minimal busybox root filesystem for tests (what /work/shared/bench/busybox-rootfs.sh makes):
// /bin/busybox from the busybox-static package, every applet as a symlink to it, /etc/passwd
// with root and nobody, /etc/group, the usual empty directories, every mtime 0.
//
//   ASSERT_OK(worker::testing::MakeBusyboxRootfs(dir));
#ifndef FARM_WORKER_TESTING_BUSYBOX_H_
#define FARM_WORKER_TESTING_BUSYBOX_H_

#include <string>

#include "absl/status/status.h"

namespace farm::worker::testing {

absl::Status MakeBusyboxRootfs(const std::string& dir);

}  // namespace farm::worker::testing

#endif  // FARM_WORKER_TESTING_BUSYBOX_H_
