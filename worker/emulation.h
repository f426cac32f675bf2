// Running steps of another architecture through QEMU user emulation registered with the
// kernel's binfmt_misc (Debian's qemu-user-static registers qemu-aarch64, qemu-arm, ... with the
// F flag: the interpreter is opened at registration, so it works inside a step's mount
// namespace, where /usr/libexec/qemu-binfmt does not exist).
//
//   RETURN_IF_ERROR(worker::CheckCanRun("linux/arm64"));  // OK natively or when emulated
#ifndef FARM_WORKER_EMULATION_H_
#define FARM_WORKER_EMULATION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace farm::worker {

// The binfmt_misc entry QEMU registers for a normalized platform ("linux/arm64" →
// "qemu-aarch64"); "" when Farm knows none.
std::string BinfmtNameFor(absl::string_view platform);

// OK if this host runs `platform` (a normalized "os/arch[/variant]") natively, or through an
// enabled binfmt_misc entry with the F flag under `binfmt_dir` (default
// /proc/sys/fs/binfmt_misc). FAILED_PRECONDITION otherwise, saying what to install (or that a
// registration lacks F).
absl::Status CheckCanRun(absl::string_view platform,
                         const std::string& binfmt_dir = "/proc/sys/fs/binfmt_misc");

// The platforms this host can run under emulation (for farm-worker's announcement), sorted.
std::vector<std::string> EmulatedPlatforms(
    const std::string& binfmt_dir = "/proc/sys/fs/binfmt_misc");

}  // namespace farm::worker

#endif  // FARM_WORKER_EMULATION_H_
