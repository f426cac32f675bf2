// ChainIndex: which layer stacks this worker holds unpacked, as OCI ChainIDs, for the
// scheduler's locality (WorkerHello.chain_ids, Heartbeat.chain_ids_added/removed).
//
// The layer store knows single layers (by diff_id), not the order they were stacked in; a
// ChainID names a whole stack. So the index remembers every stack (and each of its prefixes)
// that a task used or produced, persisted under the state directory, and reports a chain as
// held only while every layer of it is still in the layer store: eviction there shows up here
// as removed chains at the next heartbeat. Entries are kept least-recently-used first up to
// `max_entries`.
//
//   ASSIGN_OR_RETURN(auto index, ChainIndex::Load(dir + "/chains", 4096));
//   index->Record(parent_diff_ids_plus_new_layer);            // after a task
//   std::vector<std::string> all = index->Reset(present);       // for WorkerHello
//   ChainIndex::Delta d = index->Diff(present);                 // for each Heartbeat
//   index->Save().IgnoreError();
//
// Thread-safe.
#ifndef FARM_WORKER_AGENT_CHAIN_INDEX_H_
#define FARM_WORKER_AGENT_CHAIN_INDEX_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/digest.h"

namespace farm::worker::agent {

class ChainIndex {
 public:
  // Reads `path` if it exists (malformed lines are skipped and counted in skipped()); the
  // file is written by Save().
  static absl::StatusOr<std::unique_ptr<ChainIndex>> Load(std::string path, int max_entries);

  // Remembers the stack `diff_ids` (bottom to top) and each of its prefixes as used now.
  void Record(const std::vector<common::Digest>& diff_ids);

  // Chain IDs whose layers are all in `present` (diff_ids as "sha256:…"), most recently used
  // first, at most `limit` (0: all; the limit holds for later Diffs too). Also makes this the
  // baseline for Diff().
  std::vector<std::string> Reset(const absl::flat_hash_set<std::string>& present, int limit = 0);

  struct Delta {
    std::vector<std::string> added;
    std::vector<std::string> removed;
  };
  // What changed since the last Reset/Diff, which becomes the new baseline.
  Delta Diff(const absl::flat_hash_set<std::string>& present);

  // Writes the index if it changed since the last Save (atomically; not fsynced: losing it
  // costs only locality).
  absl::Status Save();

  int size();
  int skipped() const { return skipped_; }

 private:
  struct Entry {
    std::string parent;   // chain ID of the stack below; "" for a bottom layer
    std::string diff_id;  // the top layer
    int depth = 1;
    int64_t last_used = 0;
  };
  ChainIndex(std::string path, int max_entries) : path_(std::move(path)), max_(max_entries) {}
  absl::flat_hash_set<std::string> PresentLocked(const absl::flat_hash_set<std::string>& present)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The held chains, most recently used first, at most limit_.
  std::vector<std::string> HeldLocked(const absl::flat_hash_set<std::string>& present)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  const int max_;
  int skipped_ = 0;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> reported_ ABSL_GUARDED_BY(mu_);
  int64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
  int limit_ ABSL_GUARDED_BY(mu_) = 0;
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_CHAIN_INDEX_H_
