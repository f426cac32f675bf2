// StepExecutor: runs one step (RUN, COPY/ADD, WORKDIR) of a build on top of its parent layers
// and returns the layer it adds. `farm build` calls it in-process; farm-worker calls it for the
// tasks the scheduler sends. The contract is farm.v1.StepRequest → farm.v1.StepResult
// (protos/farm/v1/step.proto):
//   - a command that runs and fails is an OK result with exit_code != 0 (or timed_out) and the
//     last lines of its output in output_tail;
//   - a request that cannot succeed anywhere is INVALID_ARGUMENT / NOT_FOUND /
//     FAILED_PRECONDITION (a missing COPY source, an unknown USER, a bad --chown name), with a
//     message naming what and where;
//   - host faults are UNAVAILABLE / INTERNAL (another worker might succeed);
//   - CANCELLED when `cancel` was notified (the step's process tree is killed first).
//
//   executor::StepExecutor::Ptr exec = ...;   // e.g. LocalStepExecutor::Create(...)
//   absl::Notification cancel;
//   ASSIGN_OR_RETURN(farm::v1::StepResult r, exec->Execute(request,
//       [](absl::string_view line, bool is_stderr) { std::cerr << line << "\n"; }, &cancel));
//   if (r.exit_code() != 0) ... r.output_tail() ...
#ifndef FARM_EXECUTOR_STEP_EXECUTOR_H_
#define FARM_EXECUTOR_STEP_EXECUTOR_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "farm/v1/step.pb.h"

namespace farm::executor {

// Receives a RUN step's output live, line by line (without the newline). Called from the
// executing thread; must be thread-safe if one sink is shared by concurrent steps.
using LogSink = std::function<void(absl::string_view line, bool is_stderr)>;

class StepExecutor {
 public:
  using Ptr = std::shared_ptr<StepExecutor>;
  virtual ~StepExecutor() = default;

  // Runs `request`. Thread-safe: several Execute calls may run concurrently (independent
  // stages run in parallel). `log` may be null. `cancel` (nullable): when notified, the
  // running step's process tree is killed and CANCELLED is returned. Errors say what went
  // wrong within the step, not which step it was: the caller names it (its description is
  // the caller's own text), so the message never repeats it.
  virtual absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                                       const LogSink& log,
                                                       const absl::Notification* cancel) = 0;

  // Waits until the blob of every layer this executor returned with `store_pending` set is in
  // the CAS; returns the first error storing one (naming the blob). An executor that stores
  // before it returns (every remote one) has nothing to wait for.
  virtual absl::Status Sync() { return absl::OkStatus(); }
};

// Where RUN --mount=type=secret and type=ssh get what they expose. Implementations must be
// thread-safe.
class SecretProvider {
 public:
  using Ptr = std::shared_ptr<SecretProvider>;
  virtual ~SecretProvider() = default;
  // The bytes of secret `id`; NOT_FOUND if the build was not given it.
  virtual absl::StatusOr<std::string> GetSecret(absl::string_view id) = 0;
  // The path of an ssh-agent socket on this host for `id` ("default" unless the Dockerfile
  // names one); NOT_FOUND if there is none.
  virtual absl::StatusOr<std::string> GetSshAgentSocket(absl::string_view id) {
    return absl::NotFoundError(absl::StrCat("no ssh agent \"", id, "\""));
  }
};

}  // namespace farm::executor

#endif  // FARM_EXECUTOR_STEP_EXECUTOR_H_
