#include "cache/read_through_blob_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace farm::cache {

void ReadThroughBlobStore::Keep(const Digest& d, absl::string_view data) {
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = local_->BeginWrite(d);
  if (!w.ok()) return;
  // The local store checks the bytes against the digest before they become visible.
  if ((*w)->Append(data).ok() && (*w)->Commit().ok()) ++copied_;
}

absl::Status ReadThroughBlobStore::Read(const Digest& digest, int64_t offset, int64_t limit,
                                        const ReadSink& sink) {
  if (!Cacheable(digest)) return remote_->Read(digest, offset, limit, sink);
  // The whole blob, from the local copy or the remote (then kept), then the asked range.
  std::string data;
  absl::Status local = local_->Read(digest, 0, 0, [&data](absl::string_view chunk) {
    data.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  });
  if (local.ok() && static_cast<int64_t>(data.size()) == digest.size_bytes) {
    ++local_hits_;
  } else {
    data.clear();
    RETURN_IF_ERROR(remote_->Read(digest, 0, 0, [&data](absl::string_view chunk) {
      data.append(chunk.data(), chunk.size());
      return absl::OkStatus();
    }));
    Keep(digest, data);
  }
  if (offset < 0 || limit < 0) return absl::InvalidArgumentError("negative offset or limit");
  if (offset > static_cast<int64_t>(data.size())) {
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " is past the end of ",
                                              digest.ToString(), " (", data.size(), " bytes)"));
  }
  absl::string_view range(data);
  range.remove_prefix(static_cast<size_t>(offset));
  if (limit > 0 && static_cast<size_t>(limit) < range.size()) range = range.substr(0, limit);
  constexpr size_t kChunk = 1 << 20;
  for (size_t at = 0; at < range.size(); at += kChunk) {
    RETURN_IF_ERROR(sink(range.substr(at, kChunk)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> ReadThroughBlobStore::BatchRead(
    absl::Span<const Digest> digests) {
  std::vector<absl::StatusOr<std::string>> out(digests.size(), absl::NotFoundError("not read"));
  std::vector<Digest> local_wanted;
  for (const Digest& d : digests) {
    if (Cacheable(d)) local_wanted.push_back(d);
  }
  std::vector<size_t> remote_index;
  absl::StatusOr<std::vector<absl::StatusOr<std::string>>> local =
      local_wanted.empty() ? std::vector<absl::StatusOr<std::string>>()
                           : local_->BatchRead(local_wanted);
  size_t k = 0;
  for (size_t i = 0; i < digests.size(); ++i) {
    if (Cacheable(digests[i])) {
      if (local.ok() && k < local->size() && (*local)[k].ok()) {
        out[i] = std::move((*local)[k]);
        ++local_hits_;
        ++k;
        continue;
      }
      ++k;
    }
    remote_index.push_back(i);
  }
  if (remote_index.empty()) return out;
  std::vector<Digest> remote_wanted;
  for (size_t i : remote_index) remote_wanted.push_back(digests[i]);
  ASSIGN_OR_RETURN(std::vector<absl::StatusOr<std::string>> remote,
                   remote_->BatchRead(remote_wanted));
  for (size_t j = 0; j < remote_index.size() && j < remote.size(); ++j) {
    size_t i = remote_index[j];
    if (remote[j].ok() && Cacheable(digests[i])) Keep(digests[i], *remote[j]);
    out[i] = std::move(remote[j]);
  }
  return out;
}

}  // namespace farm::cache
