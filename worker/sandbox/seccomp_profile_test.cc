// The seccomp profile format, and the default profile compiled and installed for real in a
// forked child that then tries the calls Docker's profile refuses.
#include "worker/sandbox/seccomp_profile.h"

#include <linux/capability.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/testing/status_matchers.h"
#include "gtest/gtest.h"

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

namespace farm::worker::sandbox {
namespace {

// Docker's default capability set.
const std::vector<int> kDockerCaps = {
    CAP_CHOWN,   CAP_DAC_OVERRIDE, CAP_FSETID,           CAP_FOWNER,
    CAP_MKNOD,   CAP_NET_RAW,      CAP_SETGID,           CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP,      CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
    CAP_KILL,    CAP_AUDIT_WRITE};

TEST(SeccompProfileTest, TheDefaultProfileParses) {
  auto p = DefaultSeccompProfile();
  ASSERT_OK(p);
  EXPECT_EQ((*p)->default_action, (SeccompAction{SeccompAction::kErrno, EPERM}));
  ASSERT_TRUE((*p)->has_newer);
  EXPECT_EQ((*p)->newer_action, (SeccompAction{SeccompAction::kErrno, ENOSYS}));
  EXPECT_EQ((*p)->arches.at("x86_64"), (std::vector<std::string>{"x86", "x32"}));
  // keyctl is named nowhere: refused by default.
  for (const SeccompRule& r : (*p)->rules) {
    for (const std::string& n : r.names) EXPECT_NE(n, "keyctl") << "line " << r.line;
  }
}

TEST(SeccompProfileTest, FormatAndErrors) {
  auto p = SeccompProfile::Parse(
      "default errno EPERM  # comment\n"
      "arch x86_64 x86\n"
      "read write\n"
      "[when cap CAP_SYS_ADMIN !arch s390x]\n"
      "mount -> errno 13\n"
      "[when kernel>=4.8]\n"
      "clone if arg0 & 0x7e020000 == 0 and arg1 != 5\n",
      "t");
  ASSERT_OK(p);
  ASSERT_EQ(p->rules.size(), 3u);
  EXPECT_EQ(p->rules[0].names, (std::vector<std::string>{"read", "write"}));
  EXPECT_TRUE(p->rules[0].when.empty());
  EXPECT_EQ(p->rules[1].action, (SeccompAction{SeccompAction::kErrno, 13}));
  ASSERT_EQ(p->rules[1].when.size(), 2u);
  EXPECT_EQ(p->rules[1].when[0].cap, CAP_SYS_ADMIN);
  EXPECT_TRUE(p->rules[1].when[1].negated);
  ASSERT_EQ(p->rules[2].args.size(), 2u);
  EXPECT_EQ(p->rules[2].args[0].op, SeccompArg::kMaskedEq);
  EXPECT_EQ(p->rules[2].args[0].mask, 0x7e020000u);
  EXPECT_EQ(p->rules[2].args[1].index, 1);
  EXPECT_EQ(p->rules[2].when[0].major, 4);
  EXPECT_FALSE(p->has_newer);

  struct Bad {
    const char* text;
    const char* error;
  };
  for (const Bad& b : {Bad{"arch x86_64\ndefault errno EWHAT\n", "t:2: unknown errno \"EWHAT\""},
                       Bad{"arch x86_64\n[when cap CAP_NOPE]\n", "t:2: unknown capability"},
                       Bad{"arch nosuch\n", "t:1: unknown architecture \"nosuch\""},
                       Bad{"arch x86_64\nread if arg9 == 1\n", "t:2: want arg0..arg5"},
                       Bad{"arch x86_64\nread if arg0 ~ 1\n", "t:2: unknown operator"},
                       Bad{"arch x86_64\nread write if arg0 == 1\n", "t:2: a rule with conditions"},
                       Bad{"arch x86_64\n[sometimes]\n", "t:2: want [always]"},
                       Bad{"read\n", "t: no arch line"}}) {
    auto bad = SeccompProfile::Parse(b.text, "t");
    ASSERT_FALSE(bad.ok()) << b.text;
    EXPECT_TRUE(absl::StartsWith(bad.status().message(), b.error)) << bad.status();
  }
}

// Installs `prog` in a forked child, runs the probes there, returns name → errno (0: success).
std::map<std::string, int> Probe(const std::vector<sock_filter>& prog) {
  int p[2];
  EXPECT_EQ(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (!InstallSeccomp(prog).ok()) _exit(3);
    std::string out;
    auto report = [&](const char* name, long rc) {
      absl::StrAppend(&out, name, "=", rc < 0 ? errno : 0, "\n");
    };
    report("getpid", syscall(SYS_getpid));
    report("keyctl", syscall(SYS_keyctl, 0 /*KEYCTL_GET_KEYRING_ID*/, -3, 0));
    report("add_key", syscall(SYS_add_key, "user", "x", "y", 1, -3));
    report("unshare_user", syscall(SYS_unshare, CLONE_NEWUSER));
    report("unshare_net", syscall(SYS_unshare, CLONE_NEWNET));
    report("clone_newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    report("clone3", syscall(SYS_clone3, nullptr, 0));
    report("mount", syscall(SYS_mount, "none", "/", "tmpfs", 0, nullptr));
    report("newer_463", syscall(463, 0, 0, 0));
    report("newer_1000", syscall(1000, 0, 0, 0));
    report("personality_query", syscall(SYS_personality, 0xffffffffUL));
    report("personality_exec", syscall(SYS_personality, READ_IMPLIES_EXEC));
    long vsock = syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0);
    report("socket_vsock", vsock);
    long unix_socket = syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    report("socket_unix", unix_socket);
    pid_t child = fork();
    if (child == 0) _exit(0);
    report("fork", child);
    if (child > 0) waitpid(child, nullptr, 0);
    (void)!write(p[1], out.data(), out.size());
    _exit(0);
  }
  close(p[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::map<std::string, int> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(line, '=');
    out[kv[0]] = std::stoi(kv[1]);
  }
  return out;
}

TEST(SeccompProfileTest, TheDefaultProfileRefusesWhatDockerRefuses) {
  auto profile = DefaultSeccompProfile();
  ASSERT_OK(profile);
  SeccompTarget t;
  t.caps = kDockerCaps;
  auto prog = CompileSeccomp(**profile, t);
  ASSERT_OK(prog);
  std::map<std::string, int> r = Probe(*prog);
  EXPECT_EQ(r["getpid"], 0);
  EXPECT_EQ(r["fork"], 0);
  EXPECT_EQ(r["socket_unix"], 0);
  EXPECT_EQ(r["personality_query"], 0);
  EXPECT_EQ(r["keyctl"], EPERM);
  EXPECT_EQ(r["add_key"], EPERM);
  EXPECT_EQ(r["unshare_user"], EPERM);
  EXPECT_EQ(r["unshare_net"], EPERM);
  EXPECT_EQ(r["clone_newns"], EPERM);
  EXPECT_EQ(r["mount"], EPERM);
  EXPECT_EQ(r["socket_vsock"], EPERM);
  EXPECT_EQ(r["personality_exec"], EPERM);
  // Calls newer than the profile, and clone3 (flags in memory), are "not implemented".
  EXPECT_EQ(r["clone3"], ENOSYS);
  EXPECT_EQ(r["newer_463"], ENOSYS);
  EXPECT_EQ(r["newer_1000"], ENOSYS);
}

TEST(SeccompProfileTest, CapabilitySectionsFollowTheStepsCapabilities) {
  auto profile = DefaultSeccompProfile();
  ASSERT_OK(profile);
  SeccompTarget t;
  t.caps = kDockerCaps;
  t.caps.push_back(CAP_SYS_ADMIN);
  auto prog = CompileSeccomp(**profile, t);
  ASSERT_OK(prog);
  std::map<std::string, int> r = Probe(*prog);
  // The filter lets them through; the kernel decides (EFAULT/EINVAL for the bad arguments).
  EXPECT_NE(r["clone3"], ENOSYS);
  EXPECT_NE(r["mount"], EPERM);
  EXPECT_EQ(r["keyctl"], EPERM);  // never allowed
}

}  // namespace
}  // namespace farm::worker::sandbox
