#include "cache/blob_store.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace cache {

absl::StatusOr<bool> BlobStore::Has(const Digest& digest) {
  ASSIGN_OR_RETURN(std::vector<Digest> missing, FindMissing({digest}));
  return missing.empty();
}

absl::Status BlobStore::WriteBlob(const Digest& digest, absl::string_view data) {
  ASSIGN_OR_RETURN(std::unique_ptr<BlobWriter> writer, BeginWrite(digest));
  RETURN_IF_ERROR(writer->Append(data));
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

}  // namespace cache
