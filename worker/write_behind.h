// WriteBehind: stores layer blobs in the CAS on a thread of its own, in the order given, so a
// build's next step starts while the previous layer is still being written (and synced) to
// disk. `farm build` uses it (LocalStepExecutor::Options::store_layers_behind); the caller
// records a step in the action cache, and assembles images, only after Sync() returned OK, so
// nothing ever names a blob the CAS does not have.
//
//   WriteBehind behind(cas);
//   behind.Add(blob, spool_fd);          // takes the descriptor
//   RETURN_IF_ERROR(behind.Sync());      // every blob added so far is stored
#ifndef FARM_WORKER_WRITE_BEHIND_H_
#define FARM_WORKER_WRITE_BEHIND_H_

#include <deque>
#include <functional>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "cache/blob_store.h"
#include "common/digest.h"

namespace farm::worker {

class WriteBehind {
 public:
  explicit WriteBehind(std::shared_ptr<cache::BlobStore> cas) : cas_(std::move(cas)) {}
  // Stores what is still queued, then stops.
  ~WriteBehind();
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Queues `blob`, the first blob.size_bytes bytes of `fd` (read with pread; the descriptor is
  // closed once stored). Thread-safe.
  void Add(const common::Digest& blob, int fd);
  // Queues `store`, which stores `blob` (e.g. by archiving its tree again). Thread-safe.
  void Add(const common::Digest& blob, std::function<absl::Status()> store);

  // Waits until every blob added before the call is stored. Returns the first error of any
  // store since the WriteBehind was made (it stays: a build whose layer could not be stored
  // must not be recorded), naming the blob.
  absl::Status Sync();

 private:
  struct Job {
    common::Digest blob;
    std::function<absl::Status()> store;
  };
  void Loop();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stop_; }
  bool Drained() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty() && !busy_; }

  const std::shared_ptr<cache::BlobStore> cas_;
  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::worker

#endif  // FARM_WORKER_WRITE_BEHIND_H_
