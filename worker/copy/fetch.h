// ADD https://…: downloading a URL to a file, streaming, with its SHA-256 computed on the way
// (for --checksum), through libcurl (redirects followed, http and https only).
//
//   worker::copy::UrlFetcher fetch = worker::copy::CurlFetcher();
//   ASSIGN_OR_RETURN(worker::copy::Fetched f, fetch("https://example.com/a.tgz", "/tmp/x",
//   &cancel));
#ifndef FARM_WORKER_COPY_FETCH_H_
#define FARM_WORKER_COPY_FETCH_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/digest.h"

namespace farm::worker::copy {

struct Fetched {
  common::Digest digest;                 // of the downloaded bytes
  std::optional<int64_t> last_modified;  // Unix seconds, from Last-Modified
  std::string filename;  // the URL's last path segment, else Content-Disposition's, else ""
};

// Downloads `url` into `dest` (created). Errors: NOT_FOUND (HTTP 404/410), UNAVAILABLE
// (network, 5xx, 429), FAILED_PRECONDITION (other HTTP errors), CANCELLED.
using UrlFetcher = std::function<absl::StatusOr<Fetched>(
    const std::string& url, const std::string& dest, const absl::Notification* cancel)>;

UrlFetcher CurlFetcher();

// The file name Docker gives a download: the last non-empty segment of the URL's path.
std::string UrlFileName(const std::string& url);

}  // namespace farm::worker::copy

#endif  // FARM_WORKER_COPY_FETCH_H_
