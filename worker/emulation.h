// Running steps of another architecture through QEMU user emulation registered with the
// kernel's binfmt_misc (Debian's qemu-user-static registers qemu-aarch64, qemu-arm, ... with the
// F flag: the interpreter is opened at registration, so it works inside a step's mount
// namespace, where /usr/libexec/qemu-binfmt does not exist).
//
//   RETURN_IF_ERROR(worker::CheckCanRun("linux/arm64"));  // OK natively or when emulated
//   ASSIGN_OR_RETURN(std::vector<std::string> emulated,       // farm-worker --emulate
//                    worker::ResolveEmulation("auto", "linux/amd64"));
#ifndef FARM_WORKER_EMULATION_H_
#define FARM_WORKER_EMULATION_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
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

// At most this many platforms a worker announces as emulated (farm-scheduler refuses more).
inline constexpr int kMaxEmulatedPlatforms = 16;

// The platforms farm-worker --emulate names, checked: "" or "none" → none; "auto" → every
// platform EmulatedPlatforms() reports; otherwise a comma-separated list ("linux/arm64,riscv64"),
// each normalized ("aarch64" → "linux/arm64") and checked with CheckCanRun. `native` (the
// platform the worker reports as its own) is left out, so are duplicates; sorted.
// INVALID_ARGUMENT for an entry that is not a platform or a list longer than
// kMaxEmulatedPlatforms; FAILED_PRECONDITION naming a platform this host cannot run and what to
// install (never silently dropped: the operator asked for it).
absl::StatusOr<std::vector<std::string>> ResolveEmulation(
    absl::string_view spec, absl::string_view native,
    const std::string& binfmt_dir = "/proc/sys/fs/binfmt_misc");

}  // namespace farm::worker

#endif  // FARM_WORKER_EMULATION_H_
