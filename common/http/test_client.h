// Test-only HTTP clients for servers on loopback: libcurl for well-formed requests, and a raw
// socket for the malformed, oversized and slow ones a real client would not send.
//
//   absl::StatusOr<ClientResponse> r = Fetch(absl::StrCat("http://127.0.0.1:", port, "/x"));
//   absl::StatusOr<std::string> raw = RawExchange(port, "GET / HTTP/1.0\r\n\r\n", deadline);
#ifndef FARM_COMMON_HTTP_TEST_CLIENT_H_
#define FARM_COMMON_HTTP_TEST_CLIENT_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace farm::common::http {

struct ClientResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

struct FetchOptions {
  std::string method = "GET";
  std::string body;
  std::vector<std::string> headers;  // "Name: value"
  absl::Duration timeout = absl::Seconds(10);
};

// One request with libcurl. UNAVAILABLE if no HTTP response came back (refused, reset).
absl::StatusOr<ClientResponse> Fetch(const std::string& url, const FetchOptions& options = {});

// Connects to 127.0.0.1:`port`, sends `request` as is, and returns everything received until
// the server closes the connection. DEADLINE_EXCEEDED if it is still open at `deadline`.
absl::StatusOr<std::string> RawExchange(int port, absl::string_view request, absl::Time deadline);

// Connects to 127.0.0.1:`port` and returns the socket (to hold a connection open), or -1.
int ConnectLoopback(int port);

// Waits until the peer closes `fd` (reading and dropping what it sends); false at `deadline`.
bool WaitForClose(int fd, absl::Time deadline);

}  // namespace farm::common::http

#endif  // FARM_COMMON_HTTP_TEST_CLIENT_H_
