// HttpTransport: the one HTTP request/response seam the registry client uses, so tests can
// wrap or fake it. CurlTransport is the libcurl implementation: streaming request and response
// bodies (a layer never sits whole in memory), keep-alive connection reuse, redirects on demand
// (blob GETs go to storage backends), TLS verification that can be turned off per request for
// insecure registries.
//
//   auto http = scheduler::registry::CurlTransport::Create();
//   scheduler::registry::HttpRequest req;
//   req.url = "http://127.0.0.1:5000/v2/";
//   ASSIGN_OR_RETURN(scheduler::registry::HttpResponse resp, http->Do(req, nullptr));
//   if (resp.status == 401) ... resp.Header("www-authenticate") ...
#ifndef FARM_SCHEDULER_REGISTRY_HTTP_H_
#define FARM_SCHEDULER_REGISTRY_HTTP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace farm::scheduler::registry {

// Receives response body chunks in order; an error aborts the transfer and is returned.
using BodySink = std::function<absl::Status(absl::string_view chunk)>;
// Fills up to `max` bytes of request body into `buf`; returns how many (0 at the end).
using BodyReader = std::function<absl::StatusOr<size_t>(char* buf, size_t max)>;

struct HttpRequest {
  std::string method = "GET";  // GET HEAD PUT POST PATCH DELETE
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  // The body: `body` in memory, or `body_size` bytes pulled from `body_reader`.
  std::string body;
  BodyReader body_reader;
  int64_t body_size = -1;
  bool follow_redirects = false;  // never forwards Authorization to another host
  // Called with the final status before the first body chunk goes to the sink (so a caller
  // that asked for a Range can tell 206 from 200).
  std::function<void(int status)> on_status;
  bool verify_tls = true;
  absl::Duration connect_timeout = absl::Seconds(30);
  // The transfer is aborted when it moves less than 1 KiB/s for this long.
  absl::Duration stall_timeout = absl::Seconds(60);
};

struct HttpResponse {
  int status = 0;
  // Headers of the final response, names lowercased, in order.
  std::vector<std::pair<std::string, std::string>> headers;
  // The body when it was not streamed to a sink (non-2xx bodies always land here), at most
  // 1 MiB (the rest is dropped).
  std::string body;
  std::string effective_url;  // after redirects

  // The first header named `name` (lowercase), "" if none.
  std::string Header(absl::string_view name) const;
  std::vector<std::string> Headers(absl::string_view name) const;
};

class HttpTransport {
 public:
  using Ptr = std::shared_ptr<HttpTransport>;
  virtual ~HttpTransport() = default;
  // Performs one request. Any HTTP status is an OK result; transport failures (DNS, connect,
  // TLS, reset, timeout) are UNAVAILABLE naming the method and URL. With a `sink`, the body of
  // a 2xx response is streamed to it. Thread-safe.
  virtual absl::StatusOr<HttpResponse> Do(const HttpRequest& request, const BodySink* sink) = 0;
};

class CurlTransport : public HttpTransport {
 public:
  static std::shared_ptr<CurlTransport> Create(std::string user_agent = "farm/0.1");
  ~CurlTransport() override;
  absl::StatusOr<HttpResponse> Do(const HttpRequest& request, const BodySink* sink) override;

 private:
  explicit CurlTransport(std::string user_agent);
  struct Pool;
  std::string user_agent_;
  std::unique_ptr<Pool> pool_;
};

}  // namespace farm::scheduler::registry

#endif  // FARM_SCHEDULER_REGISTRY_HTTP_H_
