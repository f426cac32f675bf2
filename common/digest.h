// Content digests: SHA-256 of bytes plus their size, the identity of every blob in Farm.
//
// Two spellings exist on the wire: REAPI's (hash, size_bytes) pair and OCI's "sha256:<hex>"
// string (whose size travels separately in a descriptor). Digest holds both parts.
//
//   common::Sha256 h;
//   h.Update(chunk1); h.Update(chunk2);
//   common::Digest d = h.Finish();          // d.hash is 64 lowercase hex chars
//   std::string oci = d.OciString();        // "sha256:…"
//   ASSIGN_OR_RETURN(common::Digest p, common::Digest::ParseOci("sha256:…", size));
#ifndef FARM_COMMON_DIGEST_H_
#define FARM_COMMON_DIGEST_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::common {

struct Digest {
  std::string hash;  // lowercase hex SHA-256, 64 characters
  int64_t size_bytes = 0;

  // "sha256:<hex>" (OCI descriptor form; the size is not part of it).
  std::string OciString() const { return "sha256:" + hash; }
  // "<hex>/<size>" (REAPI resource-name form), also used in messages.
  std::string ToString() const;
  bool empty_blob() const;

  // Validates a hex hash (64 lowercase hex chars) and a non-negative size.
  static absl::StatusOr<Digest> Create(absl::string_view hash, int64_t size_bytes);
  // Parses "sha256:<hex>"; any other algorithm or a malformed hex is INVALID_ARGUMENT.
  static absl::StatusOr<Digest> ParseOci(absl::string_view oci, int64_t size_bytes);
  // Parses "<hex>/<size>".
  static absl::StatusOr<Digest> Parse(absl::string_view hash_slash_size);

  // The digest of the empty blob (e3b0c442…, 0).
  static const Digest& Empty();

  friend bool operator==(const Digest& a, const Digest& b) {
    return a.size_bytes == b.size_bytes && a.hash == b.hash;
  }
  friend bool operator!=(const Digest& a, const Digest& b) { return !(a == b); }
  friend bool operator<(const Digest& a, const Digest& b) {
    return a.hash != b.hash ? a.hash < b.hash : a.size_bytes < b.size_bytes;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine(std::move(h), d.hash, d.size_bytes);
  }
};

// True if `hex` is 64 lowercase hexadecimal characters.
bool IsValidSha256Hex(absl::string_view hex);

// Streaming SHA-256 (OpenSSL EVP: uses SHA-NI where the CPU has it). Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view data);
  void Update(const void* data, size_t n);
  // Returns the digest of everything passed to Update; the object may then be reused.
  Digest Finish();
  int64_t bytes() const { return bytes_; }

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
  int64_t bytes_ = 0;
};

// One-shot digest of `data`.
Digest DigestOf(absl::string_view data);
// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// `bytes` random bytes from the OS's cryptographic generator, as lowercase hex: unguessable ids
// (leases, requests, nonces). Aborts only if the kernel's generator fails, which it does not.
std::string RandomHex(int bytes);

}  // namespace farm::common

#endif  // FARM_COMMON_DIGEST_H_
