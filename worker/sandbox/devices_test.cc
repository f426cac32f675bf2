// The device rules on cgroup v2: the eBPF program attached for real to a cgroup of a privately
// mounted cgroup2 hierarchy (this machine's controllers are on v1, but v2 can be mounted beside
// them and device programs need no controller), with a forked child trying device nodes.
#include "worker/sandbox/devices.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fs.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

namespace farm::worker::sandbox {
namespace {

TEST(DevicesTest, V1Strings) {
  std::vector<std::string> v1;
  for (const DeviceRule& r : StandardDeviceRules()) v1.push_back(r.V1String());
  EXPECT_EQ(v1[0], "c *:* m");
  EXPECT_EQ(v1[2], "c 1:3 rwm");
  EXPECT_EQ(v1.back(), "c 136:* rwm");
}

TEST(DevicesTest, V2ProgramAllowsOnlyTheStandardDevices) {
  auto tmp = common::TempDir::Create("devices-test");
  ASSERT_OK(tmp);
  std::string cg = tmp->path() + "/cgroup2";
  ASSERT_OK(common::MakeDirs(cg));
  ASSERT_EQ(mount("cgroup2", cg.c_str(), "cgroup2", 0, nullptr), 0) << strerror(errno);
  std::string run = absl::StrCat(cg, "/farm-devices-test-", getpid());
  ASSERT_EQ(mkdir(run.c_str(), 0755), 0) << strerror(errno);
  absl::Status attached = AttachDeviceFilter(run, StandardDeviceRules());
  std::map<std::string, int> r;
  if (attached.ok()) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    std::string nodes = tmp->path() + "/nodes";
    ASSERT_OK(common::MakeDirs(nodes));
    pid_t pid = fork();
    if (pid == 0) {
      close(p[0]);
      std::string self = absl::StrCat(getpid());
      int fd = open((run + "/cgroup.procs").c_str(), O_WRONLY);
      if (fd < 0 || write(fd, self.data(), self.size()) < 0) _exit(3);
      close(fd);
      std::string out;
      auto rc = [&](const char* name, int result) {
        absl::StrAppend(&out, name, "=", result < 0 ? errno : 0, "\n");
        if (result >= 0 && std::string(name).rfind("open", 0) == 0) close(result);
      };
      rc("open_null", open("/dev/null", O_RDWR));
      rc("open_urandom", open("/dev/urandom", O_RDONLY));
      std::string kmsg = nodes + "/kmsg", loop = nodes + "/loop";
      rc("mknod_kmsg", mknod(kmsg.c_str(), S_IFCHR | 0600, makedev(1, 11)));
      rc("open_kmsg", open(kmsg.c_str(), O_RDONLY));
      rc("mknod_block", mknod(loop.c_str(), S_IFBLK | 0600, makedev(7, 0)));
      rc("open_block", open(loop.c_str(), O_RDONLY));
      (void)!write(p[1], out.data(), out.size());
      _exit(0);
    }
    close(p[1]);
    std::string text;
    char buf[1024];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      std::vector<std::string> kv = absl::StrSplit(line, '=');
      r[kv[0]] = std::stoi(kv[1]);
    }
  }
  rmdir(run.c_str());
  umount2(cg.c_str(), MNT_DETACH);
  ASSERT_OK(attached);
  EXPECT_EQ(r["open_null"], 0);
  EXPECT_EQ(r["open_urandom"], 0);
  EXPECT_EQ(r["mknod_kmsg"], 0);  // creating nodes is allowed (m), as in Docker
  EXPECT_EQ(r["open_kmsg"], EPERM);
  EXPECT_EQ(r["mknod_block"], 0);
  EXPECT_EQ(r["open_block"], EPERM);
}

}  // namespace
}  // namespace farm::worker::sandbox
