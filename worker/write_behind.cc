#include "worker/write_behind.h"

#include <unistd.h>

#include <memory>

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
}

void WriteBehind::Add(const common::Digest& blob, int fd) {
  // The descriptor is closed with the job, stored or not.
  auto owned = std::shared_ptr<int>(new int(fd), [](int* p) {
    close(*p);
    delete p;
  });
  Add(blob, [cas = cas_, blob, owned]() { return cas->WriteBlobFromFd(blob, *owned); });
}

void WriteBehind::Add(const common::Digest& blob, std::function<absl::Status()> store) {
  absl::MutexLock l(&mu_);
  queue_.push_back(Job{blob, std::move(store)});
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void WriteBehind::Loop() {
  while (true) {
    Job job;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(this, &WriteBehind::HasWork));
      if (queue_.empty()) return;  // stopping, and everything is stored
      job = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    absl::Status s =
        common::Annotate(job.store(), absl::StrCat("storing layer ", job.blob.OciString()));
    job.store = nullptr;  // (a descriptor it holds is closed now)
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
