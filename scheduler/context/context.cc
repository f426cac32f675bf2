#include "scheduler/context/context.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "build/bazel/remote/execution/v2/remote_execution.pb.h"
#include "common/fs.h"
#include "common/patternmatcher.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "farm/v1/build.pb.h"
#include "google/protobuf/arena.h"

namespace farm::scheduler::context {

namespace internal {

// One name in a directory of the context, as the walk found it.
struct Listing;
struct Entry {
  std::string name;
  worker::copy::FileInfo info;
  // Regular files: what the stat cache compares.
  int64_t mtime_nanos = 0;
  int64_t ctime_nanos = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
  uint64_t nlink = 0;
  Listing* dir = nullptr;  // directories: their own listing
  bool excluded = false;   // a directory kept only as the parent of something re-included
};

// One directory's kept entries, sorted by name (byte order).
struct Listing {
  std::string rel;  // "" for the root
  std::vector<Entry> entries;
};

// What the walk made: every directory's listing, the root's first.
struct Walk {
  std::vector<std::unique_ptr<Listing>> listings;
  Listing* root() const { return listings.front().get(); }
};

}  // namespace internal

namespace {

using internal::Entry;
using internal::Listing;

namespace reapi = build::bazel::remote::execution::v2;

int64_t Nanos(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// Hashes the file at `path` reading through `buf` (the caller's, reused from file to file: a
// fresh zeroed megabyte per file cost more than the hashing of a tree of small files).
absl::Status HashFile(const std::string& path, int64_t expect_size, std::vector<char>& buf,
                      common::Digest* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
  common::Sha256 h;
  while (true) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return common::ErrnoToStatus(e, absl::StrCat("read ", path));
    }
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
  }
  close(fd);
  *out = h.Finish();
  if (out->size_bytes != expect_size) {
    return absl::AbortedError(absl::StrCat(path, " changed while the context was being read"));
  }
  return absl::OkStatus();
}

// Lists the context's directories on `threads` threads: each directory is one task, its
// subdirectories become new tasks. The result does not depend on the threads: every listing
// is sorted and the tree is flattened afterwards in walk order.
class Walker {
 public:
  Walker(std::string root, const common::PatternMatcher& ignore, bool normalize)
      : root_(std::move(root)), ignore_(ignore), normalize_(normalize) {}

  // Walks everything below the root; the root's listing is root().
  absl::Status Run(int threads) {
    {
      absl::MutexLock l(&mu_);
      auto top = std::make_unique<Listing>();
      queue_.push_back(top.get());
      walk_->listings.push_back(std::move(top));
    }
    std::vector<std::thread> pool;
    for (int i = 1; i < threads; ++i) pool.emplace_back([this] { Work(); });
    Work();
    for (std::thread& t : pool) t.join();
    absl::MutexLock l(&mu_);
    return error_;
  }

  // The listings, once Run has returned.
  std::unique_ptr<internal::Walk> Take() {
    absl::MutexLock l(&mu_);
    return std::move(walk_);
  }

  // Drops excluded directories left without a re-included descendant.
  static void Prune(Listing* l) {
    std::vector<Entry>& es = l->entries;
    for (Entry& e : es) {
      if (e.dir != nullptr) Prune(e.dir);
    }
    es.erase(std::remove_if(es.begin(), es.end(),
                            [](const Entry& e) { return e.excluded && e.dir->entries.empty(); }),
             es.end());
  }

 private:
  void Work() {
    while (true) {
      Listing* next = nullptr;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(
            +[](Walker* w) { return !w->queue_.empty() || w->busy_ == 0 || !w->error_.ok(); },
            this));
        if (queue_.empty() || !error_.ok()) return;
        next = queue_.front();
        queue_.pop_front();
        ++busy_;
      }
      absl::Status s = List(next);
      absl::MutexLock l(&mu_);
      --busy_;
      if (!s.ok() && error_.ok()) error_ = s;
      if (!s.ok()) continue;
      for (Entry& e : next->entries) {
        if (!e.info.is_dir()) continue;
        auto sub = std::make_unique<Listing>();
        sub->rel = next->rel.empty() ? e.name : absl::StrCat(next->rel, "/", e.name);
        e.dir = sub.get();
        queue_.push_back(sub.get());
        walk_->listings.push_back(std::move(sub));
      }
    }
  }

  absl::Status List(Listing* out) {
    const std::string& rel = out->rel;
    std::string dir = rel.empty() ? root_ : common::JoinPath(root_, rel);
    // Children are stat'ed relative to the directory's fd: no path walk per file.
    // Below the root, a directory swapped for a symlink since it was stat'ed is not followed.
    int dfd =
        open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | (rel.empty() ? 0 : O_NOFOLLOW));
    if (dfd < 0) return common::ErrnoToStatus(errno, absl::StrCat("opendir ", dir));
    DIR* d = fdopendir(dfd);
    if (d == nullptr) {
      close(dfd);
      return common::ErrnoToStatus(errno, absl::StrCat("opendir ", dir));
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      absl::string_view n = e->d_name;
      if (n == "." || n == "..") continue;
      names.emplace_back(n);
    }
    std::sort(names.begin(), names.end());
    out->entries.reserve(names.size());
    absl::Status result;
    for (std::string& name : names) {
      struct stat st;
      if (fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // removed while walking
        result = common::ErrnoToStatus(errno, absl::StrCat("lstat ", common::JoinPath(dir, name)));
        break;
      }
      bool excluded = false;
      if (!ignore_.empty()) {
        excluded = ignore_.Matches(rel.empty() ? name : absl::StrCat(rel, "/", name));
      }
      Entry e;
      e.info.mode = st.st_mode & 07777;
      if (S_ISDIR(st.st_mode)) {
        if (excluded && !ignore_.has_exclusions()) continue;
        e.info.type = worker::copy::FileType::kDirectory;
        if (normalize_) e.info.mode = 0755;
        e.excluded = excluded;
      } else if (excluded) {
        continue;
      } else if (S_ISREG(st.st_mode)) {
        e.info.type = worker::copy::FileType::kRegular;
        e.info.size = st.st_size;
        if (normalize_) e.info.mode = (st.st_mode & 0111) ? 0755 : 0644;
        e.mtime_nanos = Nanos(st.st_mtim);
        e.ctime_nanos = Nanos(st.st_ctim);
        e.inode = st.st_ino;
        e.device = st.st_dev;
        e.nlink = st.st_nlink;
      } else if (S_ISLNK(st.st_mode)) {
        e.info.type = worker::copy::FileType::kSymlink;
        e.info.mode = 0777;
        std::vector<char> buf(std::max<size_t>(static_cast<size_t>(st.st_size) + 1, 4096));
        ssize_t n = readlinkat(dfd, name.c_str(), buf.data(), buf.size());
        if (n < 0) {
          result =
              common::ErrnoToStatus(errno, absl::StrCat("readlink ", common::JoinPath(dir, name)));
          break;
        }
        e.info.link_target.assign(buf.data(), static_cast<size_t>(n));
      } else {
        continue;  // sockets, devices, FIFOs are not part of a build context
      }
      e.name = std::move(name);
      out->entries.push_back(std::move(e));
    }
    closedir(d);
    return result;
  }

  std::string root_;
  const common::PatternMatcher& ignore_;
  bool normalize_;
  absl::Mutex mu_;
  std::deque<Listing*> queue_ ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<internal::Walk> walk_ ABSL_GUARDED_BY(mu_) = std::make_unique<internal::Walk>();
};

// A kept entry with its path, in walk order (a directory before its children).
struct Flat {
  std::string path;
  Entry* entry;
};

void Flatten(Listing* l, std::vector<Flat>* out) {
  for (Entry& e : l->entries) {
    out->push_back(Flat{l->rel.empty() ? e.name : absl::StrCat(l->rel, "/", e.name), &e});
    if (e.dir != nullptr) Flatten(e.dir, out);
  }
}

}  // namespace

absl::StatusOr<std::vector<std::string>> LoadIgnorePatterns(const std::string& context_dir,
                                                            const std::string& dockerfile_path) {
  std::vector<std::string> candidates;
  if (!dockerfile_path.empty()) candidates.push_back(dockerfile_path + ".dockerignore");
  candidates.push_back(common::JoinPath(context_dir, ".dockerignore"));
  for (const std::string& c : candidates) {
    absl::StatusOr<std::string> text = common::ReadFile(c);
    if (text.ok()) return common::ReadIgnoreFile(*text);
    if (!absl::IsNotFound(text.status())) return text.status();
  }
  return std::vector<std::string>();
}

absl::StatusOr<std::unique_ptr<Snapshot>> Snapshot::FromDirectory(
    const std::string& dir, const std::vector<std::string>& ignore_patterns,
    const SnapshotOptions& options) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    return common::ErrnoToStatus(errno, absl::StrCat("build context ", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("build context ", dir, " is not a directory"));
  }
  absl::StatusOr<common::PatternMatcher> ignore = common::PatternMatcher::Create(ignore_patterns);
  if (!ignore.ok()) return common::Annotate(ignore.status(), ".dockerignore");

  int threads =
      options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  Walker walker(dir, *ignore, options.normalize_permissions);
  RETURN_IF_ERROR(walker.Run(threads));
  std::unique_ptr<internal::Walk> walk = walker.Take();
  Walker::Prune(walk->root());
  std::vector<Flat> entries;
  Flatten(walk->root(), &entries);
  // Hard links: names of one inode within the context form a group named by its first name in
  // walk order (deterministic, unlike inode numbers), as Docker's context transfer keeps them.
  std::map<std::pair<uint64_t, uint64_t>, std::vector<size_t>> inodes;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = *entries[i].entry;
    if (e.info.type == worker::copy::FileType::kRegular && e.nlink > 1) {
      inodes[{e.device, e.inode}].push_back(i);
    }
  }
  for (const auto& [inode, names] : inodes) {
    if (names.size() < 2) continue;
    for (size_t i : names) entries[i].entry->info.hardlink_group = entries[names.front()].path;
  }

  // Digests the stat cache vouches for; the other regular files are hashed, in parallel.
  // An arena: 20,000 entries parse (and free) in a third of the time.
  google::protobuf::Arena arena;
  auto* cache_file = google::protobuf::Arena::CreateMessage<farm::v1::StatCacheFile>(&arena);
  int64_t trust_before = 0;
  bool have_cache = false;
  if (!options.stat_cache.empty()) {
    absl::StatusOr<std::string> bytes = common::ReadFile(options.stat_cache);
    if (bytes.ok() && cache_file->ParseFromString(*bytes)) {
      // Racy entries: a file changed within 2 s of the cache being written may have kept its
      // mtime; only older mtimes are trusted.
      trust_before = cache_file->written_unix_nanos() - 2000000000LL;
      have_cache = true;
    }
  }
  // The cache lists the files in walk order: an unchanged tree matches entry by entry; the
  // index by path is made at the first file out of place.
  const auto& cached = cache_file->entries();
  int next_cached = 0;
  absl::flat_hash_map<absl::string_view, const farm::v1::StatCacheFile::Entry*> by_path;
  auto lookup = [&](const std::string& path) -> const farm::v1::StatCacheFile::Entry* {
    if (!have_cache) return nullptr;
    if (next_cached < cached.size() && cached[next_cached].path() == path) {
      return &cached[next_cached++];
    }
    if (by_path.empty()) {
      by_path.reserve(static_cast<size_t>(cached.size()));
      for (const auto& e : cached) by_path[e.path()] = &e;
    }
    auto it = by_path.find(path);
    return it == by_path.end() ? nullptr : it->second;
  };
  std::vector<size_t> files;
  size_t regular = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry& e = *entries[i].entry;
    if (e.info.type != worker::copy::FileType::kRegular) continue;
    ++regular;
    const farm::v1::StatCacheFile::Entry* c = lookup(entries[i].path);
    if (c != nullptr && c->size() == e.info.size && c->mtime_nanos() == e.mtime_nanos &&
        c->ctime_nanos() == e.ctime_nanos && c->inode() == e.inode && c->device() == e.device &&
        e.mtime_nanos < trust_before && common::IsValidSha256Hex(c->sha256())) {
      common::Digest d;
      d.hash = c->sha256();
      d.size_bytes = c->size();
      e.info.digest = std::move(d);
      continue;
    }
    files.push_back(i);
  }
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto work = [&]() {
    std::vector<char> buf(1 << 20);
    while (true) {
      size_t k = next.fetch_add(1);
      if (k >= files.size()) return;
      const Flat& f = entries[files[k]];
      common::Digest d;
      absl::Status s = HashFile(common::JoinPath(dir, f.path), f.entry->info.size, buf, &d);
      if (!s.ok()) {
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = s;
        return;
      }
      f.entry->info.digest = d;
    }
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads && static_cast<size_t>(i) < files.size(); ++i) {
    pool.emplace_back(work);
  }
  work();
  for (std::thread& t : pool) t.join();
  RETURN_IF_ERROR(first_error);

  // The cache is rewritten only when it would say something new: a file was hashed, or the set
  // of files changed (a no-op rebuild writes nothing).
  bool cache_current = files.empty() && regular == static_cast<size_t>(cached.size());
  if (!options.stat_cache.empty() && !cache_current) {
    farm::v1::StatCacheFile out;
    out.set_written_unix_nanos(absl::ToUnixNanos(absl::Now()));
    for (const Flat& f : entries) {
      const Entry& e = *f.entry;
      if (e.info.type != worker::copy::FileType::kRegular) continue;
      farm::v1::StatCacheFile::Entry* c = out.add_entries();
      c->set_path(f.path);
      c->set_size(e.info.size);
      c->set_mtime_nanos(e.mtime_nanos);
      c->set_ctime_nanos(e.ctime_nanos);
      c->set_inode(e.inode);
      c->set_device(e.device);
      c->set_sha256(e.info.digest->hash);
    }
    // Best effort: a cache that cannot be written only costs the next build some reads.
    common::WriteFileAtomic(options.stat_cache, out.SerializeAsString(), 0600, /*sync=*/false)
        .IgnoreError();
  }

  auto snap = std::unique_ptr<Snapshot>(new Snapshot());
  snap->dir_ = dir;
  snap->files_hashed_ = static_cast<int64_t>(files.size());
  std::string root_dir = dir;
  snap->tree_ = std::make_unique<worker::copy::IndexedTree>(
      worker::copy::SymlinkPolicy::kContained,
      [root_dir](absl::string_view path, const worker::copy::FileInfo& info,
                 const worker::copy::ReadSink& sink) -> absl::Status {
        std::string host = common::JoinPath(root_dir, path);
        int fd = open(host.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", host));
        std::vector<char> buf(common::ReadBufferSize(info.size));
        common::Sha256 h;
        absl::Status result;
        while (true) {
          ssize_t n = read(fd, buf.data(), buf.size());
          if (n < 0) {
            if (errno == EINTR) continue;
            result = common::ErrnoToStatus(errno, absl::StrCat("read ", host));
            break;
          }
          if (n == 0) break;
          h.Update(buf.data(), static_cast<size_t>(n));
          result = sink(absl::string_view(buf.data(), static_cast<size_t>(n)));
          if (!result.ok()) break;
        }
        close(fd);
        if (result.ok() && info.digest && h.Finish() != *info.digest) {
          return absl::AbortedError(
              absl::StrCat(host, " changed since the build context was hashed"));
        }
        return result;
      },
      [root_dir](absl::string_view path) { return common::JoinPath(root_dir, path); });
  snap->tree_->Reserve(entries.size());
  for (const Flat& f : entries) {
    const Entry& e = *f.entry;
    if (e.info.type == worker::copy::FileType::kRegular) {
      ++snap->file_count_;
      snap->total_bytes_ += e.info.size;
    }
    snap->tree_->Add(f.path, e.info);
  }
  // The Merkle tree, bottom-up: a directory's digest needs its children's.
  std::function<reapi::Digest(const Listing&, const worker::copy::FileInfo*)> build =
      [&](const Listing& l, const worker::copy::FileInfo* self) -> reapi::Digest {
    google::protobuf::Arena dir_arena;
    auto& d = *google::protobuf::Arena::CreateMessage<reapi::Directory>(&dir_arena);
    for (const Entry& c : l.entries) {
      switch (c.info.type) {
        case worker::copy::FileType::kRegular: {
          reapi::FileNode* f = d.add_files();
          f->set_name(c.name);
          f->mutable_digest()->set_hash(c.info.digest->hash);
          f->mutable_digest()->set_size_bytes(c.info.digest->size_bytes);
          f->set_is_executable(c.info.executable());
          if (!options.normalize_permissions) {
            f->mutable_node_properties()->mutable_unix_mode()->set_value(c.info.mode);
          }
          if (!c.info.hardlink_group.empty()) {
            auto* p = f->mutable_node_properties()->add_properties();
            p->set_name(worker::copy::kHardlinkProperty);
            p->set_value(c.info.hardlink_group);
          }
          break;
        }
        case worker::copy::FileType::kDirectory: {
          reapi::DirectoryNode* n = d.add_directories();
          n->set_name(c.name);
          *n->mutable_digest() = build(*c.dir, &c.info);
          break;
        }
        case worker::copy::FileType::kSymlink: {
          reapi::SymlinkNode* sl = d.add_symlinks();
          sl->set_name(c.name);
          sl->set_target(c.info.link_target);
          break;
        }
        default:
          break;
      }
    }
    if (!options.normalize_permissions && self != nullptr) {
      d.mutable_node_properties()->mutable_unix_mode()->set_value(self->mode);
    }
    std::string bytes;
    d.SerializeToString(&bytes);
    common::Digest digest = common::DigestOf(bytes);
    snap->directories_.emplace(digest, std::move(bytes));
    reapi::Digest out;
    out.set_hash(digest.hash);
    out.set_size_bytes(digest.size_bytes);
    return out;
  };
  reapi::Digest root = build(*walk->root(), nullptr);
  // Kept for files(), made when first asked for: a fully cached build never reads a file.
  snap->walk_ = std::move(walk);
  snap->root_.set_digest(absl::StrCat("sha256:", root.hash()));
  snap->root_.set_size(root.size_bytes());
  return snap;
}

Snapshot::Snapshot() = default;
Snapshot::~Snapshot() = default;

const std::map<common::Digest, std::string>& Snapshot::files() const {
  absl::call_once(files_once_, [this] {
    if (walk_ == nullptr) return;
    std::vector<Flat> all;
    Flatten(walk_->root(), &all);
    for (const Flat& f : all) {
      if (f.entry->info.type == worker::copy::FileType::kRegular) {
        files_.emplace(*f.entry->info.digest, common::JoinPath(dir_, f.path));
      }
    }
  });
  return files_;
}

namespace {

// Reads a context file as a blob, checking its digest when read whole.
class FileBlobReader : public cache::BlobReader {
 public:
  static absl::StatusOr<std::unique_ptr<FileBlobReader>> Open(const std::string& path,
                                                              const common::Digest& digest,
                                                              int64_t offset, int64_t limit) {
    if (offset < 0 || limit < 0) {
      return absl::InvalidArgumentError("negative offset or limit");
    }
    if (offset > digest.size_bytes) {
      return absl::OutOfRangeError(
          absl::StrCat("offset ", offset, " past the end of ", digest.ToString()));
    }
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
    if (offset > 0 && lseek(fd, offset, SEEK_SET) < 0) {
      int e = errno;
      close(fd);
      return common::ErrnoToStatus(e, absl::StrCat("seek ", path));
    }
    int64_t end = limit == 0 ? digest.size_bytes : std::min(digest.size_bytes, offset + limit);
    return std::unique_ptr<FileBlobReader>(
        new FileBlobReader(fd, path, digest, offset, end, offset == 0 && end == digest.size_bytes));
  }
  ~FileBlobReader() override { close(fd_); }

  absl::StatusOr<absl::string_view> Next() override {
    if (pos_ >= end_) {
      if (verify_ && !checked_) {
        checked_ = true;
        if (h_.Finish() != digest_) {
          return absl::DataLossError(
              absl::StrCat(path_, " changed since the build context was hashed"));
        }
      }
      return absl::string_view();
    }
    size_t want = static_cast<size_t>(std::min<int64_t>(buf_.size(), end_ - pos_));
    ssize_t n;
    do {
      n = read(fd_, buf_.data(), want);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return common::ErrnoToStatus(errno, absl::StrCat("read ", path_));
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat(path_, " changed (shorter) since the build context was hashed"));
    }
    pos_ += n;
    absl::string_view chunk(buf_.data(), static_cast<size_t>(n));
    if (verify_) h_.Update(chunk);
    return chunk;
  }

 private:
  FileBlobReader(int fd, std::string path, common::Digest digest, int64_t pos, int64_t end,
                 bool verify)
      : fd_(fd),
        path_(std::move(path)),
        digest_(std::move(digest)),
        pos_(pos),
        end_(end),
        verify_(verify),
        buf_(common::ReadBufferSize(end - pos)) {}
  int fd_;
  std::string path_;
  common::Digest digest_;
  int64_t pos_, end_;
  bool verify_;
  bool checked_ = false;
  common::Sha256 h_;
  std::vector<char> buf_;
};

class BytesBlobReader : public cache::BlobReader {
 public:
  BytesBlobReader(absl::string_view bytes) : bytes_(bytes) {}
  absl::StatusOr<absl::string_view> Next() override {
    absl::string_view out = bytes_;
    bytes_ = absl::string_view();
    return out;
  }

 private:
  absl::string_view bytes_;
};

class SnapshotOverlay : public cache::BlobStore {
 public:
  SnapshotOverlay(const Snapshot* snap, std::shared_ptr<cache::BlobStore> base)
      : snap_(snap), base_(std::move(base)) {}

  bool Local(const common::Digest& d) const {
    return snap_->directories().count(d) > 0 || snap_->files().count(d) > 0;
  }

  absl::StatusOr<std::vector<common::Digest>> FindMissing(
      absl::Span<const common::Digest> digests) override {
    std::vector<common::Digest> rest;
    for (const common::Digest& d : digests) {
      if (!Local(d)) rest.push_back(d);
    }
    if (rest.empty()) return rest;
    return base_->FindMissing(rest);
  }

  absl::StatusOr<std::unique_ptr<cache::BlobReader>> OpenRead(const common::Digest& digest,
                                                              int64_t offset,
                                                              int64_t limit) override {
    auto dir = snap_->directories().find(digest);
    if (dir != snap_->directories().end()) {
      absl::string_view bytes = dir->second;
      if (offset < 0 || limit < 0) return absl::InvalidArgumentError("negative offset or limit");
      if (offset > static_cast<int64_t>(bytes.size())) {
        return absl::OutOfRangeError("offset past the end");
      }
      bytes.remove_prefix(static_cast<size_t>(offset));
      if (limit > 0) bytes = bytes.substr(0, static_cast<size_t>(limit));
      return std::unique_ptr<cache::BlobReader>(new BytesBlobReader(bytes));
    }
    auto file = snap_->files().find(digest);
    if (file != snap_->files().end()) {
      ASSIGN_OR_RETURN(std::unique_ptr<FileBlobReader> r,
                       FileBlobReader::Open(file->second, digest, offset, limit));
      return std::unique_ptr<cache::BlobReader>(std::move(r));
    }
    return base_->OpenRead(digest, offset, limit);
  }

  absl::StatusOr<std::unique_ptr<cache::BlobWriter>> BeginWrite(
      const common::Digest& digest) override {
    return base_->BeginWrite(digest);
  }

  absl::StatusOr<Lease> AcquireLease(absl::Span<const common::Digest> digests,
                                     absl::Duration ttl) override {
    std::vector<common::Digest> rest;
    for (const common::Digest& d : digests) {
      if (!Local(d)) rest.push_back(d);
    }
    return base_->AcquireLease(rest, ttl);
  }

  absl::Status ReleaseLease(const std::string& lease_id) override {
    return base_->ReleaseLease(lease_id);
  }

 private:
  const Snapshot* snap_;
  std::shared_ptr<cache::BlobStore> base_;
};

}  // namespace

std::shared_ptr<cache::BlobStore> Snapshot::Overlay(std::shared_ptr<cache::BlobStore> base) const {
  return std::make_shared<SnapshotOverlay>(this, std::move(base));
}

namespace {

// Streams a file from disk into the CAS.
absl::Status UploadFile(cache::BlobStore& cas, const common::Digest& d, const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<cache::BlobWriter> w, cas.BeginWrite(d));
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::vector<char> buf(1 << 20);
  absl::Status s;
  while (true) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      s = common::ErrnoToStatus(errno, absl::StrCat("read ", path));
      break;
    }
    if (n == 0) break;
    s = w->Append(absl::string_view(buf.data(), static_cast<size_t>(n)));
    if (!s.ok()) break;
  }
  close(fd);
  if (s.ok()) s = w->Commit();
  return s;
}

}  // namespace

absl::StatusOr<Snapshot::UploadStats> Snapshot::Upload(cache::BlobStore& cas,
                                                       int parallelism) const {
  UploadStats stats;
  const std::map<common::Digest, std::string>& files_by_digest = files();
  std::vector<common::Digest> all;
  all.reserve(directories_.size() + files_by_digest.size());
  for (const auto& [d, bytes] : directories_) all.push_back(d);
  for (const auto& [d, path] : files_by_digest) all.push_back(d);
  stats.blobs_checked = static_cast<int64_t>(all.size());
  ASSIGN_OR_RETURN(std::vector<common::Digest> missing, cas.FindMissing(all));
  if (missing.empty()) return stats;

  // Work items: batches of small blobs (one BatchWrite each, up to kBatchBytes read into
  // memory at a time) and single large files (streamed). Taken by `parallelism` threads.
  constexpr int64_t kSmall = 1 << 20;
  constexpr int64_t kBatchBytes = 4 << 20;
  struct Item {
    std::vector<common::Digest> small;
    std::optional<common::Digest> large;
  };
  std::vector<Item> items;
  Item batch;
  int64_t batch_bytes = 0;
  for (const common::Digest& d : missing) {
    stats.blobs_written++;
    stats.bytes_written += d.size_bytes;
    if (d.size_bytes > kSmall) {
      items.push_back(Item{{}, d});
      continue;
    }
    if (batch_bytes + d.size_bytes > kBatchBytes && !batch.small.empty()) {
      items.push_back(std::move(batch));
      batch = Item{};
      batch_bytes = 0;
    }
    batch.small.push_back(d);
    batch_bytes += d.size_bytes;
  }
  if (!batch.small.empty()) items.push_back(std::move(batch));

  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto fail = [&](absl::Status s) {
    absl::MutexLock l(&mu);
    if (first_error.ok()) first_error = std::move(s);
  };
  auto failed = [&] {
    absl::MutexLock l(&mu);
    return !first_error.ok();
  };
  auto run = [&] {
    for (size_t i = next++; i < items.size() && !failed(); i = next++) {
      const Item& item = items[i];
      if (item.large) {
        const std::string& path = files_by_digest.at(*item.large);
        absl::Status s = UploadFile(cas, *item.large, path);
        if (!s.ok()) fail(common::Annotate(s, absl::StrCat("uploading context file ", path)));
        continue;
      }
      std::vector<std::string> data(item.small.size());
      std::vector<cache::BlobData> blobs;
      blobs.reserve(item.small.size());
      for (size_t j = 0; j < item.small.size(); ++j) {
        const common::Digest& d = item.small[j];
        auto dir = directories_.find(d);
        if (dir != directories_.end()) {
          blobs.push_back({d, dir->second});
          continue;
        }
        const std::string& path = files_by_digest.at(d);
        absl::StatusOr<std::string> bytes = common::ReadFile(path);
        if (!bytes.ok()) {
          fail(common::Annotate(bytes.status(), absl::StrCat("uploading context file ", path)));
          return;
        }
        data[j] = *std::move(bytes);
        blobs.push_back({d, data[j]});
      }
      absl::StatusOr<std::vector<absl::Status>> results = cas.BatchWrite(blobs);
      if (!results.ok()) {
        fail(common::Annotate(results.status(), "uploading the build context"));
        return;
      }
      for (size_t j = 0; j < results->size(); ++j) {
        if ((*results)[j].ok()) continue;
        auto f = files_by_digest.find(blobs[j].digest);
        fail(common::Annotate(
            (*results)[j], f != files_by_digest.end()
                               ? absl::StrCat("uploading context file ", f->second,
                                              " (changed since it was hashed?)")
                               : absl::StrCat("uploading directory ", blobs[j].digest.ToString())));
        return;
      }
    }
  };
  int n = std::max(1, std::min<int>(parallelism, static_cast<int>(items.size())));
  std::vector<std::thread> threads;
  for (int i = 1; i < n; ++i) threads.emplace_back(run);
  run();
  for (std::thread& t : threads) t.join();
  if (!first_error.ok()) return first_error;
  return stats;
}

}  // namespace farm::scheduler::context
