#include "common/listen.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace farm::common {

absl::Status ProbeListenAddress(const std::string& listen) {
  if (listen.rfind("unix:", 0) == 0) return absl::OkStatus();
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": want HOST:PORT (e.g. 127.0.0.1:9092)"));
  }
  std::string host = listen.substr(0, colon);
  std::string port = listen.substr(colon + 1);
  int port_number;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": \"", port, "\" is not a port"));
  }
  if (port_number == 0) return absl::OkStatus();
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  struct addrinfo hints;
  memset(&hints, 0, sizeof(hints));
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  struct addrinfo* res = nullptr;
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": ", gai_strerror(rc)));
  }
  absl::Status status;
  for (struct addrinfo* ai = res; ai != nullptr && status.ok(); ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      int e = errno;
      status = absl::FailedPreconditionError(
          absl::StrCat("cannot listen on ", listen, ": ",
                       e == EADDRINUSE ? "address already in use" : strerror(e)));
    }
    close(fd);
  }
  freeaddrinfo(res);
  return status;
}

}  // namespace farm::common
