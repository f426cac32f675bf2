// SecretKey: the farm's key for hashing secret values (RUN --mount=type=secret contents) into
// cache keys. The same secret gives the same digest on every machine that has the farm's key,
// a different secret a different digest, and the digest says nothing about the value: it is
// HMAC-SHA256 under a key that never leaves the farm, so not even a guessed value can be
// checked against a cache key without it.
//
//   ASSIGN_OR_RETURN(auto key,
//   auth::SecretKey::LoadOrCreate("/var/lib/farm-scheduler/secret.key")); std::string digest =
//   key->Hash("farm.secret.v1", secret_value);   // 64 hex digits
//   // key->id(): a short public name of the key, to tell a key change from a secret change
//
// The key file holds 64 hex digits (32 random bytes) and a newline, mode 0600. Every machine
// that computes such keys (the scheduler's planner; `farm build` embedded has its own in
// $FARM_HOME) must share one file: copy it, do not let each create its own. Replacing the key
// changes every secret-keyed cache key (those steps miss once), nothing else.
#ifndef FARM_AUTH_SECRET_KEY_H_
#define FARM_AUTH_SECRET_KEY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm {
namespace auth {

class SecretKey {
 public:
  static constexpr size_t kKeySize = 32;

  // Loads the key at `path`, first creating it (32 bytes from the OpenSSL CSPRNG, mode 0600,
  // published atomically so concurrent creators agree on one key) if there is none; parent
  // directories are created 0700. FAILED_PRECONDITION if the file is readable or writable by
  // group or others, INVALID_ARGUMENT if it is not 64+ hex digits.
  static absl::StatusOr<std::unique_ptr<SecretKey>> LoadOrCreate(const std::string& path);
  // The same without creating: NOT_FOUND if there is no file.
  static absl::StatusOr<std::unique_ptr<SecretKey>> Load(const std::string& path);
  // From raw key bytes (at least kKeySize), for tests and tools.
  static absl::StatusOr<std::unique_ptr<SecretKey>> FromBytes(absl::string_view key);

  // HMAC-SHA256 of `value` for `purpose` (a fixed label per use, such as "farm.secret.v1", so
  // that one use's digests mean nothing in another), as 64 lowercase hex digits. Thread-safe.
  std::string Hash(absl::string_view purpose, absl::string_view value) const;
  // Raw HMAC-SHA256(key, message): 32 bytes.
  std::string Mac(absl::string_view message) const;
  // 16 hex digits naming the key (derived from it one-way), safe to log and show.
  const std::string& id() const { return id_; }

  ~SecretKey();
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;

 private:
  struct Pads;  // SHA-256 states after the HMAC inner and outer key blocks
  explicit SecretKey(std::string key);
  std::string key_;
  std::unique_ptr<Pads> pads_;
  std::string id_;
};

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_SECRET_KEY_H_
