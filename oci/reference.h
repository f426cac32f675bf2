// Reference: an image name as Docker parses and normalizes it (github.com/distribution/reference,
// ParseNormalizedNamed), so `alpine`, `library/alpine:latest` and
// `docker.io/library/alpine:latest` all name the same thing.
//
//   [registry[:port]/]path-component[/path-component...][:tag][@algorithm:hex]
//
// Normalization, exactly as Docker:
//   - no registry: the first component is a registry only if it contains "." or ":", is
//     "localhost", or has an uppercase letter; otherwise the whole name is a Docker Hub path
//     (`foo/bar` is docker.io/foo/bar, `localhost:5000/x` is registry localhost:5000);
//   - docker.io (and the legacy index.docker.io) single-component paths get "library/";
//   - path components are lowercase alphanumerics joined by ".", "_", "__" or runs of "-";
//     the name (registry included) is at most 255 characters;
//   - tags are [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; digests are algorithm:hex with the hex length
//     the algorithm requires (sha256: 64 lowercase hex);
//   - a bare 64-hex string is refused as a name (it is an image ID, see ImageStore lookups).
//
//   ASSIGN_OR_RETURN(oci::Reference r, oci::Reference::Parse("alpine"));
//   r.String();          // "docker.io/library/alpine"
//   r.WithDefaultTag();  // docker.io/library/alpine:latest
//   r.FamiliarString();  // "alpine"
#ifndef FARM_OCI_REFERENCE_H_
#define FARM_OCI_REFERENCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace farm::oci {

inline constexpr char kDefaultDomain[] = "docker.io";
inline constexpr char kDefaultTag[] = "latest";

class Reference {
 public:
  // Parses and normalizes `text` (ParseNormalizedNamed). INVALID_ARGUMENT with Docker's wording
  // ("invalid reference format", "repository name (library/Foo) must be lowercase", ...) and
  // the text quoted.
  static absl::StatusOr<Reference> Parse(absl::string_view text);
  // Parse, then add the "latest" tag if there is neither tag nor digest (what `docker pull`,
  // `docker tag` and FROM do).
  static absl::StatusOr<Reference> ParseWithDefaultTag(absl::string_view text);

  // Builds a reference from parts already known to be valid parts of a parsed reference
  // (e.g. a Name() plus a tag validated with IsValidTag). INVALID_ARGUMENT otherwise.
  static absl::StatusOr<Reference> FromParts(absl::string_view domain, absl::string_view path,
                                             absl::string_view tag, absl::string_view digest);

  const std::string& domain() const { return domain_; }  // "docker.io", "localhost:5000"
  const std::string& path() const { return path_; }      // "library/alpine"
  const std::string& tag() const { return tag_; }        // "" if none
  const std::string& digest() const { return digest_; }  // "sha256:…" or ""
  bool has_tag() const { return !tag_.empty(); }
  bool has_digest() const { return !digest_.empty(); }

  // "docker.io/library/alpine"
  std::string Name() const;
  // "docker.io/library/alpine:3.19@sha256:…" (tag and digest when present)
  std::string String() const;
  // Docker's short forms: "alpine", "foo/bar", "localhost:5000/x".
  std::string FamiliarName() const;
  std::string FamiliarString() const;

  Reference WithDefaultTag() const;  // adds "latest" when there is neither tag nor digest
  Reference WithTag(absl::string_view tag) const;        // tag must be valid; drops any digest
  Reference WithDigest(absl::string_view digest) const;  // digest must be valid; drops the tag
  Reference NameOnly() const;                            // no tag, no digest

  friend bool operator==(const Reference& a, const Reference& b) {
    return a.domain_ == b.domain_ && a.path_ == b.path_ && a.tag_ == b.tag_ &&
           a.digest_ == b.digest_;
  }
  friend bool operator!=(const Reference& a, const Reference& b) { return !(a == b); }
  friend bool operator<(const Reference& a, const Reference& b) { return a.String() < b.String(); }

 private:
  std::string domain_;
  std::string path_;
  std::string tag_;
  std::string digest_;
};

// Grammar pieces, exposed for flag validation and tests.
bool IsValidTag(absl::string_view tag);
// algorithm:hex with a registered algorithm (sha256, sha384, sha512) and exact hex length.
absl::Status ValidateDigest(absl::string_view digest);
// True for 64 lowercase hex characters (an image ID without "sha256:").
bool IsIdentifier(absl::string_view text);

// The host to contact for a reference's domain: "registry-1.docker.io" for docker.io, else the
// domain itself.
std::string RegistryHostFor(absl::string_view domain);

}  // namespace farm::oci

#endif  // FARM_OCI_REFERENCE_H_
