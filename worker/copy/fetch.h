// ADD https://…: downloading a URL to a file, streaming, with its SHA-256 computed on the way
// (for --checksum), through libcurl (redirects followed, http and https only). The worker
// downloads on a step's behalf, so the step network's destination policy applies to every
// address it connects to (redirects included: loopback, link-local, the host's own addresses
// and the operator's denied ranges are refused), with a size and a time limit.
//
//   worker::copy::UrlFetcher fetch = worker::copy::CurlFetcher();
//   ASSIGN_OR_RETURN(worker::copy::Fetched f, fetch("https://example.com/a.tgz", "/tmp/x",
//   &cancel));
#ifndef FARM_WORKER_COPY_FETCH_H_
#define FARM_WORKER_COPY_FETCH_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/digest.h"
#include "worker/network/destination_policy.h"

namespace farm::worker::copy {

struct Fetched {
  common::Digest digest;                 // of the downloaded bytes
  std::optional<int64_t> last_modified;  // Unix seconds, from Last-Modified
  std::string filename;  // the URL's last path segment, else Content-Disposition's, else ""
};

// Downloads `url` into `dest` (created). Errors: NOT_FOUND (HTTP 404/410), UNAVAILABLE
// (network, 5xx, 429), FAILED_PRECONDITION (other HTTP errors), PERMISSION_DENIED (a
// destination the policy refuses), RESOURCE_EXHAUSTED (too large), DEADLINE_EXCEEDED,
// CANCELLED.
using UrlFetcher = std::function<absl::StatusOr<Fetched>(
    const std::string& url, const std::string& dest, const absl::Notification* cancel)>;

struct FetchOptions {
  // Checked on every connection (after DNS resolution); null: any address.
  std::shared_ptr<const network::DestinationPolicy> policy;
  int64_t max_bytes = int64_t{8} << 30;        // larger downloads fail (RESOURCE_EXHAUSTED)
  absl::Duration timeout = absl::Minutes(30);  // for the whole download (DEADLINE_EXCEEDED)
};

UrlFetcher CurlFetcher(FetchOptions options = {});

// The file name Docker gives a download: the last non-empty segment of the URL's path.
std::string UrlFileName(const std::string& url);

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_FETCH_H_
