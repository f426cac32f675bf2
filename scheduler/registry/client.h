// Client: one registry, spoken to with the Docker Registry HTTP API v2 / OCI Distribution
// protocol. It owns the connection scheme, authentication and retries, so callers deal in
// repositories, references and blobs:
//
//   - Ping /v2/ once: learns the scheme (https; plain http too for insecure registries, which
//     loopback hosts always are, as in Docker) and the auth challenge.
//   - Auth: Bearer (WWW-Authenticate realm/service/scope → token endpoint, with basic auth or
//     an identity token; tokens cached per scope set until they expire, refreshed on 401) or
//     Basic. Credentials from RegistryOptions::credentials, else ~/.docker/config.json.
//   - Retries with exponential backoff (Retry-After honoured) on 429, 5xx and transport
//     errors, for requests that can be replayed; interrupted blob downloads resume with Range.
//   - Uploads: HEAD (skip if present), cross-repository mount, then monolithic PUT or chunked
//     PATCH with Content-Range, following Location and resuming from the Range the registry
//     reports after a failed chunk.
//
//   ASSIGN_OR_RETURN(auto c, scheduler::registry::Client::Create("localhost:5000", {}));
//   ASSIGN_OR_RETURN(scheduler::registry::ManifestInfo info, c->HeadManifest("app", "1.0"));
//   RETURN_IF_ERROR(c->GetBlob("app", digest, sink));
#ifndef FARM_SCHEDULER_REGISTRY_CLIENT_H_
#define FARM_SCHEDULER_REGISTRY_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "scheduler/registry/auth.h"
#include "scheduler/registry/http.h"

namespace farm::scheduler::registry {

struct RegistryOptions {
  // Registries ("host:port") that may be reached over plain HTTP or unverified TLS, like
  // dockerd's --insecure-registry. Loopback hosts (localhost, 127.0.0.0/8, ::1) always may.
  std::vector<std::string> insecure_registries;
  // Where config.json lives; "" = DockerConfig::DefaultDir().
  std::string docker_config_dir;
  // Overrides config.json (used by `farm login` to check new credentials).
  std::optional<Credentials> credentials;
  int max_attempts = 5;  // per request, for retryable failures
  absl::Duration initial_backoff = absl::Milliseconds(250);
  absl::Duration max_backoff = absl::Seconds(10);
  // Blobs larger than this are uploaded in chunks of this size (PATCH), for registries or
  // proxies that limit request bodies; 0 (default): every blob in one streamed request, as
  // docker does (chunked uploads cost Distribution a re-hash per chunk).
  int64_t chunk_size = 0;
  // The HTTP implementation; default CurlTransport.
  HttpTransport::Ptr transport;
};

struct ManifestInfo {
  std::string digest;      // "sha256:…"
  std::string media_type;  // Content-Type
  int64_t size = -1;
};

struct FetchedManifest {
  ManifestInfo info;
  std::string bytes;
};

enum class BlobPushResult { kExists, kMounted, kUploaded };

// Supplies bytes [offset, offset+limit) of a blob being uploaded (limit 0: to the end), e.g.
// BlobStore::Read. Called again from offset 0 or a resume point when an upload is retried.
using BlobSource = std::function<absl::Status(int64_t offset, int64_t limit, const BodySink& sink)>;

// Counters for logs and tests.
struct ClientStats {
  int64_t requests = 0;
  int64_t retries = 0;
  int64_t blob_uploads = 0;   // blobs whose bytes were sent
  int64_t chunk_uploads = 0;  // PATCH requests
  int64_t blob_mounts = 0;
  int64_t blobs_skipped = 0;  // HEAD said present
  int64_t bytes_uploaded = 0;
  int64_t bytes_downloaded = 0;
  int64_t token_fetches = 0;
};

class Client {
 public:
  // `domain` as in a reference: "docker.io", "localhost:5000", "[::1]:5000". Does no I/O.
  static absl::StatusOr<std::unique_ptr<Client>> Create(const std::string& domain,
                                                        RegistryOptions options);
  ~Client();

  const std::string& domain() const { return domain_; }
  // "https://host" or "http://host" once pinged; "" before.
  std::string base_url() const;

  // Checks that the registry answers and that the credentials (if any) are accepted: for a
  // Bearer registry a token is fetched. UNAUTHENTICATED with the registry's message if not.
  absl::Status CheckLogin();

  // HEAD /v2/<repo>/manifests/<ref>. NOT_FOUND if unknown. digest may be "" when the
  // registry sends no Docker-Content-Digest.
  absl::StatusOr<ManifestInfo> HeadManifest(const std::string& repo, const std::string& ref);
  // GET /v2/<repo>/manifests/<ref> (at most 4 MiB). When `ref` is a digest the body must hash
  // to it (DATA_LOSS otherwise); else info.digest is the body's digest.
  absl::StatusOr<FetchedManifest> GetManifest(const std::string& repo, const std::string& ref);
  // PUT /v2/<repo>/manifests/<ref>. Returns the digest the registry reports (or computed).
  absl::StatusOr<std::string> PutManifest(const std::string& repo, const std::string& ref,
                                          const std::string& media_type, const std::string& bytes);

  // HEAD /v2/<repo>/blobs/<digest>.
  absl::StatusOr<bool> BlobExists(const std::string& repo, const common::Digest& digest);
  // GET /v2/<repo>/blobs/<digest>, following redirects, streaming exactly digest.size_bytes
  // to `sink` (more is DATA_LOSS; an interrupted transfer resumes where it stopped). The
  // caller verifies the content. NOT_FOUND if unknown.
  absl::Status GetBlob(const std::string& repo, const common::Digest& digest, const BodySink& sink);
  // Makes `digest` present in `repo`: HEAD, else mount from one of `mount_from` (repository
  // paths on this registry), else upload from `source`.
  absl::StatusOr<BlobPushResult> PushBlob(const std::string& repo, const common::Digest& digest,
                                          const std::vector<std::string>& mount_from,
                                          const BlobSource& source);

  ClientStats stats() const;

 private:
  struct Impl;
  Client(std::string domain, std::unique_ptr<Impl> impl);
  std::string domain_;
  std::unique_ptr<Impl> impl_;
};

// Whether `domain` is a loopback host (localhost, 127.x.x.x, [::1]) with or without port.
bool IsLoopbackDomain(absl::string_view domain);

// One Client per registry domain, created on first use with shared options. Thread-safe.
class ClientPool {
 public:
  explicit ClientPool(RegistryOptions options) : options_(std::move(options)) {}
  absl::StatusOr<Client*> Get(const std::string& domain);

 private:
  RegistryOptions options_;
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Client>> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::scheduler::registry

#endif  // FARM_SCHEDULER_REGISTRY_CLIENT_H_
