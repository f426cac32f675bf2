#include "oci/platform.h"

#include <sys/utsname.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace farm::oci {

absl::StatusOr<Platform> Platform::Parse(absl::string_view text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty() ||
      (parts.size() == 3 && parts[2].empty())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid platform \"", text, "\": expected os/architecture[/variant], e.g. linux/amd64"));
  }
  Platform p;
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  for (const std::string& part : parts) {
    for (char c : part) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-' && c != '.') {
        return absl::InvalidArgumentError(absl::StrCat(
            "invalid platform \"", text, "\": bad character '", std::string(1, c), "'"));
      }
    }
  }
  return p.Normalized();
}

Platform Platform::Normalized() const {
  Platform p = *this;
  p.os = absl::AsciiStrToLower(p.os);
  if (p.os == "macos") p.os = "darwin";
  std::string arch = absl::AsciiStrToLower(p.architecture);
  std::string variant = absl::AsciiStrToLower(p.variant);
  if (arch == "i386") {
    arch = "386";
    variant.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (variant == "v1") variant.clear();
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (variant == "8" || variant == "v8" || variant == "v8.0") variant.clear();
    if (variant == "9" || variant == "9.0" || variant == "v9.0") variant = "v9";
  } else if (arch == "armhf") {
    arch = "arm";
    variant = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    variant = "v6";
  } else if (arch == "arm") {
    if (variant.empty() || variant == "7") {
      variant = "v7";
    } else if (variant == "5" || variant == "6" || variant == "8") {
      variant = "v" + variant;
    }
  }
  p.architecture = arch;
  p.variant = variant;
  return p;
}

Platform Platform::Host() {
  Platform p;
  p.os = "linux";
  struct utsname u;
  p.architecture = uname(&u) == 0 ? u.machine : "amd64";
  return p.Normalized();
}

std::string Platform::String() const {
  Platform n = Normalized();
  std::string s = absl::StrCat(n.os, "/", n.architecture);
  if (!n.variant.empty()) absl::StrAppend(&s, "/", n.variant);
  return s;
}

std::string NormalizePlatform(absl::string_view text) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  if (t.empty()) return t;
  if (t.find('/') == std::string::npos) t = "linux/" + t;
  absl::StatusOr<Platform> p = Platform::Parse(t);
  return p.ok() ? p->String() : t;
}

}  // namespace farm::oci
