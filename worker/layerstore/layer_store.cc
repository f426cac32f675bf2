#include "worker/layerstore/layer_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/chain_id.h"
#include "worker/layer/layer_io.h"
#include "worker/layerstore/flatten.h"

namespace farm::worker::layerstore {
namespace {

constexpr char kLayerPrefix[] = "sha256/";
constexpr char kFlatPrefix[] = "flat/";
// Overlayfs: at most 500 lower layers (OVL_MAX_STACK) and all options in one page. Leave room
// for upperdir=, workdir= (absolute paths) and the other options.
constexpr int kOverlayMaxStack = 500;
constexpr size_t kLowerdirOptionBudget = 4096 - 1024 - sizeof("lowerdir=");

std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* de = readdir(d)) {
    absl::string_view n = de->d_name;
    if (n != "." && n != "..") out.emplace_back(n);
  }
  closedir(d);
  return out;
}

std::string RandomSuffix() {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  return absl::StrCat(getpid(), "-", counter++, "-", rd() % 100000);
}

absl::Status WriteSize(const std::string& path, int64_t bytes) {
  // No fsync: the unpacked files this describes are not synced either (syncing thousands of
  // files per layer would cost more than re-unpacking), so only process-crash safety is
  // meaningful here, and rename gives it.
  return common::WriteFileAtomic(path, absl::StrCat(bytes, "\n"), 0644, /*sync=*/false);
}

}  // namespace

absl::StatusOr<LayerDesc> LayerDesc::FromOci(absl::string_view digest, int64_t size,
                                             absl::string_view diff_id, int64_t uncompressed_size) {
  LayerDesc d;
  auto blob = common::Digest::ParseOci(digest, size);
  if (!blob.ok()) return common::Annotate(blob.status(), "layer digest");
  auto diff = common::Digest::ParseOci(diff_id, uncompressed_size);
  if (!diff.ok())
    return common::Annotate(diff.status(), absl::StrCat("layer ", digest, " diff_id"));
  d.blob = *blob;
  d.diff_id = *diff;
  return d;
}

Stack::~Stack() {
  if (store_ != nullptr) store_->Release(keys_);
}

LayerStore::LayerStore(Options options, int lock_fd)
    : options_(std::move(options)),
      dir_(options_.dir),
      lock_fd_(lock_fd),
      files_(options_.dir + "/files") {}

LayerStore::~LayerStore() { close(lock_fd_); }

absl::StatusOr<std::unique_ptr<LayerStore>> LayerStore::Create(Options options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("layer store: no directory given");
  if (options.cas == nullptr) return absl::InvalidArgumentError("layer store: no CAS given");
  while (options.dir.size() > 1 && options.dir.back() == '/') options.dir.pop_back();
  RETURN_IF_ERROR(common::MakeDirs(options.dir, 0700));
  std::string lock_path = options.dir + "/lock";
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return common::ErrnoToStatus(errno, "open " + lock_path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat("layer store ", options.dir,
                                                        " is in use by another process (",
                                                        lock_path, " is locked)"));
    }
    return common::ErrnoToStatus(e, "flock " + lock_path);
  }
  std::unique_ptr<LayerStore> store(new LayerStore(std::move(options), fd));
  RETURN_IF_ERROR(common::Annotate(store->Recover(), "opening layer store " + store->dir_));
  return store;
}

std::string LayerStore::EntryDir(const std::string& key) const { return dir_ + "/" + key; }

absl::StatusOr<std::string> LayerStore::NewTempDir() {
  std::string path = absl::StrCat(dir_, "/tmp/", RandomSuffix());
  if (mkdir(path.c_str(), 0700) != 0) return common::ErrnoToStatus(errno, "mkdir " + path);
  return path;
}

absl::Status LayerStore::Recover() {
  for (const char* sub : {"sha256", "flat", "tmp", "l", "empty"}) {
    RETURN_IF_ERROR(common::MakeDirs(dir_ + "/" + sub, 0700));
  }
  chmod((dir_ + "/empty").c_str(), 0755);
  // Leftovers of unpacks or removals a crash interrupted.
  for (const std::string& name : ListNames(dir_ + "/tmp")) {
    RETURN_IF_ERROR(common::RemoveAll(dir_ + "/tmp/" + name));
  }
  struct Found {
    std::string key;
    int64_t bytes;
    int64_t mtime;
  };
  std::vector<Found> found;
  for (const char* prefix : {kLayerPrefix, kFlatPrefix}) {
    std::string sub = absl::StrCat(dir_, "/", absl::StripSuffix(prefix, "/"));
    for (const std::string& name : ListNames(sub)) {
      std::string key = prefix + name;
      std::string size_path = EntryDir(key) + "/size";
      auto text = common::ReadFile(size_path);
      int64_t bytes = 0;
      struct stat st;
      if (!common::IsValidSha256Hex(name) || !text.ok() ||
          !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &bytes) ||
          stat(size_path.c_str(), &st) != 0) {
        RETURN_IF_ERROR(common::RemoveAll(EntryDir(key)));
        continue;
      }
      found.push_back({key, bytes, st.st_mtim.tv_sec});
    }
  }
  std::sort(found.begin(), found.end(),
            [](const Found& a, const Found& b) { return a.mtime < b.mtime; });
  // Short names: keep valid links, drop the others.
  std::map<std::string, std::string> short_names;  // key -> "l/x"
  for (const std::string& name : ListNames(dir_ + "/l")) {
    std::string link = dir_ + "/l/" + name;
    char target[512];
    ssize_t n = readlink(link.c_str(), target, sizeof(target) - 1);
    std::string key;
    if (n > 0) {
      absl::string_view t(target, static_cast<size_t>(n));
      if (absl::ConsumePrefix(&t, "../") && absl::ConsumeSuffix(&t, "/root")) key = std::string(t);
    }
    bool known =
        std::any_of(found.begin(), found.end(), [&](const Found& f) { return f.key == key; });
    if (!known || short_names.count(key)) {
      unlink(link.c_str());
      continue;
    }
    short_names[key] = "l/" + name;
  }
  absl::MutexLock lock(&mu_);
  for (const Found& f : found) {
    Entry e;
    e.state = Entry::State::kReady;
    e.bytes = f.bytes;
    e.last_used = ++clock_;
    auto it = short_names.find(f.key);
    if (it != short_names.end()) {
      e.short_name = it->second;
    } else {
      ASSIGN_OR_RETURN(e.short_name, MakeShortName(f.key, "../" + f.key + "/root"));
    }
    total_bytes_ += f.bytes;
    entries_[f.key] = std::move(e);
  }
  std::vector<std::string> doomed;
  EvictLocked(&doomed);
  return absl::OkStatus();
}

absl::StatusOr<std::string> LayerStore::MakeShortName(const std::string& key,
                                                      const std::string& target) {
  absl::string_view hex = key;
  bool flat = absl::ConsumePrefix(&hex, kFlatPrefix);
  if (!flat) absl::ConsumePrefix(&hex, kLayerPrefix);
  for (size_t len = 12; len <= hex.size(); len += 4) {
    std::string name = absl::StrCat(flat ? "F" : "", hex.substr(0, len));
    std::string link = dir_ + "/l/" + name;
    if (symlink(target.c_str(), link.c_str()) == 0) return "l/" + name;
    if (errno != EEXIST) return common::ErrnoToStatus(errno, "symlink " + link);
    char existing[512];
    ssize_t n = readlink(link.c_str(), existing, sizeof(existing));
    if (n > 0 && absl::string_view(existing, static_cast<size_t>(n)) == target) return "l/" + name;
  }
  return absl::InternalError("layer store: no free short name for " + key);
}

absl::Status LayerStore::Install(const std::string& key, const std::string& tmp_entry,
                                 int64_t bytes) {
  RETURN_IF_ERROR(WriteSize(tmp_entry + "/size", bytes));
  std::string final_dir = EntryDir(key);
  if (rename(tmp_entry.c_str(), final_dir.c_str()) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("rename ", tmp_entry, " to ", final_dir));
  }
  return absl::OkStatus();
}

absl::Status LayerStore::Ensure(
    const std::string& key,
    const std::function<absl::StatusOr<int64_t>(const std::string& root)>& fill) {
  {
    absl::MutexLock lock(&mu_);
    while (true) {
      auto it = entries_.find(key);
      if (it == entries_.end()) {
        entries_[key].state = Entry::State::kBusy;
        break;
      }
      if (it->second.state == Entry::State::kReady) {
        ++it->second.refs;
        it->second.last_used = ++clock_;
        return absl::OkStatus();
      }
      // Another thread is producing it: wait for the outcome (ready, or gone after a failure,
      // in which case this thread tries itself and reports its own error).
      struct WaitArg {
        LayerStore* self;
        const std::string* key;
      } arg{this, &key};
      mu_.Await(absl::Condition(
          +[](WaitArg* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            auto i = a->self->entries_.find(*a->key);
            return i == a->self->entries_.end() || i->second.state != Entry::State::kBusy;
          },
          &arg));
    }
  }
  absl::Status status;
  int64_t bytes = 0;
  std::string short_name;
  auto tmp = NewTempDir();
  if (!tmp.ok()) {
    status = tmp.status();
  } else {
    std::string root = *tmp + "/root";
    if (mkdir(root.c_str(), 0755) != 0) {
      status = common::ErrnoToStatus(errno, "mkdir " + root);
    } else {
      auto filled = fill(root);
      if (filled.ok()) {
        bytes = *filled;
        status = Install(key, *tmp, bytes);
      } else {
        status = filled.status();
      }
    }
    if (status.ok()) {
      auto sn = MakeShortName(key, "../" + key + "/root");
      if (sn.ok()) {
        short_name = *sn;
      } else {
        status = sn.status();
        common::RemoveAll(EntryDir(key)).IgnoreError();
      }
    } else {
      common::RemoveAll(*tmp).IgnoreError();
    }
  }
  std::vector<std::string> doomed;
  {
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      entries_.erase(key);
      return status;
    }
    Entry& e = entries_[key];
    e.state = Entry::State::kReady;
    e.refs = 1;
    e.bytes = bytes;
    e.last_used = ++clock_;
    e.short_name = short_name;
    total_bytes_ += bytes;
    EvictLocked(&doomed);
  }
  RemoveEntries(doomed);
  return absl::OkStatus();
}

int LayerStore::MaxDirect() const {
  if (options_.max_direct_layers > 0) return options_.max_direct_layers;
  return kOverlayMaxStack;
}

absl::StatusOr<std::unique_ptr<Stack>> LayerStore::AcquireStack(
    const std::vector<LayerDesc>& layers) {
  std::unique_ptr<Stack> stack(new Stack());
  stack->store_ = this;
  stack->base_dir_ = dir_;
  const size_t n = layers.size();
  std::vector<absl::Status> results(n);
  std::vector<std::string> keys(n);
  for (size_t i = 0; i < n; ++i) keys[i] = kLayerPrefix + layers[i].diff_id.hash;

  auto acquire = [&](size_t i) {
    const LayerDesc& l = layers[i];
    results[i] = common::Annotate(
        Ensure(keys[i],
               [&](const std::string& root) -> absl::StatusOr<int64_t> {
                 ASSIGN_OR_RETURN(layer::UnpackedLayer u,
                                  layer::UnpackLayerBlob(options_.cas.get(), l.blob, l.diff_id,
                                                         root, options_.unpack_limits));
                 absl::MutexLock lock(&mu_);
                 ++stats_.unpacks;
                 return u.disk_bytes;
               }),
        absl::StrCat("layer ", i + 1, "/", n, " (", l.diff_id.OciString(), ", blob ",
                     l.blob.OciString(), ")"));
  };
  int parallelism = options_.unpack_parallelism > 0
                        ? options_.unpack_parallelism
                        : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  if (n <= 1 || parallelism <= 1) {
    for (size_t i = 0; i < n; ++i) acquire(i);
  } else {
    std::atomic<size_t> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < parallelism && t < static_cast<int>(n); ++t) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < n; i = next++) acquire(i);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  absl::Status first_error;
  for (size_t i = 0; i < n; ++i) {
    if (results[i].ok()) {
      stack->keys_.push_back(keys[i]);
    } else if (first_error.ok()) {
      first_error = results[i];
    }
  }
  if (!first_error.ok()) return first_error;  // ~Stack releases what was acquired

  // How many top layers fit directly in the mount options?
  std::vector<std::string> names(n);
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < n; ++i) names[i] = entries_[keys[i]].short_name;
  }
  size_t budget = kLowerdirOptionBudget, direct = 0;
  size_t max_direct = static_cast<size_t>(MaxDirect());
  for (size_t i = n; i-- > 0;) {
    size_t need = names[i].size() + 1;
    if (need > budget || direct + 1 > max_direct) break;
    budget -= need;
    ++direct;
  }
  if (direct < n) {
    // Keep room for the flattened bottom (its short name is as long as a layer's, plus one).
    size_t keep = direct > 0 ? direct - 1 : 0;
    size_t bottom = n - keep;
    std::vector<common::Digest> diff_ids;
    std::vector<std::string> roots;
    for (size_t i = 0; i < bottom; ++i) {
      diff_ids.push_back(layers[i].diff_id);
      roots.push_back(EntryDir(keys[i]) + "/root");
    }
    std::string chain = oci::ChainId(diff_ids);
    std::string flat_key = kFlatPrefix + std::string(absl::StripPrefix(chain, "sha256:"));
    RETURN_IF_ERROR(common::Annotate(
        Ensure(flat_key,
               [&](const std::string& root) -> absl::StatusOr<int64_t> {
                 ASSIGN_OR_RETURN(int64_t entries, MergeLayers(roots, root));
                 return entries * 512;  // files are hard links: only metadata is new
               }),
        absl::StrCat("flattening the bottom ", bottom, " layers (chain ", chain, ")")));
    stack->flattened_ = true;
    // The bottom layers are not mounted: release them now, keep the flattened entry.
    std::vector<std::string> bottom_keys(stack->keys_.begin(), stack->keys_.begin() + bottom);
    stack->keys_.erase(stack->keys_.begin(), stack->keys_.begin() + bottom);
    Release(bottom_keys);
    stack->keys_.insert(stack->keys_.begin(), flat_key);
  }
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = stack->keys_.size(); i-- > 0;) {
      const std::string& key = stack->keys_[i];
      stack->lower_names_.push_back(entries_[key].short_name);
      stack->lower_dirs_.push_back(EntryDir(key) + "/root");
    }
  }
  if (stack->lower_names_.empty()) {
    stack->lower_names_.push_back("empty");
    stack->lower_dirs_.push_back(dir_ + "/empty");
  }
  return stack;
}

void LayerStore::Release(const std::vector<std::string>& keys) {
  std::vector<std::string> doomed;
  {
    absl::MutexLock lock(&mu_);
    for (const std::string& key : keys) {
      auto it = entries_.find(key);
      if (it == entries_.end()) continue;
      if (--it->second.refs <= 0) {
        it->second.refs = 0;
        it->second.last_used = ++clock_;
        // Persist recency for the next start (best effort).
        utimensat(AT_FDCWD, (EntryDir(key) + "/size").c_str(), nullptr, 0);
      }
    }
    EvictLocked(&doomed);
  }
  RemoveEntries(doomed);
}

void LayerStore::EvictLocked(std::vector<std::string>* doomed) {
  if (options_.budget_bytes <= 0 || total_bytes_ <= options_.budget_bytes) return;
  std::vector<std::pair<int64_t, std::string>> candidates;
  for (const auto& [key, e] : entries_) {
    if (e.state == Entry::State::kReady && e.refs == 0) candidates.emplace_back(e.last_used, key);
  }
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [used, key] : candidates) {
    if (total_bytes_ <= options_.budget_bytes) break;
    Entry& e = entries_[key];
    // Make it disappear atomically now (so a new unpack of the same key can install), delete
    // the content later outside the lock.
    std::string graveyard = absl::StrCat(dir_, "/tmp/evicted-", RandomSuffix());
    if (rename(EntryDir(key).c_str(), graveyard.c_str()) != 0) continue;
    unlink((dir_ + "/" + e.short_name).c_str());
    total_bytes_ -= e.bytes;
    ++stats_.evictions;
    entries_.erase(key);
    doomed->push_back(graveyard);
  }
}

void LayerStore::RemoveEntries(const std::vector<std::string>& doomed) {
  if (doomed.empty()) return;
  for (const std::string& path : doomed) common::RemoveAll(path).IgnoreError();
  // The pooled files only the evicted layers held go too; the pool is swept at most every 30 s
  // (a sweep stats every pooled file) and by one thread at a time.
  int64_t now = absl::ToUnixMicros(absl::Now());
  int64_t last = last_sweep_micros_.load();
  if (now - last < 30'000'000 || !last_sweep_micros_.compare_exchange_strong(last, now)) return;
  files_.Sweep();
}

absl::Status LayerStore::Adopt(const std::string& dir, const common::Digest& diff_id,
                               int64_t bytes) {
  std::string key = kLayerPrefix + diff_id.hash;
  {
    absl::MutexLock lock(&mu_);
    if (entries_.count(key)) return common::RemoveAll(dir);
    entries_[key].state = Entry::State::kBusy;
  }
  absl::Status status;
  std::string short_name;
  auto tmp = NewTempDir();
  if (!tmp.ok()) {
    status = tmp.status();
  } else if (rename(dir.c_str(), (*tmp + "/root").c_str()) != 0) {
    status = common::ErrnoToStatus(
        errno, absl::StrCat("adopting ", dir, " as layer ", diff_id.OciString()));
    common::RemoveAll(*tmp).IgnoreError();
  } else {
    chmod((*tmp + "/root").c_str(), 0755);
    status = Install(key, *tmp, bytes);
    if (status.ok()) {
      auto sn = MakeShortName(key, "../" + key + "/root");
      if (sn.ok()) {
        short_name = *sn;
      } else {
        status = sn.status();
        common::RemoveAll(EntryDir(key)).IgnoreError();
      }
    } else {
      common::RemoveAll(*tmp).IgnoreError();
    }
  }
  std::vector<std::string> doomed;
  {
    absl::MutexLock lock(&mu_);
    if (!status.ok()) {
      entries_.erase(key);
      return status;
    }
    Entry& e = entries_[key];
    e.state = Entry::State::kReady;
    e.bytes = bytes;
    e.last_used = ++clock_;
    e.short_name = short_name;
    total_bytes_ += bytes;
    ++stats_.adopted;
    EvictLocked(&doomed);
  }
  RemoveEntries(doomed);
  return absl::OkStatus();
}

bool LayerStore::Has(const common::Digest& diff_id) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(kLayerPrefix + diff_id.hash);
  return it != entries_.end() && it->second.state == Entry::State::kReady;
}

std::vector<common::Digest> LayerStore::List() {
  absl::MutexLock lock(&mu_);
  std::vector<common::Digest> out;
  for (const auto& [key, e] : entries_) {
    absl::string_view hex = key;
    if (e.state == Entry::State::kReady && absl::ConsumePrefix(&hex, kLayerPrefix)) {
      out.push_back(common::Digest{std::string(hex), 0});
    }
  }
  return out;
}

LayerStore::Stats LayerStore::GetStats() {
  absl::MutexLock lock(&mu_);
  Stats s = stats_;
  s.bytes = total_bytes_;
  s.layers = 0;
  for (const auto& [key, e] : entries_) {
    if (e.state == Entry::State::kReady) ++s.layers;
  }
  return s;
}

}  // namespace farm::worker::layerstore
