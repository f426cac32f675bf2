#include "cache/testing/memory_stores.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace farm::cache::testing {

class MemoryBlobWriter : public BlobWriter {
 public:
  MemoryBlobWriter(MemoryBlobStore* store, Digest digest)
      : store_(store), digest_(std::move(digest)) {}

  absl::Status Append(absl::string_view data) override {
    if (static_cast<int64_t>(data_.size() + data.size()) > digest_.size_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("write of sha256:", digest_.hash, " exceeds its size ", digest_.size_bytes));
    }
    data_.append(data.data(), data.size());
    return absl::OkStatus();
  }
  int64_t committed_size() const override { return static_cast<int64_t>(data_.size()); }
  absl::Status Commit() override {
    Digest actual = common::DigestOf(data_);
    if (actual != digest_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "digest mismatch: expected ", digest_.ToString(), ", got ", actual.ToString()));
    }
    store_->Insert(digest_, std::move(data_));
    return absl::OkStatus();
  }

 private:
  MemoryBlobStore* store_;
  Digest digest_;
  std::string data_;
};

absl::StatusOr<std::vector<Digest>> MemoryBlobStore::FindMissing(absl::Span<const Digest> digests) {
  absl::MutexLock lock(&mu_);
  std::vector<Digest> missing;
  for (const Digest& d : digests) {
    if (d.empty_blob() || blobs_.count(d)) continue;
    if (std::find(missing.begin(), missing.end(), d) == missing.end()) missing.push_back(d);
  }
  return missing;
}

absl::Status MemoryBlobStore::Read(const Digest& digest, int64_t offset, int64_t limit,
                                   const ReadSink& sink) {
  if (offset < 0 || limit < 0) return absl::InvalidArgumentError("negative offset or limit");
  std::string data;
  if (!digest.empty_blob()) {
    absl::MutexLock lock(&mu_);
    auto it = blobs_.find(digest);
    if (it == blobs_.end()) {
      return absl::NotFoundError(absl::StrCat("blob sha256:", digest.hash, " not found"));
    }
    data = it->second;
  }
  if (offset > static_cast<int64_t>(data.size())) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " beyond size ", data.size()));
  }
  absl::string_view rest = absl::string_view(data).substr(static_cast<size_t>(offset));
  if (limit > 0 && static_cast<size_t>(limit) < rest.size()) rest = rest.substr(0, limit);
  while (!rest.empty()) {
    size_t n = std::min<size_t>(rest.size(), 1 << 20);
    absl::Status s = sink(rest.substr(0, n));
    if (!s.ok()) return s;
    rest.remove_prefix(n);
  }
  return absl::OkStatus();
}

namespace {

// Serves a copy of the requested range in chunks of at most 1 MiB.
class MemoryBlobReader : public BlobReader {
 public:
  explicit MemoryBlobReader(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<absl::string_view> Next() override {
    absl::string_view rest = absl::string_view(data_).substr(pos_);
    rest = rest.substr(0, std::min<size_t>(rest.size(), 1 << 20));
    pos_ += rest.size();
    return rest;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<BlobReader>> MemoryBlobStore::OpenRead(const Digest& digest,
                                                                      int64_t offset,
                                                                      int64_t limit) {
  std::string range;
  absl::Status s = Read(digest, offset, limit, [&range](absl::string_view chunk) {
    range.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  });
  if (!s.ok()) return s;
  return std::unique_ptr<BlobReader>(new MemoryBlobReader(std::move(range)));
}

absl::StatusOr<std::unique_ptr<BlobWriter>> MemoryBlobStore::BeginWrite(const Digest& digest) {
  return std::unique_ptr<BlobWriter>(new MemoryBlobWriter(this, digest));
}

absl::StatusOr<BlobStore::Lease> MemoryBlobStore::AcquireLease(absl::Span<const Digest> digests,
                                                               absl::Duration) {
  Lease lease;
  absl::StatusOr<std::vector<Digest>> missing = FindMissing(digests);
  if (!missing.ok()) return missing.status();
  lease.missing = *std::move(missing);
  absl::MutexLock lock(&mu_);
  lease.id = absl::StrCat("lease-", ++next_lease_);
  return lease;
}

absl::Status MemoryBlobStore::ReleaseLease(const std::string&) { return absl::OkStatus(); }

void MemoryBlobStore::Insert(const Digest& digest, std::string data) {
  absl::MutexLock lock(&mu_);
  if (blobs_.emplace(digest, std::move(data)).second) ++writes_;
}

void MemoryBlobStore::Remove(const Digest& digest) {
  absl::MutexLock lock(&mu_);
  blobs_.erase(digest);
}

size_t MemoryBlobStore::size() const {
  absl::MutexLock lock(&mu_);
  return blobs_.size();
}

int MemoryBlobStore::writes() const {
  absl::MutexLock lock(&mu_);
  return writes_;
}

absl::StatusOr<std::string> MemoryActionCache::Get(absl::Span<const std::string> scopes,
                                                   const common::Digest& key) {
  absl::MutexLock lock(&mu_);
  for (const std::string& scope : scopes) {
    auto it = entries_.find({scope, key});
    if (it != entries_.end()) return it->second;
  }
  return absl::NotFoundError(absl::StrCat("no action result for ", key.ToString()));
}

absl::Status MemoryActionCache::Update(const std::string& scope, const common::Digest& key,
                                       absl::string_view action_result) {
  absl::MutexLock lock(&mu_);
  entries_[{scope, key}] = std::string(action_result);
  return absl::OkStatus();
}

}  // namespace farm::cache::testing
