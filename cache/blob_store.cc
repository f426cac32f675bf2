#include "cache/blob_store.h"

#include <unistd.h>

#include <cerrno>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::cache {

absl::Status BlobStore::Read(const Digest& digest, int64_t offset, int64_t limit,
                             const ReadSink& sink) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, OpenRead(digest, offset, limit));
  for (;;) {
    ASSIGN_OR_RETURN(absl::string_view chunk, reader->Next());
    if (chunk.empty()) return absl::OkStatus();
    RETURN_IF_ERROR(sink(chunk));
  }
}

absl::StatusOr<std::vector<absl::Status>> BlobStore::BatchWrite(absl::Span<const BlobData> blobs) {
  std::vector<absl::Status> out;
  out.reserve(blobs.size());
  for (const BlobData& b : blobs) out.push_back(WriteBlob(b.digest, b.data));
  return out;
}

absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BlobStore::BatchRead(
    absl::Span<const Digest> digests) {
  std::vector<absl::StatusOr<std::string>> out;
  out.reserve(digests.size());
  for (const Digest& d : digests) out.push_back(ReadBlob(d));
  return out;
}

absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> BlobStore::GetLayerInfo(
    absl::Span<const Digest> digests) {
  std::vector<absl::StatusOr<LayerInfo>> out;
  out.reserve(digests.size());
  for (const Digest& d : digests) {
    out.push_back([&]() -> absl::StatusOr<LayerInfo> {
      ASSIGN_OR_RETURN(std::unique_ptr<BlobReader> reader, OpenRead(d, 0, 0));
      LayerInfoComputer info(LayerInfoComputer::kInline);
      for (;;) {
        ASSIGN_OR_RETURN(absl::string_view chunk, reader->Next());
        if (chunk.empty()) break;
        info.Update(chunk);
      }
      return info.Finish(d);
    }());
  }
  return out;
}

absl::StatusOr<bool> BlobStore::Has(const Digest& digest) {
  ASSIGN_OR_RETURN(std::vector<Digest> missing, FindMissing({digest}));
  return missing.empty();
}

absl::Status BlobStore::WriteBlob(const Digest& digest, absl::string_view data) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, BeginWrite(digest));
  RETURN_IF_ERROR(writer->Append(data));
  return writer->Commit();
}

absl::Status BlobStore::WriteBlobFromFd(const Digest& digest, int fd) {
  ASSIGN_OR_RETURN(std::vector<Digest> missing, FindMissing({digest}));
  if (missing.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, BeginWrite(digest));
  std::vector<char> buf(common::ReadBufferSize(digest.size_bytes));
  int64_t offset = 0;
  while (offset < digest.size_bytes) {
    ssize_t n = pread(fd, buf.data(), buf.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return common::ErrnoToStatus(errno, absl::StrCat("read ", digest.OciString(), " to store"));
    }
    if (n == 0) {
      return absl::InternalError(
          absl::StrCat("the file holding ", digest.OciString(), " is shorter than the blob"));
    }
    RETURN_IF_ERROR(writer->Append(absl::string_view(buf.data(), static_cast<size_t>(n))));
    offset += n;
  }
  return writer->Commit();
}

absl::StatusOr<Digest> BlobStore::Put(absl::string_view data) {
  Digest d = common::DigestOf(data);
  RETURN_IF_ERROR(WriteBlob(d, data));
  return d;
}

absl::StatusOr<std::string> BlobStore::ReadBlob(const Digest& digest, int64_t max_size) {
  if (digest.size_bytes > max_size) {
    return absl::FailedPreconditionError(absl::StrCat("blob sha256:", digest.hash, " is ",
                                                      digest.size_bytes, " bytes, more than ",
                                                      max_size, " allowed in memory"));
  }
  std::string out;
  out.reserve(static_cast<size_t>(digest.size_bytes));
  RETURN_IF_ERROR(Read(digest, 0, 0, [&out](absl::string_view chunk) {
    out.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  }));
  return out;
}

}  // namespace farm::cache
