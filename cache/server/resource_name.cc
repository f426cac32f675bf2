#include "cache/server/resource_name.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace farm::cache::server {
namespace {

bool IsReserved(absl::string_view segment) {
  for (absl::string_view r : {"blobs", "uploads", "actions", "actionResults", "operations",
                              "capabilities", "compressed-blobs"}) {
    if (segment == r) return true;
  }
  return false;
}

absl::Status Bad(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("invalid resource name \"", name, "\": ", why));
}

// Parses "{hash}/{size}" from segments [i, i+2) (also recognizing the digest-function and
// compressed forms to reject them by name).
absl::StatusOr<common::Digest> ParseDigestSegments(absl::string_view name,
                                                   const std::vector<absl::string_view>& segs,
                                                   size_t i, bool allow_trailing) {
  if (i < segs.size() && (segs[i] == "sha256tree" || segs[i] == "blake3" || segs[i] == "gitsha1")) {
    return Bad(name, absl::StrCat("digest function ", segs[i], " is not supported (SHA-256 only)"));
  }
  if (i + 2 > segs.size()) return Bad(name, "want .../{hash}/{size}");
  if (!allow_trailing && i + 2 != segs.size()) return Bad(name, "unexpected segments after {size}");
  if (!common::IsValidSha256Hex(segs[i])) {
    return Bad(name, absl::StrCat("\"", segs[i], "\" is not a SHA-256 hash (64 lowercase hex)"));
  }
  int64_t size;
  if (!absl::SimpleAtoi(segs[i + 1], &size) || size < 0 || segs[i + 1].empty() ||
      segs[i + 1][0] == '+' || segs[i + 1][0] == '-') {
    return Bad(name, absl::StrCat("\"", segs[i + 1], "\" is not a size"));
  }
  return common::Digest{std::string(segs[i]), size};
}

}  // namespace

absl::Status ValidateInstanceName(absl::string_view instance) {
  if (instance.empty()) return absl::OkStatus();
  if (instance.size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("instance name is ", instance.size(), " bytes long; the limit is 1024"));
  }
  for (char c : instance) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat("instance name \"", absl::CHexEscape(instance),
                       "\" contains a character that is not printable ASCII"));
    }
  }
  for (absl::string_view seg : absl::StrSplit(instance, '/')) {
    if (seg.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("instance name \"", instance, "\" has an empty segment"));
    }
    if (IsReserved(seg)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "instance name \"", instance, "\" contains the reserved segment \"", seg, "\""));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReadResource> ParseReadResource(absl::string_view name) {
  std::vector<absl::string_view> segs = absl::StrSplit(name, '/');
  size_t i = 0;
  while (i < segs.size() && segs[i] != "blobs" && segs[i] != "compressed-blobs") ++i;
  if (i == segs.size()) return Bad(name, "want [{instance}/]blobs/{hash}/{size}");
  if (segs[i] == "compressed-blobs") {
    return Bad(name, "compressed blobs are not supported (this server advertises none)");
  }
  ReadResource r;
  r.instance = absl::StrJoin(segs.begin(), segs.begin() + i, "/");
  if (i > 0 && r.instance.empty()) return Bad(name, "leading \"/\"");
  if (absl::Status s = ValidateInstanceName(r.instance); !s.ok()) return Bad(name, s.message());
  absl::StatusOr<common::Digest> d = ParseDigestSegments(name, segs, i + 1, false);
  if (!d.ok()) return d.status();
  r.digest = *std::move(d);
  return r;
}

absl::StatusOr<WriteResource> ParseWriteResource(absl::string_view name) {
  std::vector<absl::string_view> segs = absl::StrSplit(name, '/');
  size_t i = 0;
  while (i < segs.size() && segs[i] != "uploads") ++i;
  if (i == segs.size()) {
    return Bad(name, "want [{instance}/]uploads/{uuid}/blobs/{hash}/{size}");
  }
  WriteResource w;
  w.instance = absl::StrJoin(segs.begin(), segs.begin() + i, "/");
  if (i > 0 && w.instance.empty()) return Bad(name, "leading \"/\"");
  if (absl::Status s = ValidateInstanceName(w.instance); !s.ok()) return Bad(name, s.message());
  if (i + 1 >= segs.size() || segs[i + 1].empty()) return Bad(name, "missing the upload id");
  w.uuid = std::string(segs[i + 1]);
  if (i + 2 >= segs.size()) return Bad(name, "want .../uploads/{uuid}/blobs/{hash}/{size}");
  if (segs[i + 2] == "compressed-blobs") {
    return Bad(name, "compressed blobs are not supported (this server advertises none)");
  }
  if (segs[i + 2] != "blobs") return Bad(name, "want .../uploads/{uuid}/blobs/{hash}/{size}");
  absl::StatusOr<common::Digest> d = ParseDigestSegments(name, segs, i + 3, true);
  if (!d.ok()) return d.status();
  w.digest = *std::move(d);
  return w;
}

}  // namespace farm::cache::server
