// StateDir: farm-worker's hold on its state directory (--dir): an exclusive lock, so exactly
// one farm-worker uses a directory (several workers on one machine each have their own), and
// the worker's stable id, created on first use and kept in `<dir>/worker-id` so it survives
// restarts and reconnects.
//
//   ASSIGN_OR_RETURN(auto state, worker::agent::StateDir::Open("/var/lib/farm-worker"));
//   hello.set_worker_id(state->worker_id());   // e.g. "build-7.example.com-3f9a0c1e"
#ifndef FARM_WORKER_AGENT_STATE_DIR_H_
#define FARM_WORKER_AGENT_STATE_DIR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/farm_home.h"

namespace farm::worker::agent {

class StateDir {
 public:
  // Creates `dir` (0700) if missing and locks it. FAILED_PRECONDITION naming the holder's pid
  // when another process holds it, or when `<dir>/worker-id` is unreadable or malformed.
  static absl::StatusOr<std::unique_ptr<StateDir>> Open(const std::string& dir);

  const std::string& path() const { return path_; }
  const std::string& worker_id() const { return worker_id_; }

 private:
  StateDir(std::string path, std::string worker_id, std::unique_ptr<common::HomeLock> lock)
      : path_(std::move(path)), worker_id_(std::move(worker_id)), lock_(std::move(lock)) {}
  std::string path_;
  std::string worker_id_;
  std::unique_ptr<common::HomeLock> lock_;
};

// A fresh worker id: this host's name and 8 random hex digits ("build-7-3f9a0c1e").
std::string NewWorkerId();

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_STATE_DIR_H_
