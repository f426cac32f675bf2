#include "worker/subids.h"

#include <pwd.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker {
namespace {

absl::Status CheckRange(uint64_t start, uint64_t count, absl::string_view what) {
  if (count < kRootlessIdCount) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " holds ", count, " ids; rootless steps need at least ", kRootlessIdCount));
  }
  if (start == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " contains host id 0 (root): not a subordinate range"));
  }
  if (start + kRootlessIdCount - 1 > 0xfffffffeu) {
    return absl::InvalidArgumentError(absl::StrCat(what, " runs past the largest id"));
  }
  return absl::OkStatus();
}

// The start of the first range of `user` in `file` that is big enough.
absl::StatusOr<uint32_t> FindIn(absl::string_view user, int64_t uid, absl::string_view text,
                                absl::string_view file) {
  std::string smaller;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, ':');
    if (f.size() != 3) continue;
    bool mine = f[0] == user || (uid >= 0 && f[0] == absl::StrCat(uid));
    uint64_t start = 0, count = 0;
    if (!mine || !absl::SimpleAtoi(f[1], &start) || !absl::SimpleAtoi(f[2], &count)) continue;
    absl::Status ok = CheckRange(start, count, absl::StrCat(file, "'s range ", f[1], ":", f[2]));
    if (ok.ok()) return static_cast<uint32_t>(start);
    if (smaller.empty()) smaller = std::string(ok.message());
  }
  if (!smaller.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(user, ": ", smaller));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no subordinate ids for ", user, " in ", file, " (add a line such as \"", user,
                   ":100000:65536\", e.g. with usermod --add-subuids)"));
}

}  // namespace

absl::StatusOr<SubIdRange> ParseSubIdRange(absl::string_view text) {
  std::vector<absl::string_view> f = absl::StrSplit(text, ':');
  uint64_t start = 0, count = 0;
  if (f.size() != 2 || !absl::SimpleAtoi(f[0], &start) || !absl::SimpleAtoi(f[1], &count)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": want START:COUNT"));
  }
  RETURN_IF_ERROR(CheckRange(start, count, absl::StrCat("the range ", text)));
  return SubIdRange{static_cast<uint32_t>(start), static_cast<uint32_t>(start), kRootlessIdCount};
}

absl::StatusOr<SubIdRange> FindSubIds(absl::string_view user, int64_t uid, absl::string_view subuid,
                                      absl::string_view subgid, absl::string_view subuid_name,
                                      absl::string_view subgid_name) {
  SubIdRange r;
  ASSIGN_OR_RETURN(r.uid_start, FindIn(user, uid, subuid, subuid_name));
  ASSIGN_OR_RETURN(r.gid_start, FindIn(user, uid, subgid, subgid_name));
  r.count = kRootlessIdCount;
  return r;
}

absl::StatusOr<SubIdRange> SubIdsOfUser(absl::string_view user, const std::string& subuid_path,
                                        const std::string& subgid_path) {
  if (user.empty()) return absl::InvalidArgumentError("empty user name");
  int64_t uid = -1;
  std::string name(user);
  if (struct passwd* pw = getpwnam(name.c_str())) uid = pw->pw_uid;
  std::string texts[2];
  const std::string* paths[2] = {&subuid_path, &subgid_path};
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> t = common::ReadFile(*paths[i]);
    if (!t.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("reading ", *paths[i], ": ", t.status().message()));
    }
    texts[i] = *std::move(t);
  }
  return FindSubIds(user, uid, texts[0], texts[1], subuid_path, subgid_path);
}

}  // namespace farm::worker
