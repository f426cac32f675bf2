#include "common/digest.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace farm::common {
namespace {

std::string ToHex(const unsigned char* bytes, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(n * 2, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

}  // namespace

bool IsValidSha256Hex(absl::string_view hex) {
  if (hex.size() != 64) return false;
  for (char c : hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string Digest::ToString() const { return absl::StrCat(hash, "/", size_bytes); }

bool Digest::empty_blob() const { return *this == Empty(); }

absl::StatusOr<Digest> Digest::Create(absl::string_view hash, int64_t size_bytes) {
  if (!IsValidSha256Hex(hash)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid SHA-256 hash \"", hash, "\": want 64 lowercase hex characters"));
  }
  if (size_bytes < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid size ", size_bytes, " for digest ", hash));
  }
  return Digest{std::string(hash), size_bytes};
}

absl::StatusOr<Digest> Digest::ParseOci(absl::string_view oci, int64_t size_bytes) {
  if (!absl::ConsumePrefix(&oci, "sha256:")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported digest \"", oci, "\": want sha256:<64 hex>"));
  }
  return Create(oci, size_bytes);
}

absl::StatusOr<Digest> Digest::Parse(absl::string_view hash_slash_size) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(hash_slash_size, absl::MaxSplits('/', 1));
  int64_t size;
  if (!absl::SimpleAtoi(parts.second, &size)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid digest \"", hash_slash_size, "\": want <hash>/<size>"));
  }
  return Create(parts.first, size);
}

const Digest& Digest::Empty() {
  static const Digest* empty =
      new Digest{"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 0};
  return *empty;
}

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(new Ctx) {
  ctx_->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

void Sha256::Update(absl::string_view data) { Update(data.data(), data.size()); }

void Sha256::Update(const void* data, size_t n) {
  EVP_DigestUpdate(ctx_->md, data, n);
  bytes_ += static_cast<int64_t>(n);
}

Digest Sha256::Finish() {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, out, &len);
  Digest d{ToHex(out, len), bytes_};
  EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
  bytes_ = 0;
  return d;
}

Digest DigestOf(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

std::string Sha256Hex(absl::string_view data) { return DigestOf(data).hash; }

std::string RandomHex(int bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string raw(static_cast<size_t>(bytes), '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), bytes) != 1) {
    std::abort();  // OpenSSL's generator reads getrandom(2); it does not fail on Linux
  }
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char b : raw) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

}  // namespace farm::common
