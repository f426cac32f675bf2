#include "worker/run_command.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/sandbox/sandbox.h"

namespace farm::worker {

void OutputTail::Add(absl::string_view line) {
  absl::MutexLock lock(&mu_);
  lines_.emplace_back(line);
  if (lines_.size() > kLines) lines_.pop_front();
}

void OutputTail::CopyTo(farm::v1::StepResult* r) {
  absl::MutexLock lock(&mu_);
  for (const std::string& l : lines_) r->add_output_tail(l);
}

absl::StatusOr<RunOutcome> InterpretSandboxResult(const farm::v1::SandboxResult& sr,
                                                  const absl::Notification* cancel,
                                                  const RunLimits& limits, OutputTail* tail,
                                                  const executor::LogSink& log) {
  RunOutcome outcome;
  farm::v1::StepResult& result = outcome.result;
  result.set_run_micros(sr.run_micros());
  if (sr.error_code() != 0) {
    absl::Status s(static_cast<absl::StatusCode>(sr.error_code()), sr.error_message());
    return common::Annotate(s, "setting up the sandbox");
  }
  if (sr.cancelled() || (cancel != nullptr && cancel->HasBeenNotified())) {
    return absl::CancelledError("RUN cancelled; its processes were killed");
  }
  auto say = [&](const std::string& line) {
    tail->Add(line);
    if (log) log(line, true);
  };
  result.set_exit_code(sr.exit_code());
  result.set_timed_out(sr.timed_out());
  if (sr.timed_out()) {
    say(absl::StrCat("farm: the command exceeded its timeout of ", limits.timeout_seconds,
                     "s; its process tree was killed"));
    if (result.exit_code() == 0) result.set_exit_code(128 + 9);
  }
  if (sr.oom_killed()) {
    say(absl::StrCat("farm: killed by the OOM killer (memory limit ", limits.memory_bytes,
                     " bytes)"));
  }
  outcome.sandbox = sr;
  if (result.exit_code() != 0 || sr.timed_out()) {
    tail->CopyTo(&result);
    return outcome;
  }
  outcome.make_layer = true;
  return outcome;
}

absl::StatusOr<RunOutcome> RunCommand(const farm::v1::SandboxRequest& request,
                                      const executor::LogSink& log,
                                      const absl::Notification* cancel, const RunLimits& limits) {
  OutputTail tail;
  sandbox::SandboxIo io;
  io.on_line = [&](absl::string_view line, bool is_stderr) {
    tail.Add(line);
    if (log) log(line, is_stderr);
  };
  ASSIGN_OR_RETURN(farm::v1::SandboxResult sr, sandbox::RunSandbox(request, io, cancel));
  return InterpretSandboxResult(sr, cancel, limits, &tail, log);
}

namespace {

// A stub's parent directory, opened below the upperdir without following any symlink (the
// command may have replaced any directory on the way with one, pointing anywhere on the
// host), and the stub's own name in it. Fails when the path no longer leads there.
absl::StatusOr<std::pair<common::UniqueFd, std::string>> OpenParent(int upper,
                                                                    const std::string& path) {
  size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? "" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") {
    return absl::InvalidArgumentError("stub path " + path);
  }
  ASSIGN_OR_RETURN(int fd, common::OpenBeneath(upper, parent, O_PATH | O_DIRECTORY));
  return std::make_pair(common::UniqueFd(fd), name);
}

}  // namespace

void RemoveMountStubs(const std::string& upper,
                      const google::protobuf::RepeatedPtrField<farm::v1::SandboxStub>& stubs) {
  // Every path below is resolved from this descriptor with common::OpenBeneath, never as a
  // string: after the command, nothing in the upperdir can be trusted to be what the sandbox
  // made (tests: run_test SymlinkSwapDuringStubCleanupIsHarmless).
  common::UniqueFd root(open(upper.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (root.get() < 0) return;
  std::vector<const farm::v1::SandboxStub*> created, ancestors;
  for (const auto& s : stubs) (s.created() ? created : ancestors).push_back(&s);
  for (auto it = created.rbegin(); it != created.rend(); ++it) {
    auto parent = OpenParent(root.get(), (*it)->path());
    if (!parent.ok()) continue;
    int dir = parent->first.get();
    const char* name = parent->second.c_str();
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if ((*it)->is_dir() && S_ISDIR(st.st_mode)) {
      unlinkat(dir, name, AT_REMOVEDIR);  // fails, and keeps it, if the command put something in it
    } else if (!(*it)->is_dir() && S_ISREG(st.st_mode) && st.st_size == 0) {
      unlinkat(dir, name, 0);
    }
  }
  std::sort(ancestors.begin(), ancestors.end(),
            [](const auto* a, const auto* b) { return a->path().size() > b->path().size(); });
  for (const farm::v1::SandboxStub* s : ancestors) {
    auto parent = OpenParent(root.get(), s->path());
    if (!parent.ok()) continue;
    absl::StatusOr<int> opened = common::OpenBeneath(root.get(), s->path(), O_RDONLY | O_DIRECTORY);
    if (!opened.ok()) continue;
    common::UniqueFd self(*opened);
    struct stat st;
    if (fstat(self.get(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    char opaque[4];
    if (fgetxattr(self.get(), "trusted.overlay.opaque", opaque, sizeof(opaque)) >= 0) continue;
    if ((st.st_mode & 07777) != s->mode() || st.st_uid != s->uid() || st.st_gid != s->gid()) {
      continue;  // the command changed it: it belongs to the layer
    }
    // Only if the name still is the directory just checked; fails, and keeps it, if the
    // command wrote in it.
    struct stat now;
    if (fstatat(parent->first.get(), parent->second.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0 ||
        now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
      continue;
    }
    unlinkat(parent->first.get(), parent->second.c_str(), AT_REMOVEDIR);
  }
}

}  // namespace farm::worker
