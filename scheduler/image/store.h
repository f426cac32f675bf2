// The local image store: which images exist (records of their manifests, configs and layers,
// whose blobs live in the CAS) and the names that point at them (tags and digest references),
// with Docker's semantics on top (lookup by name or ID, rmi, dangling images).
//
// An image is identified by the digest of its manifest (or of its index, for a multi-platform
// image); its ID, as `farm images` shows it, is its config digest (the index digest for an
// index). A tag reference (name:tag) moves when set again; a digest reference (name@sha256:…)
// can only name the image whose manifest (or source index) has that digest. An image no name
// points at stays until removed, shown as <none>:<none> (dangling), as in Docker.
//
// RocksDbImageStore keeps everything in one RocksDB database (e.g. $FARM_HOME/images):
//   img/<digest>  → the ImageRecord as JSON
//   ref/<reference> → digest           (reference in canonical form, docker.io/library/x:tag)
//   rev/<digest>/<reference> → ""      (reverse index: the references of an image)
// Updates of a reference are one atomic write batch.
//
//   ASSIGN_OR_RETURN(auto store, scheduler::image::RocksDbImageStore::Create(home + "/images"));
//   RETURN_IF_ERROR(store->Put(record));
//   ASSIGN_OR_RETURN(std::string previous, store->SetReference(ref, record.digest));
//   ASSIGN_OR_RETURN(scheduler::image::ImageRecord r, scheduler::image::LookupImage(*store,
//   "alpine"));
#ifndef FARM_SCHEDULER_IMAGE_STORE_H_
#define FARM_SCHEDULER_IMAGE_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "cache/blob_store.h"
#include "common/digest.h"
#include "farm/v1/step.pb.h"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace farm::scheduler::image {

// One platform's image manifest as the store remembers it.
struct StoredManifest {
  std::string digest;  // "sha256:…" of the manifest
  std::string media_type;
  int64_t size = 0;
  std::string config_digest;  // the image ID
  std::string config_media_type;
  int64_t config_size = 0;
  std::string platform;  // "linux/amd64"
  // Bottom to top. uncompressed_size is -1 when unknown.
  std::vector<farm::v1::Layer> layers;
};

struct ImageRecord {
  std::string digest;      // the manifest's or the index's digest: the image's identity
  std::string media_type;  // of that manifest / index
  int64_t size = 0;        // bytes of that manifest / index
  // One entry for an image manifest; the platforms' manifests for an index.
  std::vector<StoredManifest> manifests;
  std::string created;        // the config's "created" (RFC 3339), "" if absent
  int64_t added_unix = 0;     // when the image entered the store
  int64_t last_tag_unix = 0;  // when a tag last moved onto it (0: never)
  // Indexes this image was selected from by platform (a pull of a multi-platform tag): the
  // image can be named NAME@<index digest>, as Docker's RepoDigests do.
  std::vector<std::string> index_digests;
  // Repositories ("registry/path") the image was pulled from or pushed to: candidates for a
  // cross-repository blob mount when pushing.
  std::vector<std::string> sources;

  bool is_index() const { return oci::IsIndexMediaType(media_type); }
  // The ID `farm images` shows: "sha256:<config digest>" (index: the index digest).
  std::string Id() const;
  // Sum of the layers' uncompressed sizes (compressed size where unknown), as Docker's SIZE.
  int64_t ContentSize() const;
  // Every blob the image holds: manifest(s)/index, config(s), layers. No duplicates.
  std::vector<common::Digest> Blobs() const;
  // The manifest for `platform` (the only one for a single-platform image, if it matches).
  absl::StatusOr<const StoredManifest*> ForPlatform(const oci::Platform& platform) const;

  std::string ToJson() const;
  static absl::StatusOr<ImageRecord> FromJson(absl::string_view json);
};

class ImageStore {
 public:
  using Ptr = std::shared_ptr<ImageStore>;
  virtual ~ImageStore() = default;

  // Adds an image, or updates it: index_digests and sources are merged with the stored ones,
  // added_unix/last_tag_unix kept. The caller has put every blob of the record in the CAS.
  virtual absl::Status Put(const ImageRecord& record) = 0;
  // NOT_FOUND if absent.
  virtual absl::StatusOr<ImageRecord> Get(absl::string_view digest) = 0;
  virtual absl::StatusOr<std::vector<ImageRecord>> List() = 0;
  // Deletes the record and every reference to it. OK if absent.
  virtual absl::Status Delete(absl::string_view digest) = 0;

  // Points `ref` (a tag or digest reference) at the image `digest` (NOT_FOUND if no such
  // image; INVALID_ARGUMENT for a digest reference whose digest is not the image's nor one of
  // its index_digests). Returns the digest the reference pointed at before ("" if none).
  virtual absl::StatusOr<std::string> SetReference(const oci::Reference& ref,
                                                   absl::string_view digest) = 0;
  // NOT_FOUND if `ref` names nothing.
  virtual absl::Status RemoveReference(const oci::Reference& ref) = 0;
  // The digest `ref` points at (exact reference, no defaults). NOT_FOUND if none.
  virtual absl::StatusOr<std::string> ResolveReference(const oci::Reference& ref) = 0;
  // References pointing at `digest`, sorted.
  virtual absl::StatusOr<std::vector<oci::Reference>> ReferencesTo(absl::string_view digest) = 0;
};

class RocksDbImageStore : public ImageStore {
 public:
  // Opens or creates the database in `dir`. The caller holds common::HomeLock (RocksDB allows
  // one process per database; a second gets FAILED_PRECONDITION naming the directory).
  static absl::StatusOr<std::unique_ptr<RocksDbImageStore>> Create(const std::string& dir);
  ~RocksDbImageStore() override;

  absl::Status Put(const ImageRecord& record) override;
  absl::StatusOr<ImageRecord> Get(absl::string_view digest) override;
  absl::StatusOr<std::vector<ImageRecord>> List() override;
  absl::Status Delete(absl::string_view digest) override;
  absl::StatusOr<std::string> SetReference(const oci::Reference& ref,
                                           absl::string_view digest) override;
  absl::Status RemoveReference(const oci::Reference& ref) override;
  absl::StatusOr<std::string> ResolveReference(const oci::Reference& ref) override;
  absl::StatusOr<std::vector<oci::Reference>> ReferencesTo(absl::string_view digest) override;

 private:
  struct Impl;
  explicit RocksDbImageStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// --- Docker semantics on top of any ImageStore ---

// Finds an image as `docker inspect/history/rmi/tag/save` do: a full image ID or manifest
// digest (with or without "sha256:"), a reference (tag defaults to latest; NAME@digest also
// matches an image selected from that index), or an unambiguous ID prefix.
// NOT_FOUND "No such image: X"; INVALID_ARGUMENT for text that is neither.
absl::StatusOr<ImageRecord> LookupImage(ImageStore& store, absl::string_view ref_or_id);

struct RemoveResult {
  std::vector<std::string> untagged;  // familiar references removed ("alpine:latest")
  std::vector<std::string> deleted;   // IDs of images deleted ("sha256:…")
  // Blobs of deleted images that no remaining image holds (for the cache to reclaim).
  std::vector<common::Digest> unreferenced_blobs;
};
// `docker rmi` semantics: a reference removes that reference (and the repository's digest
// references when it was the repository's last tag); the image is deleted when nothing names
// it any more. An ID deletes the image with its references if they all belong to one
// repository with at most one tag, else FAILED_PRECONDITION "(must be forced) - image is
// referenced in multiple repositories" unless `force`.
absl::StatusOr<RemoveResult> RemoveImage(ImageStore& store, absl::string_view ref_or_id,
                                         bool force);

// Points `target` (tag defaults to latest; digests refused) at the image `source` names.
absl::Status TagImage(ImageStore& store, absl::string_view source, absl::string_view target);

// Builds the record of an image whose manifest (or index) is in the CAS, with every child
// manifest, config and layer. Layer uncompressed sizes come from `known_layers` (matched by
// digest) or stay -1. NOT_FOUND naming the first missing blob; INVALID_ARGUMENT for a malformed
// manifest or config, or a manifest whose layer count disagrees with its config's diff_ids.
absl::StatusOr<ImageRecord> DescribeImage(cache::BlobStore& cas, const oci::Descriptor& top,
                                          const std::vector<farm::v1::Layer>& known_layers = {});

}  // namespace farm::scheduler::image

#endif  // FARM_SCHEDULER_IMAGE_STORE_H_
