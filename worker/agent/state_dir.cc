#include "worker/agent/state_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::agent {
namespace {

constexpr char kIdFile[] = "worker-id";
constexpr size_t kMaxIdLength = 128;

bool ValidId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.' && c != '_') return false;
  }
  return true;
}

}  // namespace

std::string NewWorkerId() {
  char host[256] = {0};
  std::string name = gethostname(host, sizeof(host) - 1) == 0 ? host : "";
  std::string clean;
  for (char c : name) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.') clean.push_back(c);
  }
  if (clean.empty()) clean = "worker";
  if (clean.size() > 64) clean.resize(64);
  std::random_device rd;
  return absl::StrFormat("%s-%08x", clean, rd());
}

absl::StatusOr<std::unique_ptr<StateDir>> StateDir::Open(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("no state directory");
  auto where = [&](const absl::Status& s) {
    return common::Annotate(s, absl::StrCat("state directory ", dir));
  };
  RETURN_IF_ERROR(where(common::MakeDirs(dir, 0700)));
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) return where(common::ErrnoToStatus(errno, "stat"));
  if (!S_ISDIR(st.st_mode)) return where(absl::FailedPreconditionError("not a directory"));
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return where(common::ErrnoToStatus(errno, "not writable"));
  }
  auto lock = common::HomeLock::Acquire(dir, absl::ZeroDuration());
  if (!lock.ok()) {
    if (!absl::IsDeadlineExceeded(lock.status())) return where(lock.status());
    auto holder = common::ReadFile(common::JoinPath(dir, "lock"));
    std::string pid = holder.ok() ? std::string(absl::StripAsciiWhitespace(*holder)) : "";
    return absl::FailedPreconditionError(absl::StrCat(
        "state directory ", dir, " is in use by another farm-worker",
        pid.empty() ? "" : absl::StrCat(" (pid ", pid, ")"), "; give each worker its own --dir"));
  }
  std::string id_path = common::JoinPath(dir, kIdFile);
  std::string id;
  if (common::PathExists(id_path)) {
    absl::StatusOr<std::string> text = common::ReadFile(id_path);
    if (!text.ok()) return where(text.status());
    id = std::string(absl::StripAsciiWhitespace(*text));
    if (!ValidId(id)) {
      return absl::FailedPreconditionError(
          absl::StrCat(id_path, ": malformed worker id \"", absl::CHexEscape(id.substr(0, 64)),
                       "\" (letters, digits, '-', '.', '_'; at most ", kMaxIdLength,
                       " characters); remove the file to get a new id"));
    }
  } else {
    id = NewWorkerId();
    RETURN_IF_ERROR(where(common::WriteFileAtomic(id_path, id + "\n", 0644)));
  }
  return std::unique_ptr<StateDir>(new StateDir(dir, std::move(id), *std::move(lock)));
}

}  // namespace farm::worker::agent
