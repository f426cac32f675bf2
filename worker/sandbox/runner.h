// The sandbox runner process (internal to //worker/sandbox): see sandbox.h.
#ifndef FARM_WORKER_SANDBOX_RUNNER_H_
#define FARM_WORKER_SANDBOX_RUNNER_H_

#include <string>

namespace farm::worker::sandbox {
namespace internal {

// The steps' seccomp filter (the default profile for the default capabilities, for this
// kernel) as SandboxRequest.seccomp_filter bytes, compiled once per process; null if it does not
// compile (the runner then compiles it itself and reports the error).
const std::string* PrecompiledStepFilter();

// Reads the request from fd 3, runs it, writes the result to fd 4. Returns the exit code of
// the runner process. `parent` is the pid that spawned the runner.
int RunnerMain(int parent);

}  // namespace internal
}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_RUNNER_H_
