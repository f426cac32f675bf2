// Outbox: what farm-worker has to tell the scheduler, in the order it happened, waiting for
// the stream: tasks' output lines (TaskLog), their results (TaskResult), and other messages
// (the draining heartbeat at shutdown). It lets tasks keep running while the scheduler is
// unreachable, within a memory bound:
//   - Output lines count against `max_log_bytes` (their length plus kLogOverhead). A line that
//     does not fit is dropped and counted for its task; the next line kept for that task, or
//     else its result, is preceded by one stderr line saying how many were dropped.
//   - Results and other messages are never dropped (a result's notice may exceed the budget:
//     it is the last word on that task's output).
//
//   Outbox outbox(8 << 20);
//   outbox.AddLog("t1", "lease-1", "compiling...", /*is_stderr=*/false);
//   outbox.AddResult(std::move(result));
//   while (!outbox.empty()) {
//     Outbox::Entry e = outbox.Pop();
//     if (!stream->Write(e.msg)) { outbox.PutBack(std::move(e)); break; }
//   }
//
// Not thread-safe: farm-worker's Session guards it with the lock its writer waits on.
#ifndef FARM_WORKER_AGENT_OUTBOX_H_
#define FARM_WORKER_AGENT_OUTBOX_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "farm/v1/scheduler.pb.h"

namespace farm::worker::agent {

class Outbox {
 public:
  // Counted per output line beyond its text: ids and framing, roughly.
  static constexpr int64_t kLogOverhead = 64;

  explicit Outbox(int64_t max_log_bytes) : max_log_bytes_(max_log_bytes) {}

  // A line of a task's output.
  void AddLog(const std::string& task_id, const std::string& lease_id, absl::string_view line,
              bool is_stderr);
  // A task's result.
  void AddResult(farm::v1::TaskResult result);
  // Any other message; not counted against the budget.
  void AddMessage(farm::v1::WorkerMessage msg);

  struct Entry {
    farm::v1::WorkerMessage msg;
    int64_t log_bytes = 0;  // what it counts against the budget
  };
  bool empty() const { return queue_.empty(); }
  int size() const { return static_cast<int>(queue_.size()); }
  // Removes and returns the oldest message. Requires !empty().
  Entry Pop();
  // Returns a message that could not be sent to the front, to go first on the next stream.
  void PutBack(Entry entry);

  // Results waiting.
  int results() const;
  // The tasks whose results wait here (task and lease ids): still this worker's until
  // delivered, so a new hello lists them.
  std::vector<farm::v1::RunningTask> FinishedTasks() const;
  // Bytes of output lines waiting (against max_log_bytes).
  int64_t log_bytes() const { return log_bytes_; }
  // Output lines dropped since this outbox was made.
  int64_t lines_dropped() const { return lines_dropped_; }

 private:
  const int64_t max_log_bytes_;
  std::deque<Entry> queue_;
  int64_t log_bytes_ = 0;
  absl::flat_hash_map<std::string, int64_t> dropped_;  // by task, not yet noticed
  int64_t lines_dropped_ = 0;
};

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_OUTBOX_H_
