#include "common/farm_home.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::common {

absl::StatusOr<std::string> FarmHome() {
  std::string home;
  const char* env = getenv("FARM_HOME");
  if (env != nullptr && *env != '\0') {
    home = env;
  } else {
    const char* user_home = getenv("HOME");
    if (user_home == nullptr || *user_home == '\0') {
      return absl::FailedPreconditionError("neither FARM_HOME nor HOME is set");
    }
    home = JoinPath(user_home, ".local/share/farm");
  }
  RETURN_IF_ERROR(Annotate(MakeDirs(home, 0700), "creating FARM_HOME"));
  return home;
}

absl::StatusOr<std::unique_ptr<HomeLock>> HomeLock::Acquire(
    const std::string& home, absl::Duration timeout,
    const std::function<void(const std::string&)>& on_wait) {
  std::string path = JoinPath(home, "lock");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  absl::Time deadline =
      timeout == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + timeout;
  bool told = false;
  absl::Duration backoff = absl::Milliseconds(5);
  while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) {
      int e = errno;
      close(fd);
      return ErrnoToStatus(e, absl::StrCat("flock ", path));
    }
    if (!told && on_wait) {
      char buf[32] = {0};
      ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
      std::string holder = n > 0 ? std::string(absl::StripAsciiWhitespace(buf)) : "?";
      on_wait(absl::StrCat("waiting for another farm process (pid ", holder, ") using ", home));
      told = true;
    }
    if (absl::Now() >= deadline) {
      close(fd);
      return absl::DeadlineExceededError(absl::StrCat("timed out waiting for the lock on ", path));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Milliseconds(200));
  }
  std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) == 0) {
    ssize_t ignored = pwrite(fd, pid.data(), pid.size(), 0);
    (void)ignored;
  }
  return std::unique_ptr<HomeLock>(new HomeLock(fd));
}

HomeLock::~HomeLock() {
  flock(fd_, LOCK_UN);
  close(fd_);
}

}  // namespace farm::common
