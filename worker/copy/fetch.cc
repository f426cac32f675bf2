#include "worker/copy/fetch.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_util.h"

namespace farm::worker::copy {

std::string UrlFileName(const std::string& url) {
  absl::string_view u = url;
  size_t scheme = u.find("://");
  if (scheme != absl::string_view::npos) u.remove_prefix(scheme + 3);
  u = u.substr(0, u.find_first_of("?#"));
  size_t slash = u.find('/');
  if (slash == absl::string_view::npos) return "";
  u.remove_prefix(slash);
  std::string name;
  for (absl::string_view part : absl::StrSplit(u, '/', absl::SkipEmpty())) name = std::string(part);
  return name;
}

namespace {

struct Transfer {
  int fd;
  common::Sha256 hash;
  absl::Status write_error;
  const absl::Notification* cancel;
  std::string disposition;
  const FetchOptions* options = nullptr;
  int64_t bytes = 0;
  absl::Status refused;  // a destination the policy refused, or the size limit
};

size_t OnData(char* data, size_t size, size_t n, void* arg) {
  Transfer* t = static_cast<Transfer*>(arg);
  size_t len = size * n;
  t->bytes += static_cast<int64_t>(len);
  if (t->bytes > t->options->max_bytes) {
    t->refused = absl::ResourceExhaustedError(
        absl::StrCat("larger than the limit of ", t->options->max_bytes, " bytes"));
    return 0;
  }
  t->hash.Update(data, len);
  size_t done = 0;
  while (done < len) {
    ssize_t w = write(t->fd, data + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      t->write_error = common::ErrnoToStatus(errno, "writing the download");
      return 0;
    }
    done += static_cast<size_t>(w);
  }
  return len;
}

size_t OnHeader(char* data, size_t size, size_t n, void* arg) {
  Transfer* t = static_cast<Transfer*>(arg);
  absl::string_view line(data, size * n);
  if (absl::StartsWithIgnoreCase(line, "content-disposition:")) {
    size_t f = line.find("filename=");
    if (f != absl::string_view::npos) {
      absl::string_view v = absl::StripAsciiWhitespace(line.substr(f + 9));
      v = v.substr(0, v.find(';'));
      if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
      // Only a plain file name: never a path.
      if (!v.empty() && v.find('/') == absl::string_view::npos && v != "." && v != "..") {
        t->disposition = std::string(v);
      }
    }
  }
  return size * n;
}

// Every connection libcurl makes (the first, redirects, retries) asks here: the address is
// checked against the step network's policy before a socket exists.
curl_socket_t OnOpenSocket(void* arg, curlsocktype, struct curl_sockaddr* a) {
  Transfer* t = static_cast<Transfer*>(arg);
  if (t->options->policy != nullptr) {
    network::IpAddress ip;
    if (!network::IpAddress::FromSockaddr(&a->addr, &ip)) {
      t->refused = absl::PermissionDeniedError("not an IP address");
      return CURL_SOCKET_BAD;
    }
    absl::Status s = t->options->policy->Check(ip);
    if (!s.ok()) {
      t->refused = s;
      return CURL_SOCKET_BAD;
    }
  }
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

int OnProgress(void* arg, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  Transfer* t = static_cast<Transfer*>(arg);
  return t->cancel != nullptr && t->cancel->HasBeenNotified() ? 1 : 0;
}

absl::StatusOr<Fetched> CurlFetch(const FetchOptions& options, const std::string& url,
                                  const std::string& dest, const absl::Notification* cancel) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported URL scheme in ", url));
  }
  int fd = open(dest.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return common::ErrnoToStatus(errno, "create " + dest);
  Transfer t{fd, {}, absl::OkStatus(), cancel, "", &options};
  CURL* c = curl_easy_init();
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(c, CURLOPT_FILETIME, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "farm");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnData);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, OnProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  // No proxy from the worker's environment: the policy judges the address of the server
  // itself (a proxy would be the only address it saw), as for a RUN step's own connections.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, OnOpenSocket);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(options.max_bytes));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options.timeout)));
  CURLcode rc = curl_easy_perform(c);
  long http = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
  curl_off_t filetime = -1;
  curl_easy_getinfo(c, CURLINFO_FILETIME_T, &filetime);
  curl_easy_cleanup(c);
  int close_rc = close(fd);
  if (!t.write_error.ok()) return t.write_error;
  if (rc != CURLE_OK && !t.refused.ok()) {
    // (A refused address is no error when libcurl then connected to another one.)
    return absl::Status(t.refused.code(),
                        absl::StrCat("downloading ", url, ": ", t.refused.message()));
  }
  if (rc == CURLE_FILESIZE_EXCEEDED) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "downloading ", url, ": larger than the limit of ", options.max_bytes, " bytes"));
  }
  if (rc == CURLE_OPERATION_TIMEDOUT) {
    return absl::DeadlineExceededError(absl::StrCat("downloading ", url, ": ",
                                                    error[0] ? error : "timed out", " (limit ",
                                                    absl::FormatDuration(options.timeout), ")"));
  }
  if (rc == CURLE_ABORTED_BY_CALLBACK)
    return absl::CancelledError("download of " + url + " cancelled");
  if (rc != CURLE_OK) {
    std::string what =
        absl::StrCat("downloading ", url, ": ", error[0] ? error : curl_easy_strerror(rc));
    if (rc == CURLE_HTTP_RETURNED_ERROR) {
      if (http == 404 || http == 410) return absl::NotFoundError(what);
      if (http >= 500 || http == 429 || http == 408) return absl::UnavailableError(what);
      return absl::FailedPreconditionError(what);
    }
    return absl::UnavailableError(what);
  }
  if (close_rc != 0) return common::ErrnoToStatus(errno, "close " + dest);
  Fetched out;
  out.digest = t.hash.Finish();
  if (filetime >= 0) out.last_modified = static_cast<int64_t>(filetime);
  out.filename = UrlFileName(url);  // as Docker names it; the server's name only as a fallback
  if (out.filename.empty()) out.filename = t.disposition;
  return out;
}

}  // namespace

UrlFetcher CurlFetcher(FetchOptions options) {
  return
      [options](const std::string& url, const std::string& dest, const absl::Notification* cancel) {
        return CurlFetch(options, url, dest, cancel);
      };
}

}  // namespace farm::worker::copy
