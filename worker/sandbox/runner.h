// The sandbox runner process (internal to //worker/sandbox): see sandbox.h.
#ifndef FARM_WORKER_SANDBOX_RUNNER_H_
#define FARM_WORKER_SANDBOX_RUNNER_H_

namespace farm::worker::sandbox {
namespace internal {

// Reads the request from fd 3, runs it, writes the result to fd 4. Returns the exit code of
// the runner process. `parent` is the pid that spawned the runner.
int RunnerMain(int parent);

}  // namespace internal
}  // namespace farm::worker::sandbox

#endif  // FARM_WORKER_SANDBOX_RUNNER_H_
