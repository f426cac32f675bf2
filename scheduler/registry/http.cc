#include "scheduler/registry/http.h"

#include <curl/curl.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

namespace farm::scheduler::registry {

namespace {

constexpr size_t kMaxBufferedBody = 1 << 20;

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  CURL* curl = nullptr;
  const HttpRequest* request = nullptr;
  const BodySink* sink = nullptr;
  HttpResponse* response = nullptr;
  absl::Status status;  // first error from the sink or body reader
  size_t memory_body_pos = 0;
  bool status_reported = false;
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  Transfer* t = static_cast<Transfer*>(user);
  absl::string_view line(data, size * n);
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (after a redirect or a 100 Continue): forget the previous headers.
    t->response->headers.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    std::string name = absl::AsciiStrToLower(absl::StripAsciiWhitespace(line.substr(0, colon)));
    std::string value(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    t->response->headers.emplace_back(std::move(name), std::move(value));
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  Transfer* t = static_cast<Transfer*>(user);
  size_t len = size * n;
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  if (t->sink != nullptr && code >= 200 && code < 300) {
    if (!t->status_reported) {
      t->status_reported = true;
      if (t->request->on_status) t->request->on_status(static_cast<int>(code));
    }
    absl::Status s = (*t->sink)(absl::string_view(data, len));
    if (!s.ok()) {
      t->status = s;
      return 0;  // aborts with CURLE_WRITE_ERROR
    }
    return len;
  }
  std::string& body = t->response->body;
  if (body.size() < kMaxBufferedBody) {
    body.append(data, std::min(len, kMaxBufferedBody - body.size()));
  }
  return len;
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  Transfer* t = static_cast<Transfer*>(user);
  size_t max = size * n;
  const HttpRequest& req = *t->request;
  if (req.body_reader) {
    absl::StatusOr<size_t> got = req.body_reader(buf, max);
    if (!got.ok()) {
      t->status = got.status();
      return CURL_READFUNC_ABORT;
    }
    return *got;
  }
  size_t left = req.body.size() - t->memory_body_pos;
  size_t take = std::min(left, max);
  memcpy(buf, req.body.data() + t->memory_body_pos, take);
  t->memory_body_pos += take;
  return take;
}

}  // namespace

std::string HttpResponse::Header(absl::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return "";
}

std::vector<std::string> HttpResponse::Headers(absl::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [k, v] : headers) {
    if (k == name) out.push_back(v);
  }
  return out;
}

// Easy handles are reused so their connections stay alive between requests.
struct CurlTransport::Pool {
  absl::Mutex mu;
  std::vector<CURL*> idle ABSL_GUARDED_BY(mu);

  CURL* Take() {
    {
      absl::MutexLock lock(&mu);
      if (!idle.empty()) {
        CURL* c = idle.back();
        idle.pop_back();
        return c;
      }
    }
    return curl_easy_init();
  }
  void Give(CURL* c) {
    absl::MutexLock lock(&mu);
    if (idle.size() < 16) {
      idle.push_back(c);
    } else {
      curl_easy_cleanup(c);
    }
  }
  ~Pool() {
    absl::MutexLock lock(&mu);
    for (CURL* c : idle) curl_easy_cleanup(c);
  }
};

CurlTransport::CurlTransport(std::string user_agent)
    : user_agent_(std::move(user_agent)), pool_(std::make_unique<Pool>()) {}
CurlTransport::~CurlTransport() = default;

std::shared_ptr<CurlTransport> CurlTransport::Create(std::string user_agent) {
  GlobalInit();
  return std::shared_ptr<CurlTransport>(new CurlTransport(std::move(user_agent)));
}

absl::StatusOr<HttpResponse> CurlTransport::Do(const HttpRequest& req, const BodySink* sink) {
  CURL* curl = pool_->Take();
  if (curl == nullptr) return absl::InternalError("curl_easy_init failed");
  curl_easy_reset(curl);
  HttpResponse response;
  Transfer t;
  t.curl = curl;
  t.request = &req;
  t.sink = sink;
  t.response = &response;

  struct curl_slist* headers = nullptr;
  for (const auto& [k, v] : req.headers) {
    headers = curl_slist_append(headers, absl::StrCat(k, ": ", v).c_str());
  }
  // No "Expect: 100-continue" round trip before uploads.
  headers = curl_slist_append(headers, "Expect:");

  curl_easy_setopt(curl, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 1L << 20);  // fewer, larger sink calls
  curl_easy_setopt(curl, CURLOPT_USERAGENT, user_agent_.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(req.connect_timeout)));
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(
      curl, CURLOPT_LOW_SPEED_TIME,
      static_cast<long>(std::max<int64_t>(1, absl::ToInt64Seconds(req.stall_timeout))));
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (req.follow_redirects) {
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(curl, CURLOPT_UNRESTRICTED_AUTH, 0L);
  }
  if (!req.verify_tls) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  bool has_body = req.body_reader || !req.body.empty() || req.method == "PUT" ||
                  req.method == "PATCH" || (req.method == "POST" && req.body_size > 0);
  if (req.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (req.method == "POST" && !has_body) {
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(0));
  } else if (has_body) {
    int64_t size = req.body_reader ? req.body_size : static_cast<int64_t>(req.body.size());
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, OnRead);
    curl_easy_setopt(curl, CURLOPT_READDATA, &t);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(size));
    curl_easy_setopt(curl, CURLOPT_UPLOAD_BUFFERSIZE, 1L << 20);
    if (req.method != "PUT") curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  } else if (req.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }

  CURLcode rc = curl_easy_perform(curl);
  long code = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
  char* effective = nullptr;
  curl_easy_getinfo(curl, CURLINFO_EFFECTIVE_URL, &effective);
  if (effective != nullptr) response.effective_url = effective;
  curl_slist_free_all(headers);
  pool_->Give(curl);

  if (!t.status.ok()) return t.status;  // the sink's or reader's own error
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(req.method, " ", req.url, ": ", curl_easy_strerror(rc)));
  }
  response.status = static_cast<int>(code);
  return response;
}

}  // namespace farm::scheduler::registry
