#include "cache/rocksdb_format.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace farm::cache {
namespace format {
namespace {

constexpr uint8_t kMetaVersion = 1;
constexpr size_t kMetaSize = 2 + 8 + 8 + 8 + 4;
constexpr uint8_t kAcVersion = 1;

int HexValue(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

}  // namespace

void PutBigEndian64(std::string* out, uint64_t v) {
  char buf[8];
  for (int i = 7; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 8);
}

void PutBigEndian32(std::string* out, uint32_t v) {
  char buf[4];
  for (int i = 3; i >= 0; --i) {
    buf[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(buf, 4);
}

uint64_t GetBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

uint32_t GetBigEndian32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string BlobKey(const common::Digest& digest) {
  std::string key;
  key.reserve(kKeySize);
  for (size_t i = 0; i + 1 < digest.hash.size(); i += 2) {
    key.push_back(static_cast<char>(HexValue(digest.hash[i]) << 4 | HexValue(digest.hash[i + 1])));
  }
  PutBigEndian64(&key, static_cast<uint64_t>(digest.size_bytes));
  return key;
}

common::Digest DigestFromKey(absl::string_view key) {
  static constexpr char kHex[] = "0123456789abcdef";
  common::Digest d;
  d.hash.resize(64);
  for (size_t i = 0; i < 32; ++i) {
    uint8_t b = static_cast<uint8_t>(key[i]);
    d.hash[2 * i] = kHex[b >> 4];
    d.hash[2 * i + 1] = kHex[b & 0xf];
  }
  d.size_bytes = static_cast<int64_t>(GetBigEndian64(key.data() + 32));
  return d;
}

std::string ChunkKey(absl::string_view blob_key, uint32_t index) {
  std::string key(blob_key);
  PutBigEndian32(&key, index);
  return key;
}

std::string EncodeMeta(const BlobMeta& meta) {
  std::string out;
  out.reserve(kMetaSize);
  out.push_back(static_cast<char>(kMetaVersion));
  out.push_back(static_cast<char>(meta.kind));
  PutBigEndian64(&out, static_cast<uint64_t>(meta.size));
  PutBigEndian64(&out, static_cast<uint64_t>(meta.charge));
  PutBigEndian64(&out, static_cast<uint64_t>(meta.atime_ms));
  PutBigEndian32(&out, meta.chunk_size);
  if (meta.layer != LayerState::kUnknown) {
    out.push_back(static_cast<char>(meta.layer));
    if (meta.layer == LayerState::kGzip || meta.layer == LayerState::kZstd) {
      out += BlobKey(meta.diff_id);
    }
  }
  return out;
}

bool DecodeMeta(absl::string_view value, BlobMeta* meta) {
  if (value.size() < kMetaSize || static_cast<uint8_t>(value[0]) != kMetaVersion) return false;
  meta->layer = LayerState::kUnknown;
  meta->diff_id = common::Digest();
  if (value.size() > kMetaSize) {
    uint8_t layer = static_cast<uint8_t>(value[kMetaSize]);
    const bool compressed = layer == static_cast<uint8_t>(LayerState::kGzip) ||
                            layer == static_cast<uint8_t>(LayerState::kZstd);
    if (layer > static_cast<uint8_t>(LayerState::kUndecodable) || layer == 0) return false;
    if (value.size() != kMetaSize + 1 + (compressed ? kKeySize : 0)) return false;
    meta->layer = static_cast<LayerState>(layer);
    if (compressed) meta->diff_id = DigestFromKey(value.substr(kMetaSize + 1));
  }
  uint8_t kind = static_cast<uint8_t>(value[1]);
  if (kind != static_cast<uint8_t>(BlobKind::kSmall) &&
      kind != static_cast<uint8_t>(BlobKind::kLarge)) {
    return false;
  }
  meta->kind = static_cast<BlobKind>(kind);
  meta->size = static_cast<int64_t>(GetBigEndian64(value.data() + 2));
  meta->charge = static_cast<int64_t>(GetBigEndian64(value.data() + 10));
  meta->atime_ms = static_cast<int64_t>(GetBigEndian64(value.data() + 18));
  meta->chunk_size = GetBigEndian32(value.data() + 26);
  return true;
}

void SetLayerState(const absl::StatusOr<LayerInfo>& info, BlobMeta* meta) {
  meta->diff_id = common::Digest();
  if (!info.ok()) {
    meta->layer = LayerState::kUndecodable;
    return;
  }
  switch (info->compression) {
    case oci::Compression::kNone:
      meta->layer = LayerState::kPlain;
      return;
    case oci::Compression::kGzip:
      meta->layer = LayerState::kGzip;
      break;
    case oci::Compression::kZstd:
      meta->layer = LayerState::kZstd;
      break;
  }
  meta->diff_id = info->diff_id;
}

absl::StatusOr<LayerInfo> LayerStateOf(const BlobMeta& meta, const common::Digest& digest) {
  LayerInfo info;
  switch (meta.layer) {
    case LayerState::kUnknown:
      return absl::InternalError(absl::StrCat("blob ", digest.ToString(), ": layer not known"));
    case LayerState::kUndecodable:
      return absl::InvalidArgumentError(absl::StrCat(
          "blob ", digest.ToString(), " looks gzip- or zstd-compressed but does not decompress"));
    case LayerState::kPlain:
      info.diff_id = digest;
      return info;
    case LayerState::kGzip:
      info.compression = oci::Compression::kGzip;
      break;
    case LayerState::kZstd:
      info.compression = oci::Compression::kZstd;
      break;
  }
  info.diff_id = meta.diff_id;
  return info;
}

std::string LruKey(int64_t atime_ms, LruType type, absl::string_view id) {
  std::string key;
  key.reserve(9 + id.size());
  PutBigEndian64(&key, static_cast<uint64_t>(atime_ms));
  key.push_back(static_cast<char>(type));
  key.append(id.data(), id.size());
  return key;
}

bool DecodeLruKey(absl::string_view key, LruEntry* entry) {
  if (key.size() < 9) return false;
  entry->atime_ms = static_cast<int64_t>(GetBigEndian64(key.data()));
  char t = key[8];
  if (t != static_cast<char>(LruType::kBlob) && t != static_cast<char>(LruType::kAction)) {
    return false;
  }
  entry->type = static_cast<LruType>(t);
  entry->id = std::string(key.substr(9));
  return true;
}

std::string EncodeInt64(int64_t v) {
  std::string out;
  PutBigEndian64(&out, static_cast<uint64_t>(v));
  return out;
}

int64_t DecodeInt64(absl::string_view v) {
  return v.size() == 8 ? static_cast<int64_t>(GetBigEndian64(v.data())) : 0;
}

std::string AcKey(absl::string_view scope, const common::Digest& key) {
  return absl::StrCat(scope, absl::string_view("\0", 1), BlobKey(key));
}

bool DecodeAcKey(absl::string_view ac_key, std::string* scope, common::Digest* key) {
  if (ac_key.size() < kKeySize + 1 || ac_key[ac_key.size() - kKeySize - 1] != '\0') return false;
  *scope = std::string(ac_key.substr(0, ac_key.size() - kKeySize - 1));
  *key = DigestFromKey(ac_key.substr(ac_key.size() - kKeySize));
  return true;
}

std::string EncodeAcValue(int64_t atime_ms, absl::string_view action_result) {
  std::string out;
  out.reserve(9 + action_result.size());
  out.push_back(static_cast<char>(kAcVersion));
  PutBigEndian64(&out, static_cast<uint64_t>(atime_ms));
  out.append(action_result.data(), action_result.size());
  return out;
}

bool DecodeAcValue(absl::string_view value, int64_t* atime_ms, absl::string_view* action_result) {
  if (value.size() < 9 || static_cast<uint8_t>(value[0]) != kAcVersion) return false;
  *atime_ms = static_cast<int64_t>(GetBigEndian64(value.data() + 1));
  *action_result = value.substr(9);
  return true;
}

std::string EncodeCounters(const std::vector<int64_t>& values) {
  std::string out(values.size() * 8, '\0');
  for (size_t i = 0; i < values.size(); ++i) {
    uint64_t v = static_cast<uint64_t>(values[i]);
    for (int b = 0; b < 8; ++b) out[i * 8 + b] = static_cast<char>((v >> (8 * b)) & 0xff);
  }
  return out;
}

std::vector<int64_t> DecodeCounters(absl::string_view value) {
  std::vector<int64_t> out(value.size() / 8);
  for (size_t i = 0; i < out.size(); ++i) {
    uint64_t v = 0;
    for (int b = 7; b >= 0; --b) v = (v << 8) | static_cast<uint8_t>(value[i * 8 + b]);
    out[i] = static_cast<int64_t>(v);
  }
  return out;
}

std::vector<int64_t> ZeroCounters() { return std::vector<int64_t>(kNumCounters, 0); }

std::string ScopeCountersKey(absl::string_view scope) {
  return absl::StrCat(kScopeCountersPrefix, scope);
}

std::string PendingKey(absl::string_view blob_key) {
  return absl::StrCat(kPendingPrefix, blob_key);
}

std::string LeaseKey(absl::string_view lease_id) { return absl::StrCat(kLeasePrefix, lease_id); }

std::string EncodeLease(const LeaseRecord& lease) {
  std::string out;
  PutBigEndian64(&out, static_cast<uint64_t>(lease.expiry_ms));
  PutBigEndian32(&out, static_cast<uint32_t>(lease.keys.size()));
  for (const std::string& k : lease.keys) out.append(k);
  return out;
}

bool DecodeLease(absl::string_view value, LeaseRecord* lease) {
  if (value.size() < 12) return false;
  lease->expiry_ms = static_cast<int64_t>(GetBigEndian64(value.data()));
  uint32_t n = GetBigEndian32(value.data() + 8);
  if (value.size() != 12 + static_cast<size_t>(n) * kKeySize) return false;
  lease->keys.clear();
  lease->keys.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    lease->keys.emplace_back(value.substr(12 + i * kKeySize, kKeySize));
  }
  return true;
}

}  // namespace format
}  // namespace farm::cache
