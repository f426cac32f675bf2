// Running a RUN step's command in the sandbox, and what its end means for the step: output
// lines stream to the step's log as they come (the last 20 are kept for the error report),
// cancellation kills the process tree, and the sandbox's result becomes the step's:
//   - the sandbox could not be set up: that error ("setting up the sandbox: ...");
//   - cancelled: CANCELLED;
//   - the command exceeded its timeout: exit status 137 (unless it set another), and a line
//     saying so in the log and the tail; killed by the OOM killer: a line saying so;
//   - a failure (non-zero exit or timeout): the StepResult with the output tail, no layer;
//   - success: the StepResult, and the upperdir is to become the layer, once the mount points
//     the sandbox had to create are removed from it (RemoveMountStubs).
//
//   ASSIGN_OR_RETURN(RunOutcome outcome, RunCommand(req, log, cancel, {run.timeout_seconds(),
//                                                   limits.memory_bytes}));
//   if (!outcome.make_layer) return outcome.result;
//   RemoveMountStubs(req.upper_dir(), outcome.sandbox.stubs());
#ifndef FARM_WORKER_RUN_COMMAND_H_
#define FARM_WORKER_RUN_COMMAND_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "executor/step_executor.h"
#include "farm/v1/sandbox.pb.h"
#include "farm/v1/step.pb.h"

namespace farm::worker {

// The last lines of a step's output, for its error report. Thread-safe.
class OutputTail {
 public:
  static constexpr size_t kLines = 20;
  void Add(absl::string_view line);
  void CopyTo(farm::v1::StepResult* result);

 private:
  absl::Mutex mu_;
  std::deque<std::string> lines_ ABSL_GUARDED_BY(mu_);
};

// The limits a RUN ran under, for the lines that explain how it ended.
struct RunLimits {
  int64_t timeout_seconds = 0;
  int64_t memory_bytes = 0;
};

struct RunOutcome {
  farm::v1::StepResult result;      // run_micros, exit_code, timed_out; output_tail on failure
  bool make_layer = false;          // the command succeeded: its upperdir becomes the layer
  farm::v1::SandboxResult sandbox;  // as the runner reported it (its stubs, among others)
};

// What the sandbox's result means (see the header comment). Lines it adds go to `tail` and
// `log` (nullable). `cancel` (nullable) counts as cancelled if notified.
absl::StatusOr<RunOutcome> InterpretSandboxResult(const farm::v1::SandboxResult& sandbox,
                                                  const absl::Notification* cancel,
                                                  const RunLimits& limits, OutputTail* tail,
                                                  const executor::LogSink& log);

// Runs `request` (worker::sandbox::RunSandbox), streaming output lines to `log` (nullable),
// and interprets the result. A runner that failed itself (could not start, crashed) is its
// error.
absl::StatusOr<RunOutcome> RunCommand(const farm::v1::SandboxRequest& request,
                                      const executor::LogSink& log,
                                      const absl::Notification* cancel, const RunLimits& limits);

// Removes from an upperdir what the sandbox created only to mount on (`stubs`: empty files and
// directories it made, and ancestors overlayfs copied up only because of them), so none of it
// reaches the layer. What the command changed or filled stays. Every path is resolved from a
// descriptor of `upper` without following symlinks (common::OpenBeneath): a command that
// replaced a stub's parent with a symlink makes the stub stay, never a host file go.
void RemoveMountStubs(const std::string& upper,
                      const google::protobuf::RepeatedPtrField<farm::v1::SandboxStub>& stubs);

}  // namespace farm::worker

#endif  // FARM_WORKER_RUN_COMMAND_H_
