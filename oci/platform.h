// Platforms ("os/arch[/variant]"): parsing, the one normalization every component uses
// (containerd's: x86_64 → amd64, aarch64 → arm64, arm64/v8 → arm64, armhf → arm/v7, ...), and
// the platform of this host.
//
//   ASSIGN_OR_RETURN(oci::Platform p, oci::Platform::Parse("linux/aarch64"));
//   p.String();                                  // "linux/arm64"
//   oci::Platform::Host().String();            // e.g. "linux/amd64"
//   oci::NormalizePlatform("Linux/X86_64");    // "linux/amd64"
#ifndef FARM_OCI_PLATFORM_H_
#define FARM_OCI_PLATFORM_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::oci {

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64"
  std::string variant;       // "v8", "v7", "" ...
  std::string os_version;
  std::vector<std::string> os_features;

  // "os/arch[/variant]" with containerd's normalization (x86_64 → amd64, aarch64 → arm64,
  // arm64's default variant v8 dropped, armhf → arm/v7, ...). INVALID_ARGUMENT otherwise.
  static absl::StatusOr<Platform> Parse(absl::string_view text);
  // The platform this binary runs on (normalized), e.g. linux/amd64.
  static Platform Host();
  // Normalized "os/arch[/variant]".
  std::string String() const;
  Platform Normalized() const;

  friend bool operator==(const Platform& a, const Platform& b) {
    return a.os == b.os && a.architecture == b.architecture && a.variant == b.variant &&
           a.os_version == b.os_version && a.os_features == b.os_features;
  }
};

// The normalized "os/arch[/variant]" of `text` for matching platforms that come from flags and
// peers: "arch" alone means linux/arch; text that does not parse is returned lowercased (so an
// unknown platform still matches itself); "" stays "".
std::string NormalizePlatform(absl::string_view text);

}  // namespace farm::oci

#endif  // FARM_OCI_PLATFORM_H_
