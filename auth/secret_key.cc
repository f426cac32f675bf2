#include "auth/secret_key.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm {
namespace auth {

namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status WriteAllAndSync(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return common::ErrnoToStatus(errno, absl::StrCat("write ", path));
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (fsync(fd) != 0) return common::ErrnoToStatus(errno, absl::StrCat("fsync ", path));
  return absl::OkStatus();
}

// Creates `path` with a fresh key unless it exists. The key is written to a private temporary
// file and link()ed into place, which fails if another process got there first: then theirs
// is the key.
absl::Status CreateIfMissing(const std::string& path) {
  if (access(path.c_str(), F_OK) == 0) return absl::OkStatus();
  std::string dir = DirName(path);
  RETURN_IF_ERROR(common::MakeDirs(dir, 0700));
  unsigned char raw[SecretKey::kKeySize];
  if (RAND_bytes(raw, sizeof(raw)) != 1) {
    return absl::InternalError("RAND_bytes failed: no randomness for the secret key");
  }
  std::string text = absl::StrCat(
      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(raw), sizeof(raw))), "\n");
  OPENSSL_cleanse(raw, sizeof(raw));
  // A name of our own (not the pid: threads of one process may race here too).
  unsigned char nonce[8];
  if (RAND_bytes(nonce, sizeof(nonce)) != 1) return absl::InternalError("RAND_bytes failed");
  std::string tmp = absl::StrCat(
      path, ".tmp.",
      absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(nonce), sizeof(nonce))));
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("create ", tmp));
  absl::Status s = WriteAllAndSync(fd, text, tmp);
  OPENSSL_cleanse(text.data(), text.size());
  close(fd);
  if (s.ok() && link(tmp.c_str(), path.c_str()) != 0 && errno != EEXIST) {
    s = common::ErrnoToStatus(errno, absl::StrCat("link ", path));
  }
  unlink(tmp.c_str());
  if (!s.ok()) return s;
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

}  // namespace

// HMAC-SHA256 with its two key blocks hashed once: each Mac() copies the two SHA-256 states
// instead of fetching the algorithm and hashing the key again (OpenSSL 3's one-shot HMAC()
// costs ~3 us a call that way, 10x this; the dispatcher signs and checks every lease).
struct SecretKey::Pads {
  EVP_MD_CTX* inner = nullptr;
  EVP_MD_CTX* outer = nullptr;
  ~Pads() {
    EVP_MD_CTX_free(inner);
    EVP_MD_CTX_free(outer);
  }
};

SecretKey::~SecretKey() { OPENSSL_cleanse(key_.data(), key_.size()); }

SecretKey::SecretKey(std::string key) : key_(std::move(key)), pads_(std::make_unique<Pads>()) {
  constexpr size_t kBlock = 64;  // SHA-256's block size
  unsigned char k[kBlock] = {0};
  if (key_.size() > kBlock) {
    unsigned int n = 0;
    EVP_Digest(key_.data(), key_.size(), k, &n, EVP_sha256(), nullptr);
  } else {
    memcpy(k, key_.data(), key_.size());
  }
  unsigned char ipad[kBlock], opad[kBlock];
  for (size_t i = 0; i < kBlock; ++i) {
    ipad[i] = k[i] ^ 0x36;
    opad[i] = k[i] ^ 0x5c;
  }
  pads_->inner = EVP_MD_CTX_new();
  pads_->outer = EVP_MD_CTX_new();
  if (pads_->inner == nullptr || pads_->outer == nullptr ||
      EVP_DigestInit_ex(pads_->inner, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(pads_->inner, ipad, kBlock) != 1 ||
      EVP_DigestInit_ex(pads_->outer, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(pads_->outer, opad, kBlock) != 1) {
    std::abort();  // only allocation failure gets here
  }
  OPENSSL_cleanse(k, sizeof(k));
  OPENSSL_cleanse(ipad, sizeof(ipad));
  OPENSSL_cleanse(opad, sizeof(opad));
  id_ = absl::BytesToHexString(Mac("farm.secret-key-id").substr(0, 8));
}

absl::StatusOr<std::unique_ptr<SecretKey>> SecretKey::FromBytes(absl::string_view key) {
  if (key.size() < kKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("a secret key needs at least ", kKeySize, " bytes, not ", key.size()));
  }
  return std::unique_ptr<SecretKey>(new SecretKey(std::string(key)));
}

absl::StatusOr<std::unique_ptr<SecretKey>> SecretKey::Load(const std::string& path) {
  // Symlinks are followed (Kubernetes secret volumes are symlinks); the mode checked is the
  // file's.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return common::ErrnoToStatus(errno, absl::StrCat("secret key ", path));
  struct stat st;
  int r = fstat(fd, &st);
  close(fd);
  if (r != 0) return common::ErrnoToStatus(errno, absl::StrCat("secret key ", path));
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("secret key ", path, " is not a file"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("secret key %s is open to other users (mode %04o): chmod 600 %s", path,
                        st.st_mode & 07777, path));
  }
  ASSIGN_OR_RETURN(std::string text, common::ReadFile(path));
  absl::string_view hex = absl::StripAsciiWhitespace(text);
  bool is_hex = hex.size() % 2 == 0 && hex.size() >= 2 * kKeySize;
  for (char c : hex) is_hex = is_hex && absl::ascii_isxdigit(static_cast<unsigned char>(c));
  if (!is_hex) {
    OPENSSL_cleanse(text.data(), text.size());
    return absl::InvalidArgumentError(
        absl::StrCat("secret key ", path, ": want at least ", 2 * kKeySize, " hex digits (",
                     kKeySize, " random bytes), as written when the file is created"));
  }
  std::string key = absl::HexStringToBytes(hex);
  OPENSSL_cleanse(text.data(), text.size());
  return std::unique_ptr<SecretKey>(new SecretKey(std::move(key)));
}

absl::StatusOr<std::unique_ptr<SecretKey>> SecretKey::LoadOrCreate(const std::string& path) {
  RETURN_IF_ERROR(CreateIfMissing(path));
  return Load(path);
}

std::string SecretKey::Mac(absl::string_view message) const {
  // Copying from the shared states only reads them: concurrent callers are safe.
  unsigned char inner[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
  unsigned int inner_len = 0, len = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr || EVP_MD_CTX_copy_ex(ctx, pads_->inner) != 1 ||
      EVP_DigestUpdate(ctx, message.data(), message.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, inner, &inner_len) != 1 ||
      EVP_MD_CTX_copy_ex(ctx, pads_->outer) != 1 || EVP_DigestUpdate(ctx, inner, inner_len) != 1 ||
      EVP_DigestFinal_ex(ctx, md, &len) != 1) {
    std::abort();  // only allocation failure gets here
  }
  EVP_MD_CTX_free(ctx);
  return std::string(reinterpret_cast<char*>(md), len);
}

std::string SecretKey::Hash(absl::string_view purpose, absl::string_view value) const {
  // purpose is length-prefixed (8 bytes, big-endian), so (purpose, value) pairs never collide.
  std::string message;
  message.reserve(8 + purpose.size() + value.size());
  uint64_t n = purpose.size();
  for (int i = 7; i >= 0; --i) message += static_cast<char>((n >> (8 * i)) & 0xff);
  message.append(purpose.data(), purpose.size());
  message.append(value.data(), value.size());
  std::string mac = Mac(message);
  OPENSSL_cleanse(message.data(), message.size());
  return absl::BytesToHexString(mac);
}

}  // namespace auth
}  // namespace farm
