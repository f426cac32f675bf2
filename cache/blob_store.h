// BlobStore: Farm's content-addressed storage (CAS) interface. Every layer, config, manifest,
// context file and log that Farm keeps is a blob named by its SHA-256 digest and size.
//
// Implementations are named for their strategy: RocksDbBlobStore (local, chunked, durable),
// GrpcBlobStore (a farm-cache or any REAPI v2 server); cross-cutting features decorate the
// interface instead of living inside one implementation.
//
//   ASSIGN_OR_RETURN(auto writer, store->BeginWrite(digest));
//   RETURN_IF_ERROR(writer->Append(chunk));       // as many times as needed, in order
//   RETURN_IF_ERROR(writer->Commit());            // verifies size + SHA-256, then visible
//   RETURN_IF_ERROR(store->Read(digest, 0, 0, [&](absl::string_view c) { ...; return OK; }));
//
//   // Pull-style reading (streaming servers, resumable downloads):
//   ASSIGN_OR_RETURN(auto reader, store->OpenRead(digest, /*offset=*/4096, /*limit=*/0));
//   for (;;) {
//     ASSIGN_OR_RETURN(absl::string_view chunk, reader->Next());
//     if (chunk.empty()) break;  // end of the requested range
//     ...
//   }
//
// Invariants every implementation keeps:
//   - A blob becomes visible (FindMissing, Read) only when whole and verified: its bytes hash
//     to its digest and its size matches. A failed or abandoned write leaves nothing visible.
//   - The empty blob (Digest::Empty()) is always present and never needs writing.
//   - All methods are thread-safe; concurrent writers of the same blob and readers during a
//     write are safe (one writer wins; the others' Commit also succeeds).
#ifndef FARM_CACHE_BLOB_STORE_H_
#define FARM_CACHE_BLOB_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "cache/layer_info.h"
#include "common/digest.h"

namespace farm::cache {

using common::Digest;

// Receives a blob's bytes in order; returning an error stops the read with that error.
using ReadSink = std::function<absl::Status(absl::string_view chunk)>;

// One in-progress write of one blob. Destroying it without Commit() discards the bytes.
// Not thread-safe (one writer per object).
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  // Appends the next bytes. Writing more bytes than the digest's size is INVALID_ARGUMENT.
  virtual absl::Status Append(absl::string_view data) = 0;
  // Bytes accepted so far.
  virtual int64_t committed_size() const = 0;
  // Verifies size and SHA-256 and makes the blob visible atomically. On a mismatch returns
  // INVALID_ARGUMENT naming the expected and actual digest, and nothing becomes visible.
  // If the blob is already present (another writer won), returns OK.
  virtual absl::Status Commit() = 0;
};

// A pull-style read of one blob range, opened by BlobStore::OpenRead. While it is open the blob
// is not evicted. Not thread-safe (one reader per object).
class BlobReader {
 public:
  virtual ~BlobReader() = default;
  // Returns the next bytes of the range (at most about 1 MiB), or an empty view once the range
  // is exhausted. The view stays valid until the next call or the reader's destruction.
  virtual absl::StatusOr<absl::string_view> Next() = 0;
};

// One blob for BlobStore::BatchWrite.
struct BlobData {
  Digest digest;
  absl::string_view data;
};

class BlobStore {
 public:
  using Ptr = std::shared_ptr<BlobStore>;
  virtual ~BlobStore() = default;

  // Returns the digests among `digests` that are not present, in the order given (duplicates
  // collapsed). Presence also refreshes a blob's recency for LRU eviction.
  virtual absl::StatusOr<std::vector<Digest>> FindMissing(absl::Span<const Digest> digests) = 0;

  // Streams bytes [offset, offset + limit) of the blob to `sink` in chunks (at most 1 MiB
  // each, never the whole blob in memory); limit 0 means "to the end". NOT_FOUND if absent;
  // OUT_OF_RANGE if offset > size; INVALID_ARGUMENT if offset or limit is negative.
  // The default implementation drives OpenRead.
  virtual absl::Status Read(const Digest& digest, int64_t offset, int64_t limit,
                            const ReadSink& sink);

  // Opens bytes [offset, offset + limit) of the blob for pull-style reading (limit 0: to the
  // end). Errors are reported here, before any byte: NOT_FOUND if absent, OUT_OF_RANGE if
  // offset > size, INVALID_ARGUMENT if offset or limit is negative.
  virtual absl::StatusOr<std::unique_ptr<BlobReader>> OpenRead(const Digest& digest, int64_t offset,
                                                               int64_t limit) = 0;

  // Starts writing `digest`. When the blob is already present an implementation may return a
  // writer that discards the bytes and whose Commit returns OK.
  virtual absl::StatusOr<std::unique_ptr<BlobWriter>> BeginWrite(const Digest& digest) = 0;

  // Pins `digests` against eviction until `ttl` from now (or until ReleaseLease). Digests not
  // present are ignored (and returned). Returns a lease id.
  struct Lease {
    std::string id;
    std::vector<Digest> missing;  // the digests that were not present and are not pinned
  };
  virtual absl::StatusOr<Lease> AcquireLease(absl::Span<const Digest> digests,
                                             absl::Duration ttl) = 0;
  virtual absl::Status ReleaseLease(const std::string& lease_id) = 0;

  // Batch operations for small blobs (REAPI BatchUpdateBlobs / BatchReadBlobs). The outer
  // status fails the whole call (e.g. UNAVAILABLE); otherwise there is one status per blob,
  // in the order given. Implementations may commit a batch in one durable write or one RPC;
  // the defaults loop over WriteBlob / ReadBlob.
  virtual absl::StatusOr<std::vector<absl::Status>> BatchWrite(absl::Span<const BlobData> blobs);
  virtual absl::StatusOr<std::vector<absl::StatusOr<std::string>>> BatchRead(
      absl::Span<const Digest> digests);

  // What each blob is as a layer (layer_info.h): its compression and diff_id, one result per
  // digest in the order given: NOT_FOUND if the blob is absent, INVALID_ARGUMENT if it starts
  // like gzip/zstd but does not decompress. The outer status fails the whole call. The
  // default implementation reads every blob back through OpenRead and hashes it (a full read
  // and decompression per call); RocksDbBlobStore keeps what it computed while the blob was
  // written, and GrpcBlobStore asks farm-cache (farm.v1.LayerInfo), so neither reads a blob.
  virtual absl::StatusOr<std::vector<absl::StatusOr<LayerInfo>>> GetLayerInfo(
      absl::Span<const Digest> digests);

  // Conveniences built on the methods above.
  absl::StatusOr<bool> Has(const Digest& digest);
  // Writes a whole blob held in memory (small blobs: configs, manifests, batch uploads).
  absl::Status WriteBlob(const Digest& digest, absl::string_view data);
  // Writes the first digest.size_bytes bytes of the file `fd` (read with pread from offset 0;
  // e.g. a spool file) as that blob, unless the store has it already.
  absl::Status WriteBlobFromFd(const Digest& digest, int fd);
  // Writes `data`, computing its digest. Returns the digest.
  absl::StatusOr<Digest> Put(absl::string_view data);
  // Reads a whole blob into memory; FAILED_PRECONDITION if it is larger than `max_size`.
  absl::StatusOr<std::string> ReadBlob(const Digest& digest, int64_t max_size = 64 << 20);
};

}  // namespace farm::cache

#endif  // FARM_CACHE_BLOB_STORE_H_
