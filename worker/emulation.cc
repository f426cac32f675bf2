#include "worker/emulation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "oci/platform.h"

namespace farm::worker {

namespace {

// Normalized platform → QEMU's binfmt entry (Debian's qemu-user-static names).
const std::vector<std::pair<std::string, std::string>>& Table() {
  static const auto* table = new std::vector<std::pair<std::string, std::string>>{
      {"linux/arm64", "qemu-aarch64"},     {"linux/arm/v7", "qemu-arm"},
      {"linux/arm/v6", "qemu-arm"},        {"linux/arm/v5", "qemu-arm"},
      {"linux/riscv64", "qemu-riscv64"},   {"linux/ppc64le", "qemu-ppc64le"},
      {"linux/s390x", "qemu-s390x"},       {"linux/386", "qemu-i386"},
      {"linux/mips64le", "qemu-mips64el"}, {"linux/amd64", "qemu-x86_64"},
  };
  return *table;
}

}  // namespace

std::string BinfmtNameFor(absl::string_view platform) {
  for (const auto& [p, name] : Table()) {
    if (p == platform) return name;
  }
  return "";
}

absl::Status CheckCanRun(absl::string_view platform, const std::string& binfmt_dir) {
  std::string host = oci::Platform::Host().String();
  if (platform.empty() || platform == host) return absl::OkStatus();
  std::string name = BinfmtNameFor(platform);
  if (name.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot run ", platform, " steps on this ",
                                                      host, " host: no emulator is known for it"));
  }
  absl::StatusOr<std::string> entry = common::ReadFile(common::JoinPath(binfmt_dir, name));
  if (!entry.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", platform, " steps on this ", host,
                     " host: no QEMU emulation is registered (", binfmt_dir, "/", name,
                     " is missing; apt-get install qemu-user-static binfmt-support, or write "
                     "/usr/lib/binfmt.d/",
                     name, ".conf into ", binfmt_dir, "/register)"));
  }
  bool enabled = false;
  bool fix_binary = false;
  for (absl::string_view line : absl::StrSplit(*entry, '\n')) {
    if (line == "enabled") enabled = true;
    if (absl::StartsWith(line, "flags:")) fix_binary = absl::StrContains(line.substr(6), 'F');
  }
  if (!enabled) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", platform, " steps: ", binfmt_dir, "/", name, " is disabled"));
  }
  if (!fix_binary) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", platform, " steps: ", binfmt_dir, "/", name,
        " is registered without the F flag, so its interpreter cannot be found inside a step's "
        "root (re-register it with flags F, as Debian's qemu-user-static does)"));
  }
  return absl::OkStatus();
}

std::vector<std::string> EmulatedPlatforms(const std::string& binfmt_dir) {
  std::vector<std::string> out;
  for (const auto& [p, name] : Table()) {
    if (p == oci::Platform::Host().String()) continue;
    if (CheckCanRun(p, binfmt_dir).ok()) out.push_back(p);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<std::string>> ResolveEmulation(absl::string_view spec,
                                                          absl::string_view native,
                                                          const std::string& binfmt_dir) {
  std::string text(absl::StripAsciiWhitespace(spec));
  std::vector<std::string> wanted;
  if (text.empty() || text == "none") return wanted;
  if (text == "auto") {
    wanted = EmulatedPlatforms(binfmt_dir);
  } else {
    for (absl::string_view item : absl::StrSplit(text, ',')) {
      item = absl::StripAsciiWhitespace(item);
      if (item.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--emulate \"", text, "\": an empty entry (want OS/ARCH,...)"));
      }
      std::string platform(item);
      if (platform.find('/') == std::string::npos) platform = absl::StrCat("linux/", platform);
      absl::StatusOr<oci::Platform> p = oci::Platform::Parse(platform);
      if (!p.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("--emulate: ", p.status().message()));
      }
      wanted.push_back(p->String());
    }
    // Only once the whole list reads as platforms: a typo is reported as such.
    for (const std::string& p : wanted) {
      absl::Status can = CheckCanRun(p, binfmt_dir);
      if (!can.ok()) {
        return absl::FailedPreconditionError(absl::StrCat("--emulate ", p, ": ", can.message()));
      }
    }
  }
  std::vector<std::string> out;
  for (std::string& p : wanted) {
    if (p != native) out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (static_cast<int>(out.size()) > kMaxEmulatedPlatforms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--emulate names ", out.size(), " platforms (at most ", kMaxEmulatedPlatforms, ")"));
  }
  return out;
}

}  // namespace farm::worker
