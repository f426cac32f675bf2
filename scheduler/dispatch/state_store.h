// StateStore: the dispatcher's durable record of its tasks and leases (RocksDB), so that after
// a scheduler restart queued tasks keep their place and running tasks keep their lease.
//
// Writes are staged in memory and committed by one background thread in batches: a task that
// is queued, dispatched and finished within one batch costs a single write, and the dispatcher
// never waits for the disk while it holds its lock. The WAL is written on every batch (fsync
// only with `sync`), so a process crash loses at most the batch in flight; the dispatcher copes
// with that (a worker that reports a task the store forgot is matched by key or told to
// cancel). Secrets are never given to the store.
//
//   ASSIGN_OR_RETURN(auto store,
//   scheduler::dispatch::StateStore::Open("/var/lib/farm/scheduler/dispatch"));
//   ASSIGN_OR_RETURN(std::vector<scheduler::dispatch::StoredTask> tasks, store->LoadAll());
//   store->PutSpec(id, spec);  store->PutState(id, state);  store->Delete(id);
//   RETURN_IF_ERROR(store->Flush());   // everything staged so far is on disk
#ifndef FARM_SCHEDULER_DISPATCH_STATE_STORE_H_
#define FARM_SCHEDULER_DISPATCH_STATE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "dispatch_state.pb.h"

namespace rocksdb {
class DB;
}

namespace farm::scheduler::dispatch {

struct StoredTask {
  farm::dispatch::TaskSpecRecord spec;
  farm::dispatch::TaskStateRecord state;
};

class StateStore {
 public:
  // Opens (creating it if missing) the database in directory `dir`. FAILED_PRECONDITION if
  // another process has it open or it is not a dispatcher database.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::string& dir,
                                                          bool sync = false);
  // Commits what is staged, then closes.
  ~StateStore();

  // Every task with a readable spec. Records that do not parse are skipped and named in
  // `warnings` (if given); a state record that is missing reads as a fresh queued state.
  absl::StatusOr<std::vector<StoredTask>> LoadAll(std::vector<std::string>* warnings = nullptr);

  // Stage a write; the latest staged value of a record wins. Thread-safe, never blocks on I/O.
  void PutSpec(const std::string& task_id, const farm::dispatch::TaskSpecRecord& spec);
  void PutState(const std::string& task_id, const farm::dispatch::TaskStateRecord& state);
  void Delete(const std::string& task_id);

  // Blocks until everything staged before the call is committed; returns the first write
  // error since the previous Flush (the store keeps trying later batches after an error).
  absl::Status Flush();

  // Batches committed and write errors so far (metrics).
  int64_t batches() const;
  int64_t write_errors() const;

 private:
  StateStore(std::string dir, bool sync, rocksdb::DB* db);
  void Stage(std::string key, std::optional<std::string> value);
  void WriterLoop();

  const std::string dir_;
  const bool sync_;
  rocksdb::DB* const db_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::optional<std::string>> staged_ ABSL_GUARDED_BY(mu_);
  uint64_t staged_gen_ ABSL_GUARDED_BY(mu_) = 0;     // bumped by every Stage
  uint64_t committed_gen_ ABSL_GUARDED_BY(mu_) = 0;  // staged_gen_ of the last committed batch
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  int64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t write_errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread writer_;
};

}  // namespace farm::scheduler::dispatch

#endif  // FARM_SCHEDULER_DISPATCH_STATE_STORE_H_
