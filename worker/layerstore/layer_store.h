// LayerStore: the worker's local store of unpacked layers, keyed by diff_id, shared by every
// step that stacks them as overlayfs lowerdirs.
//
// - A layer is fetched from the CAS by its blob digest, verified (blob digest and diff_id),
//   unpacked once into a temporary directory and renamed into place when complete, so a crash
//   never leaves a half-unpacked layer visible. Concurrent requests for the same layer wait for
//   one unpack. Missing layers of a stack are unpacked in parallel.
// - Whiteouts are converted to overlay form at unpack time (worker/layer/unpack.h): a stack
//   mounts directly, bottom layer last in `lowerdir=`.
// - Leases count references: a layer in use is never evicted. When the unpacked bytes exceed
//   the budget, unreferenced layers are evicted least recently used first. Recency survives
//   restarts (mtime of each layer's `size` file).
// - Overlayfs takes lowerdirs in one page of mount options and at most 500 layers. Each layer
//   has a short name `l/<12 hex>` (a symlink), mounted relative to `dir()`; a stack deeper than
//   what fits is flattened: its bottom layers are merged (hard links, no data copied) into one
//   directory, cached by their OCI ChainID like a layer.
// - A directory already in layer form (a step's normalized upperdir) can be adopted as a
//   layer's unpacked form instead of unpacking the blob again.
//
// One process owns a store directory at a time (an flock on `<dir>/lock`).
//
//   ASSIGN_OR_RETURN(auto store, worker::layerstore::LayerStore::Create({dir, 20LL << 30, cas}));
//   ASSIGN_OR_RETURN(auto stack, store->AcquireStack(layers));   // a lease until destroyed
//   mount("overlay", ..., "lowerdir=" + absl::StrJoin(stack->lower_names(), ":") ...)  // cwd=dir()
#ifndef FARM_WORKER_LAYERSTORE_LAYER_STORE_H_
#define FARM_WORKER_LAYERSTORE_LAYER_STORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "cache/blob_store.h"
#include "common/digest.h"
#include "worker/layer/layer_io.h"
#include "worker/layerstore/file_pool.h"

namespace farm::worker::layerstore {

// What the store needs to know about a layer.
struct LayerDesc {
  common::Digest blob;     // digest and size of the stored (compressed) blob
  common::Digest diff_id;  // digest of the uncompressed tar (size_bytes 0 = unknown)

  // From OCI strings ("sha256:…"); INVALID_ARGUMENT names the bad field.
  static absl::StatusOr<LayerDesc> FromOci(absl::string_view digest, int64_t size,
                                           absl::string_view diff_id, int64_t uncompressed_size);
};

class LayerStore;

// The unpacked layers of a stack, referenced until this object is destroyed (it must not
// outlive the store).
class Stack {
 public:
  ~Stack();
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  // Directory names relative to LayerStore::dir(), top layer first, as overlayfs's lowerdir
  // wants them (short enough for one page of mount options). Never empty: an empty stack
  // (FROM scratch) is one empty directory.
  const std::vector<std::string>& lower_names() const { return lower_names_; }
  // The same directories as absolute paths, top first (for reading a stack without mounting).
  const std::vector<std::string>& lower_dirs() const { return lower_dirs_; }
  // LayerStore::dir(): the directory to chdir into before mounting with lower_names().
  const std::string& base_dir() const { return base_dir_; }
  // True if some bottom layers were merged into one directory to fit overlayfs's limits.
  bool flattened() const { return flattened_; }

 private:
  friend class LayerStore;
  Stack() = default;
  LayerStore* store_ = nullptr;
  std::vector<std::string> keys_;  // entries referenced
  std::vector<std::string> lower_names_;
  std::vector<std::string> lower_dirs_;
  std::string base_dir_;
  bool flattened_ = false;
};

class LayerStore {
 public:
  struct Options {
    std::string dir;           // created if missing
    int64_t budget_bytes = 0;  // unpacked bytes to keep; 0 = unlimited
    std::shared_ptr<cache::BlobStore> cas;
    int unpack_parallelism = 0;  // 0 = number of cores
    // Most layers mounted directly before the bottom of a stack is flattened. 0 = derived from
    // overlayfs's limits (500 layers, one page of mount options).
    int max_direct_layers = 0;
    // The bound on each layer's uncompressed size while unpacking (decompression bombs).
    layer::UnpackLimits unpack_limits;
  };

  // Opens (recovering from a crash: leftover temporary unpacks are removed) or creates the
  // store. FAILED_PRECONDITION if another process holds it.
  static absl::StatusOr<std::unique_ptr<LayerStore>> Create(Options options);
  ~LayerStore();

  // Makes every layer of `layers` (bottom to top) available, fetching and unpacking missing
  // ones (in parallel), and references them until the Stack is destroyed. Errors name the
  // layer (NOT_FOUND: not in the CAS; DATA_LOSS / INVALID_ARGUMENT: verification failed).
  // Thread-safe.
  absl::StatusOr<std::unique_ptr<Stack>> AcquireStack(const std::vector<LayerDesc>& layers);

  // Takes `dir` (a directory in overlay layer form on the store's file system, e.g. a
  // normalized upperdir) as the unpacked form of `diff_id`. The directory is moved; if the
  // layer is already present `dir` is removed instead. `bytes` counts against the budget.
  absl::Status Adopt(const std::string& dir, const common::Digest& diff_id, int64_t bytes);

  // True if the layer is unpacked here (for placement summaries).
  bool Has(const common::Digest& diff_id);
  // diff_ids of every unpacked layer (for a worker's registration summary).
  std::vector<common::Digest> List();

  struct Stats {
    int64_t layers = 0;
    int64_t bytes = 0;
    int64_t unpacks = 0;    // since Create
    int64_t evictions = 0;  // since Create
    int64_t adopted = 0;
  };
  Stats GetStats();

  const std::string& dir() const { return dir_; }
  // The pool of context files COPY layers share (file_pool.h): `<dir>/files`, swept after
  // evictions.
  const FilePool* files() const { return &files_; }

 private:
  friend class Stack;
  struct Entry {
    enum class State { kReady, kBusy } state = State::kBusy;
    int refs = 0;
    int64_t bytes = 0;
    int64_t last_used = 0;   // monotonic counter (in-memory LRU)
    std::string short_name;  // "l/<prefix>"
  };

  LayerStore(Options options, int lock_fd);
  absl::Status Recover();
  // Ensures the entry for `key` is ready and references it. `fill` produces the content in a
  // temporary directory (tmp/<x>/root) and returns its size.
  absl::Status Ensure(const std::string& key,
                      const std::function<absl::StatusOr<int64_t>(const std::string& root)>& fill);
  absl::Status Install(const std::string& key, const std::string& tmp_entry, int64_t bytes);
  absl::StatusOr<std::string> MakeShortName(const std::string& key, const std::string& target);
  void Release(const std::vector<std::string>& keys);
  void EvictLocked(std::vector<std::string>* doomed) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveEntries(const std::vector<std::string>& doomed);
  absl::StatusOr<std::string> NewTempDir();
  std::string EntryDir(const std::string& key) const;
  int MaxDirect() const;

  const Options options_;
  const std::string dir_;
  const int lock_fd_;
  const FilePool files_;
  std::atomic<int64_t> last_sweep_micros_{0};

  absl::Mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::worker::layerstore

#endif  // FARM_WORKER_LAYERSTORE_LAYER_STORE_H_
