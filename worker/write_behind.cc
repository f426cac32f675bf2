#include "worker/write_behind.h"

#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/status_util.h"

namespace farm::worker {

WriteBehind::~WriteBehind() {
  std::thread t;
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
    t = std::move(thread_);
  }
  if (t.joinable()) t.join();  // the loop drains the queue before it stops
  absl::MutexLock l(&mu_);
  for (const Job& j : queue_) close(j.fd);
}

void WriteBehind::Add(const common::Digest& blob, int fd) {
  absl::MutexLock l(&mu_);
  queue_.push_back(Job{blob, fd});
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void WriteBehind::Loop() {
  while (true) {
    Job job;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &WriteBehind::HasWork));
      if (queue_.empty()) return;  // stopping, and everything is stored
      job = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    absl::Status s = common::Annotate(cas_->WriteBlobFromFd(job.blob, job.fd),
                                      absl::StrCat("storing layer ", job.blob.OciString()));
    close(job.fd);
    absl::MutexLock l(&mu_);
    busy_ = false;
    if (!s.ok() && error_.ok()) error_ = s;
  }
}

absl::Status WriteBehind::Sync() {
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(this, &WriteBehind::Drained));
  return error_;
}

}  // namespace farm::worker
