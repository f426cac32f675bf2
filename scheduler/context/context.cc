#include "scheduler/context/context.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <optional>
#include <thread>

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

namespace farm::scheduler::context {

namespace {

namespace reapi = build::bazel::remote::execution::v2;

struct Entry {
  std::string path;  // relative
  worker::copy::FileInfo info;
  struct stat st;  // regular files: for the stat cache
};

int64_t Nanos(const struct timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

absl::Status HashFile(const std::string& path, int64_t expect_size, common::Digest* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
  common::Sha256 h;
  std::vector<char> buf(1 << 20);
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

class Walker {
 public:
  Walker(std::string root, const common::PatternMatcher& ignore, bool normalize)
      : root_(std::move(root)), ignore_(ignore), normalize_(normalize) {}

  absl::Status Walk(const std::string& rel, std::vector<Entry>* out) {
    std::string dir = rel.empty() ? root_ : common::JoinPath(root_, rel);
    // Children are stat'ed relative to the directory's fd: no path walk per file.
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return common::ErrnoToStatus(errno, absl::StrCat("opendir ", dir));
    DIR* d = fdopendir(dfd);
    if (d == nullptr) {
      close(dfd);
      return common::ErrnoToStatus(errno, absl::StrCat("opendir ", dir));
    }
    std::vector<std::string> names;
    while (struct dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      names.push_back(std::move(n));
    }
    std::sort(names.begin(), names.end());
    std::vector<struct stat> stats(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      if (fstatat(dfd, names[i].c_str(), &stats[i], AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) {
          stats[i].st_mode = 0;  // removed while walking
          continue;
        }
        int err = errno;
        closedir(d);
        return common::ErrnoToStatus(err, absl::StrCat("lstat ", common::JoinPath(dir, names[i])));
      }
    }
    closedir(d);
    for (size_t i = 0; i < names.size(); ++i) {
      const std::string& name = names[i];
      const struct stat& st = stats[i];
      if (st.st_mode == 0) continue;
      std::string child = rel.empty() ? name : absl::StrCat(rel, "/", name);
      bool excluded = !ignore_.empty() && ignore_.Matches(child);
      worker::copy::FileInfo fi;
      fi.mode = st.st_mode & 07777;
      if (S_ISDIR(st.st_mode)) {
        if (excluded && !ignore_.has_exclusions()) continue;
        fi.type = worker::copy::FileType::kDirectory;
        if (normalize_) fi.mode = 0755;
        size_t at = out->size();
        out->push_back(Entry{child, fi, st});
        RETURN_IF_ERROR(Walk(child, out));
        // An excluded directory stays only as the parent of something re-included.
        if (excluded && out->size() == at + 1) out->pop_back();
        continue;
      }
      if (excluded) continue;
      if (S_ISREG(st.st_mode)) {
        fi.type = worker::copy::FileType::kRegular;
        fi.size = st.st_size;
        if (normalize_) fi.mode = (st.st_mode & 0111) ? 0755 : 0644;
      } else if (S_ISLNK(st.st_mode)) {
        fi.type = worker::copy::FileType::kSymlink;
        fi.mode = 0777;
        std::vector<char> buf(static_cast<size_t>(st.st_size) + 1 > 4096
                                  ? static_cast<size_t>(st.st_size) + 1
                                  : 4096);
        std::string host = common::JoinPath(root_, child);
        ssize_t n = readlink(host.c_str(), buf.data(), buf.size());
        if (n < 0) return common::ErrnoToStatus(errno, absl::StrCat("readlink ", host));
        fi.link_target.assign(buf.data(), static_cast<size_t>(n));
      } else {
        continue;  // sockets, devices, FIFOs are not part of a build context
      }
      out->push_back(Entry{child, fi, st});
    }
    return absl::OkStatus();
  }

 private:
  std::string root_;
  const common::PatternMatcher& ignore_;
  bool normalize_;
};

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

  std::vector<Entry> entries;
  Walker walker(dir, *ignore, options.normalize_permissions);
  RETURN_IF_ERROR(walker.Walk("", &entries));
  // Hard links: names of one inode within the context form a group named by its first name in
  // walk order (deterministic, unlike inode numbers), as Docker's context transfer keeps them.
  std::map<std::pair<dev_t, ino_t>, std::vector<size_t>> inodes;
  for (size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    if (e.info.type == worker::copy::FileType::kRegular && e.st.st_nlink > 1) {
      inodes[{e.st.st_dev, e.st.st_ino}].push_back(i);
    }
  }
  for (const auto& [inode, names] : inodes) {
    if (names.size() < 2) continue;
    for (size_t i : names) entries[i].info.hardlink_group = entries[names.front()].path;
  }

  // Digests the stat cache vouches for; the other regular files are hashed, in parallel.
  absl::flat_hash_map<absl::string_view, const farm::v1::StatCacheFile::Entry*> cached;
  farm::v1::StatCacheFile cache_file;
  int64_t trust_before = 0;
  if (!options.stat_cache.empty()) {
    absl::StatusOr<std::string> bytes = common::ReadFile(options.stat_cache);
    if (bytes.ok() && cache_file.ParseFromString(*bytes)) {
      // Racy entries: a file changed within 2 s of the cache being written may have kept its
      // mtime; only older mtimes are trusted.
      trust_before = cache_file.written_unix_nanos() - 2000000000LL;
      cached.reserve(static_cast<size_t>(cache_file.entries_size()));
      for (const auto& e : cache_file.entries()) cached[e.path()] = &e;
    }
  }
  std::vector<size_t> files;
  for (size_t i = 0; i < entries.size(); ++i) {
    Entry& e = entries[i];
    if (e.info.type != worker::copy::FileType::kRegular) continue;
    auto it = cached.find(e.path);
    if (it != cached.end()) {
      const farm::v1::StatCacheFile::Entry& c = *it->second;
      int64_t mtime = Nanos(e.st.st_mtim);
      if (c.size() == e.st.st_size && c.mtime_nanos() == mtime &&
          c.ctime_nanos() == Nanos(e.st.st_ctim) && c.inode() == e.st.st_ino &&
          c.device() == e.st.st_dev && mtime < trust_before &&
          common::IsValidSha256Hex(c.sha256())) {
        common::Digest d;
        d.hash = c.sha256();
        d.size_bytes = c.size();
        e.info.digest = d;
        continue;
      }
    }
    files.push_back(i);
  }
  int threads =
      options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto work = [&]() {
    while (true) {
      size_t k = next.fetch_add(1);
      if (k >= files.size()) return;
      Entry& e = entries[files[k]];
      common::Digest d;
      absl::Status s = HashFile(common::JoinPath(dir, e.path), e.info.size, &d);
      if (!s.ok()) {
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = s;
        return;
      }
      e.info.digest = d;
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
  size_t regular = 0;
  for (const Entry& e : entries) regular += e.info.type == worker::copy::FileType::kRegular;
  bool cache_current = files.empty() && regular == cached.size();
  if (!options.stat_cache.empty() && !cache_current) {
    farm::v1::StatCacheFile out;
    out.set_written_unix_nanos(absl::ToUnixNanos(absl::Now()));
    for (const Entry& e : entries) {
      if (e.info.type != worker::copy::FileType::kRegular) continue;
      farm::v1::StatCacheFile::Entry* c = out.add_entries();
      c->set_path(e.path);
      c->set_size(e.st.st_size);
      c->set_mtime_nanos(Nanos(e.st.st_mtim));
      c->set_ctime_nanos(Nanos(e.st.st_ctim));
      c->set_inode(e.st.st_ino);
      c->set_device(e.st.st_dev);
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
        std::vector<char> buf(1 << 20);
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
  for (const Entry& e : entries) {
    if (e.info.type == worker::copy::FileType::kRegular) {
      ++snap->file_count_;
      snap->total_bytes_ += e.info.size;
      snap->files_.emplace(*e.info.digest, common::JoinPath(dir, e.path));
    }
    snap->tree_->Add(e.path, e.info);
  }

  // The Merkle tree, bottom-up: a directory's digest needs its children's.
  std::function<absl::StatusOr<reapi::Digest>(const std::string&)> build =
      [&](const std::string& rel) -> absl::StatusOr<reapi::Digest> {
    ASSIGN_OR_RETURN(std::vector<worker::copy::DirEntry> children, snap->tree_->ReadDir(rel));
    reapi::Directory d;
    for (const worker::copy::DirEntry& c : children) {
      std::string child = rel.empty() ? c.name : absl::StrCat(rel, "/", c.name);
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
          ASSIGN_OR_RETURN(reapi::Digest sub, build(child));
          reapi::DirectoryNode* n = d.add_directories();
          n->set_name(c.name);
          *n->mutable_digest() = sub;
          break;
        }
        case worker::copy::FileType::kSymlink: {
          reapi::SymlinkNode* l = d.add_symlinks();
          l->set_name(c.name);
          l->set_target(c.info.link_target);
          break;
        }
        default:
          break;
      }
    }
    if (!options.normalize_permissions && !rel.empty()) {
      absl::StatusOr<worker::copy::FileInfo> self = snap->tree_->Lstat(rel);
      if (self.ok()) d.mutable_node_properties()->mutable_unix_mode()->set_value(self->mode);
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
  ASSIGN_OR_RETURN(reapi::Digest root, build(""));
  snap->root_.set_digest(absl::StrCat("sha256:", root.hash()));
  snap->root_.set_size(root.size_bytes());
  return snap;
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
        buf_(1 << 20) {}
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
  std::vector<common::Digest> all;
  all.reserve(directories_.size() + files_.size());
  for (const auto& [d, bytes] : directories_) all.push_back(d);
  for (const auto& [d, path] : files_) all.push_back(d);
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
        const std::string& path = files_.at(*item.large);
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
        const std::string& path = files_.at(d);
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
        auto f = files_.find(blobs[j].digest);
        fail(common::Annotate(
            (*results)[j], f != files_.end()
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
