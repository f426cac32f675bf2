#include "worker/agent/outbox.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace farm::worker::agent {
namespace {

farm::v1::WorkerMessage LogMessage(const std::string& task_id, const std::string& lease_id,
                                   absl::string_view line, bool is_stderr) {
  farm::v1::WorkerMessage m;
  farm::v1::TaskLog* l = m.mutable_log();
  l->set_task_id(task_id);
  l->set_lease_id(lease_id);
  l->set_stderr(is_stderr);
  l->set_line(std::string(line));
  return m;
}

std::string DroppedNotice(int64_t n) {
  return absl::StrCat("farm-worker: ", n, " line", n == 1 ? "" : "s",
                      " of output dropped here (the scheduler was unreachable or too slow)");
}

}  // namespace

void Outbox::AddLog(const std::string& task_id, const std::string& lease_id, absl::string_view line,
                    bool is_stderr) {
  int64_t cost = static_cast<int64_t>(line.size()) + kLogOverhead;
  if (log_bytes_ + cost > max_log_bytes_) {
    ++dropped_[task_id];
    ++lines_dropped_;
    return;
  }
  auto dropped = dropped_.find(task_id);
  if (dropped != dropped_.end()) {
    std::string notice = DroppedNotice(dropped->second);
    Entry e{LogMessage(task_id, lease_id, notice, true),
            static_cast<int64_t>(notice.size()) + kLogOverhead};
    log_bytes_ += e.log_bytes;
    queue_.push_back(std::move(e));
    dropped_.erase(dropped);
  }
  log_bytes_ += cost;
  queue_.push_back(Entry{LogMessage(task_id, lease_id, line, is_stderr), cost});
}

void Outbox::AddResult(farm::v1::TaskResult result) {
  auto dropped = dropped_.find(result.task_id());
  if (dropped != dropped_.end()) {
    // The last word on its output, even over the budget.
    queue_.push_back(Entry{
        LogMessage(result.task_id(), result.lease_id(), DroppedNotice(dropped->second), true), 0});
    dropped_.erase(dropped);
  }
  Entry e;
  *e.msg.mutable_result() = std::move(result);
  queue_.push_back(std::move(e));
}

void Outbox::AddMessage(farm::v1::WorkerMessage msg) { queue_.push_back(Entry{std::move(msg), 0}); }

Outbox::Entry Outbox::Pop() {
  Entry e = std::move(queue_.front());
  queue_.pop_front();
  log_bytes_ -= e.log_bytes;
  return e;
}

void Outbox::PutBack(Entry entry) {
  log_bytes_ += entry.log_bytes;
  queue_.push_front(std::move(entry));
}

int Outbox::results() const {
  int n = 0;
  for (const Entry& e : queue_) n += e.msg.has_result() ? 1 : 0;
  return n;
}

std::vector<farm::v1::RunningTask> Outbox::FinishedTasks() const {
  std::vector<farm::v1::RunningTask> out;
  for (const Entry& e : queue_) {
    if (!e.msg.has_result()) continue;
    farm::v1::RunningTask r;
    r.set_task_id(e.msg.result().task_id());
    r.set_lease_id(e.msg.result().lease_id());
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace farm::worker::agent
