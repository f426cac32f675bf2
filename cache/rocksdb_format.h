// On-disk format of the RocksDB cache (internal to cache/rocksdb_*.cc). Changing anything here
// changes the format: bump kFormat and refuse to open older directories.
//
// Directory layout (DIR = RocksDbStoreOptions::dir):
//   DIR/db/       the RocksDB database: WAL, MANIFEST, and the SSTs of the LSM column families
//   DIR/chunks/   SSTs of the "chunks" column family (cf_paths): one file per large blob
//   DIR/tmp/      large blobs being written (emptied at every open)
//   DIR/max_size  the disk budget in bytes (text), so a restart without --max-size keeps it
//
// Column families and their keys. K = the blob key: 32 raw SHA-256 bytes + 8-byte big-endian
// size (40 bytes).
//   default  "format" -> kFormat; "c/global" -> counters (int64 array, merge-added);
//            "c/scope/<scope>" -> [entries, bytes]; "pending/"+K -> "" (a large blob whose
//            chunk file may exist without metadata: cleaned at open); "lease/<id>" -> Lease.
//   meta     K -> BlobMeta (30 bytes, then what the blob is as a layer when known: 1 byte
//            LayerState, and for gzip/zstd K(diff_id), 40 more): presence of every blob.
//   small    K -> the bytes of a blob of at most inline_max bytes.
//   chunks   K + 4-byte big-endian index -> chunk bytes; only written by ingesting one SST per
//            blob (never through the WAL or the memtable), so each large blob is exactly one
//            file at the bottom level, deleted whole with DeleteFilesInRanges.
//   lru      8-byte big-endian atime (ms) + type ('b' blob | 'a' action result) + id -> charge
//            (8 bytes): the eviction order, oldest first.
//   ac       scope + '\0' + K(action digest) -> AcValue: 1 version byte, 8-byte atime (ms),
//            then the serialized ActionResult exactly as it was given.
#ifndef FARM_CACHE_ROCKSDB_FORMAT_H_
#define FARM_CACHE_ROCKSDB_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/layer_info.h"
#include "common/digest.h"

namespace farm::cache {
namespace format {

inline constexpr absl::string_view kFormat = "farm-cache/2";
// Directories of this format open and are upgraded in place (their BlobMetas have no layer
// state: it is computed when first asked for). Older binaries refuse the upgraded directory.
inline constexpr absl::string_view kFormatV1 = "farm-cache/1";
inline constexpr size_t kKeySize = 40;

inline constexpr absl::string_view kCfMeta = "meta";
inline constexpr absl::string_view kCfSmall = "small";
inline constexpr absl::string_view kCfChunks = "chunks";
inline constexpr absl::string_view kCfLru = "lru";
inline constexpr absl::string_view kCfAc = "ac";

inline constexpr absl::string_view kFormatKey = "format";
inline constexpr absl::string_view kGlobalCountersKey = "c/global";
inline constexpr absl::string_view kScopeCountersPrefix = "c/scope/";
inline constexpr absl::string_view kPendingPrefix = "pending/";
inline constexpr absl::string_view kLeasePrefix = "lease/";

// Indexes into the "c/global" counters.
enum Counter {
  kBlobCount = 0,
  kBlobBytes = 1,    // sum of blob sizes
  kSmallCharge = 2,  // budget charge of small blobs
  kLargeCharge = 3,  // budget charge (file bytes) of large blobs
  kAcCount = 4,
  kAcCharge = 5,
  kEvictedBlobs = 6,
  kEvictedBytes = 7,
  kEvictedAc = 8,
  kNumCounters = 9,
};

void PutBigEndian64(std::string* out, uint64_t v);
void PutBigEndian32(std::string* out, uint32_t v);
uint64_t GetBigEndian64(const char* p);
uint32_t GetBigEndian32(const char* p);

// K for a (valid) digest, and back.
std::string BlobKey(const common::Digest& digest);
common::Digest DigestFromKey(absl::string_view key);
std::string ChunkKey(absl::string_view blob_key, uint32_t index);

enum class BlobKind : uint8_t { kSmall = 1, kLarge = 2 };

// What a blob is as a layer (cache/layer_info.h), computed while it was written or later.
enum class LayerState : uint8_t {
  kUnknown = 0,      // not computed yet (stored by format 1); encoded as no trailer at all
  kPlain = 1,        // neither gzip nor zstd: its diff_id is its digest
  kGzip = 2,         // diff_id follows
  kZstd = 3,         // diff_id follows
  kUndecodable = 4,  // starts like gzip/zstd but does not decompress
};

struct BlobMeta {
  BlobKind kind = BlobKind::kSmall;
  int64_t size = 0;
  int64_t charge = 0;  // bytes counted against the budget
  int64_t atime_ms = 0;
  uint32_t chunk_size = 0;  // large blobs only
  LayerState layer = LayerState::kUnknown;
  common::Digest diff_id;  // kGzip and kZstd only
};
std::string EncodeMeta(const BlobMeta& meta);
// Records a computed LayerInfo (or its INVALID_ARGUMENT: kUndecodable) in `meta`.
void SetLayerState(const absl::StatusOr<LayerInfo>& info, BlobMeta* meta);
// The LayerInfo `meta` records for `digest`; meta.layer must not be kUnknown.
absl::StatusOr<LayerInfo> LayerStateOf(const BlobMeta& meta, const common::Digest& digest);
bool DecodeMeta(absl::string_view value, BlobMeta* meta);

enum class LruType : char { kBlob = 'b', kAction = 'a' };
std::string LruKey(int64_t atime_ms, LruType type, absl::string_view id);
struct LruEntry {
  int64_t atime_ms = 0;
  LruType type = LruType::kBlob;
  std::string id;
};
bool DecodeLruKey(absl::string_view key, LruEntry* entry);
std::string EncodeInt64(int64_t v);
int64_t DecodeInt64(absl::string_view v);

std::string AcKey(absl::string_view scope, const common::Digest& key);
// Splits an ac key into its scope and action digest.
bool DecodeAcKey(absl::string_view ac_key, std::string* scope, common::Digest* key);
std::string EncodeAcValue(int64_t atime_ms, absl::string_view action_result);
// Returns false if `value` is not an AcValue.
bool DecodeAcValue(absl::string_view value, int64_t* atime_ms, absl::string_view* action_result);

// Counter arrays (little-endian int64s), added element-wise by the merge operator.
std::string EncodeCounters(const std::vector<int64_t>& values);
std::vector<int64_t> DecodeCounters(absl::string_view value);
// kNumCounters zeros: a delta to fill in and merge into kGlobalCountersKey.
std::vector<int64_t> ZeroCounters();

// Keys of the default column family.
std::string ScopeCountersKey(absl::string_view scope);  // -> [entries, bytes]
std::string PendingKey(absl::string_view blob_key);     // -> ""
std::string LeaseKey(absl::string_view lease_id);       // -> LeaseRecord

struct LeaseRecord {
  int64_t expiry_ms = 0;
  std::vector<std::string> keys;  // blob keys (K)
};
std::string EncodeLease(const LeaseRecord& lease);
bool DecodeLease(absl::string_view value, LeaseRecord* lease);

}  // namespace format
}  // namespace farm::cache

#endif  // FARM_CACHE_ROCKSDB_FORMAT_H_
