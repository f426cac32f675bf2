#include "worker/testing/busybox.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::worker::testing {

absl::Status MakeBusyboxRootfs(const std::string& dir) {
  for (const char* d : {"bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "var", "proc",
                        "sys", "dev", "home"}) {
    RETURN_IF_ERROR(common::MakeDirs(absl::StrCat(dir, "/", d)));
  }
  chmod((dir + "/tmp").c_str(), 01777);
  chmod((dir + "/root").c_str(), 0700);
  ASSIGN_OR_RETURN(std::string busybox, common::ReadFile("/bin/busybox"));
  RETURN_IF_ERROR(common::WriteFileAtomic(dir + "/bin/busybox", busybox, 0755));
  FILE* p = popen("/bin/busybox --list-full", "r");
  if (p == nullptr) return common::ErrnoToStatus(errno, "busybox --list-full");
  std::string list;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) list.append(buf, n);
  if (pclose(p) != 0)
    return absl::InternalError("busybox --list-full failed (busybox-static installed?)");
  for (absl::string_view applet : absl::StrSplit(list, '\n', absl::SkipEmpty())) {
    if (applet == "bin/busybox") continue;
    std::string path = absl::StrCat(dir, "/", applet);
    RETURN_IF_ERROR(common::MakeDirs(path.substr(0, path.rfind('/'))));
    if (symlink("/bin/busybox", path.c_str()) != 0 && errno != EEXIST) {
      return common::ErrnoToStatus(errno, "symlink " + path);
    }
  }
  RETURN_IF_ERROR(common::WriteFileAtomic(
      dir + "/etc/passwd",
      "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"));
  RETURN_IF_ERROR(common::WriteFileAtomic(dir + "/etc/group", "root:x:0:\nnogroup:x:65534:\n"));
  std::string touch = absl::StrCat("find '", dir, "' -exec touch -h -d @0 {} +");
  if (system(touch.c_str()) != 0) return absl::InternalError("touch -d @0 failed");
  return absl::OkStatus();
}

}  // namespace farm::worker::testing
