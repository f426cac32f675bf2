#include "cache/file_blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace cache {

namespace {

constexpr size_t kReadChunk = 1 << 20;

std::string RandomName() {
  static thread_local std::mt19937_64 rng(std::random_device{}() ^ static_cast<uint64_t>(getpid())
                                                                       << 32);
  return absl::StrFormat("%016x", rng());
}

absl::Status FsyncDir(const std::string& dir) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("open ", dir));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0) return common::ErrnoToStatus(e, absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

}  // namespace

class FileBlobWriter : public BlobWriter {
 public:
  FileBlobWriter(FileBlobStore* store, Digest digest, std::string tmp, int fd)
      : store_(store), digest_(std::move(digest)), tmp_(std::move(tmp)), fd_(fd) {}
  ~FileBlobWriter() override {
    if (fd_ >= 0) close(fd_);
    if (!committed_) unlink(tmp_.c_str());
  }

  absl::Status Append(absl::string_view data) override {
    if (committed_) return absl::FailedPreconditionError("write after Commit");
    if (written_ + static_cast<int64_t>(data.size()) > digest_.size_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("write of sha256:", digest_.hash, " exceeds its size ", digest_.size_bytes));
    }
    hash_.Update(data);
    while (!data.empty()) {
      ssize_t n = write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return common::ErrnoToStatus(errno, absl::StrCat("write ", tmp_));
      }
      data.remove_prefix(static_cast<size_t>(n));
      written_ += n;
    }
    return absl::OkStatus();
  }

  int64_t committed_size() const override { return written_; }

  absl::Status Commit() override {
    if (committed_) return absl::OkStatus();
    Digest actual = hash_.Finish();
    if (actual != digest_) {
      return absl::InvalidArgumentError(
          absl::StrCat("digest mismatch: expected sha256:", digest_.hash, " (", digest_.size_bytes,
                       " bytes), got sha256:", actual.hash, " (", actual.size_bytes, " bytes)"));
    }
    if (fsync(fd_) != 0) return common::ErrnoToStatus(errno, absl::StrCat("fsync ", tmp_));
    close(fd_);
    fd_ = -1;
    std::string dest = store_->PathOf(digest_);
    std::string dir = dest.substr(0, dest.rfind('/'));
    RETURN_IF_ERROR(common::MakeDirs(dir));
    if (rename(tmp_.c_str(), dest.c_str()) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("rename ", tmp_, " to ", dest));
    }
    committed_ = true;
    return FsyncDir(dir);
  }

 private:
  FileBlobStore* store_;
  Digest digest_;
  std::string tmp_;
  int fd_;
  common::Sha256 hash_;
  int64_t written_ = 0;
  bool committed_ = false;
};

// For a blob already present: accepts and drops the bytes; Commit succeeds.
class PresentBlobWriter : public BlobWriter {
 public:
  explicit PresentBlobWriter(int64_t size) : size_(size) {}
  absl::Status Append(absl::string_view data) override {
    if (written_ + static_cast<int64_t>(data.size()) > size_) {
      return absl::InvalidArgumentError("write exceeds the blob's size");
    }
    written_ += static_cast<int64_t>(data.size());
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return written_; }
  absl::Status Commit() override { return absl::OkStatus(); }

 private:
  int64_t size_;
  int64_t written_ = 0;
};

absl::StatusOr<std::unique_ptr<FileBlobStore>> FileBlobStore::Create(const std::string& root) {
  RETURN_IF_ERROR(common::MakeDirs(common::JoinPath(root, "blobs/sha256"), 0700));
  std::string tmp = common::JoinPath(root, "tmp");
  RETURN_IF_ERROR(common::MakeDirs(tmp, 0700));
  // Stale writes of crashed processes.
  if (DIR* d = opendir(tmp.c_str())) {
    time_t cutoff = time(nullptr) - 3600;
    while (struct dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      std::string path = common::JoinPath(tmp, name);
      struct stat st;
      if (stat(path.c_str(), &st) == 0 && st.st_mtime < cutoff) unlink(path.c_str());
    }
    closedir(d);
  }
  return std::unique_ptr<FileBlobStore>(new FileBlobStore(root));
}

std::string FileBlobStore::PathOf(const Digest& digest) const {
  return absl::StrCat(root_, "/blobs/sha256/", digest.hash.substr(0, 2), "/", digest.hash);
}

absl::StatusOr<std::vector<Digest>> FileBlobStore::FindMissing(absl::Span<const Digest> digests) {
  std::vector<Digest> missing;
  for (const Digest& d : digests) {
    if (d.empty_blob()) continue;
    if (std::find(missing.begin(), missing.end(), d) != missing.end()) continue;
    struct stat st;
    if (stat(PathOf(d).c_str(), &st) == 0 && st.st_size == d.size_bytes) continue;
    missing.push_back(d);
  }
  return missing;
}

absl::Status FileBlobStore::Read(const Digest& digest, int64_t offset, int64_t limit,
                                 const ReadSink& sink) {
  if (offset < 0 || limit < 0) {
    return absl::InvalidArgumentError(absl::StrCat("negative offset (", offset, ") or limit (",
                                                   limit, ") reading sha256:", digest.hash));
  }
  if (digest.empty_blob()) {
    if (offset > 0) return absl::OutOfRangeError("offset beyond the empty blob");
    return absl::OkStatus();
  }
  std::string path = PathOf(digest);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("blob sha256:", digest.hash, " not found"));
    }
    return common::ErrnoToStatus(errno, absl::StrCat("open ", path));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size != digest.size_bytes) {
    close(fd);
    return absl::NotFoundError(
        absl::StrCat("blob sha256:", digest.hash, " not found with size ", digest.size_bytes));
  }
  if (offset > digest.size_bytes) {
    close(fd);
    return absl::OutOfRangeError(
        absl::StrCat("offset ", offset, " beyond size ", digest.size_bytes));
  }
  int64_t end = digest.size_bytes;
  if (limit > 0 && offset + limit < end) end = offset + limit;
  std::string buf(std::min<int64_t>(kReadChunk, std::max<int64_t>(end - offset, 1)), '\0');
  absl::Status status;
  int64_t pos = offset;
  while (pos < end) {
    size_t want = static_cast<size_t>(std::min<int64_t>(end - pos, buf.size()));
    ssize_t n = pread(fd, &buf[0], want, pos);
    if (n < 0) {
      if (errno == EINTR) continue;
      status = common::ErrnoToStatus(errno, absl::StrCat("read ", path));
      break;
    }
    if (n == 0) {
      status = absl::DataLossError(absl::StrCat("blob ", path, " is shorter than its size"));
      break;
    }
    status = sink(absl::string_view(buf.data(), static_cast<size_t>(n)));
    if (!status.ok()) break;
    pos += n;
  }
  close(fd);
  return status;
}

absl::StatusOr<std::unique_ptr<BlobWriter>> FileBlobStore::BeginWrite(const Digest& digest) {
  if (digest.empty_blob()) return std::unique_ptr<BlobWriter>(new PresentBlobWriter(0));
  struct stat st;
  if (stat(PathOf(digest).c_str(), &st) == 0 && st.st_size == digest.size_bytes) {
    return std::unique_ptr<BlobWriter>(new PresentBlobWriter(digest.size_bytes));
  }
  std::string tmp = absl::StrCat(root_, "/tmp/", digest.hash.substr(0, 12), ".", RandomName());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  return std::unique_ptr<BlobWriter>(new FileBlobWriter(this, digest, std::move(tmp), fd));
}

absl::StatusOr<BlobStore::Lease> FileBlobStore::AcquireLease(absl::Span<const Digest> digests,
                                                             absl::Duration) {
  Lease lease;
  lease.id = absl::StrCat("file-lease-", next_lease_.fetch_add(1));
  ASSIGN_OR_RETURN(lease.missing, FindMissing(digests));
  return lease;
}

absl::Status FileBlobStore::ReleaseLease(const std::string&) { return absl::OkStatus(); }

absl::Status FileBlobStore::Remove(const Digest& digest) {
  std::string path = PathOf(digest);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return common::ErrnoToStatus(errno, absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

}  // namespace cache
