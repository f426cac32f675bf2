#include "common/metrics/promtool_check.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace farm::common::metrics {

PromtoolResult PromtoolCheckMetrics(const std::string& text) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path =
      absl::StrCat(tmp ? tmp : "/tmp", "/exposition-", getpid(), "-", counter++, ".txt");
  PromtoolResult r;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    if (!f) {
      r.output = "cannot write " + path;
      return r;
    }
  }
  const std::string cmd = absl::StrCat(kPromtoolPath, " check metrics < '", path, "' 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    r.output = "cannot run " + cmd;
    return r;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  unlink(path.c_str());
  return r;
}

}  // namespace farm::common::metrics
