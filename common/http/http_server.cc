#include "common/http/http_server.h"

#include <arpa/inet.h>
#include <civetweb.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <exception>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/status_macros.h"

namespace farm::common::http {

namespace {

// The host part as a numeric IPv4 address (CivetWeb takes no host names).
absl::StatusOr<std::string> ResolveIpv4(const std::string& listen, const std::string& host) {
  if (host.empty()) return std::string("0.0.0.0");
  in_addr addr;
  if (inet_pton(AF_INET, host.c_str(), &addr) == 1) return host;
  addrinfo hints = {};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("listen address ", listen, ": cannot resolve ",
                                                   host,
                                                   " to an IPv4 address: ", gai_strerror(rc)));
  }
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof(buf));
  freeaddrinfo(res);
  return std::string(buf);
}

std::string UrlDecode(absl::string_view s) {
  std::string out(s.size() + 1, '\0');
  const int n = mg_url_decode(s.data(), static_cast<int>(s.size()), out.data(),
                              static_cast<int>(out.size()), /*is_form_url_encoded=*/1);
  out.resize(n < 0 ? 0 : n);
  return out;
}

void WriteResponse(mg_connection* conn, const Response& r, bool head) {
  mg_response_header_start(conn, r.status);
  mg_response_header_add(conn, "Content-Type", r.content_type.c_str(), -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(r.body.size()).c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  for (const auto& [name, value] : r.headers) {
    mg_response_header_add(conn, name.c_str(), value.c_str(), -1);
  }
  mg_response_header_send(conn);
  if (!head && !r.body.empty()) mg_write(conn, r.body.data(), r.body.size());
}

// Answers `status` and has CivetWeb close the connection instead of reading (and dropping) the
// rest of the request body first, which for a huge declared length would hold the worker thread
// for as long as the client keeps sending. mg_disable_keep_alive() is a Debian addition to
// CivetWeb 1.15 that sets the connection's must_close flag, which skips that drain.
int Refuse(mg_connection* conn, int status, std::string body) {
  mg_disable_keep_alive(conn);
  WriteResponse(conn, Response::Text(status, std::move(body)), /*head=*/false);
  return status;
}

}  // namespace

std::string Request::QueryValue(absl::string_view name) const {
  auto it = query.find(std::string(name));
  return it == query.end() ? "" : it->second;
}

std::string Request::Header(absl::string_view name) const {
  auto it = headers.find(absl::AsciiStrToLower(name));
  return it == headers.end() ? "" : it->second;
}

Response Response::Text(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpServer::HttpServer(Options options, std::string host)
    : options_(std::move(options)), host_(std::move(host)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(const std::string& listen) {
  Options options;
  options.listen = listen;
  return Create(std::move(options));
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Create(Options options) {
  const std::string& listen = options.listen;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": want HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  int port;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", listen, "\": want HOST:PORT with a port 0-65535"));
  }
  if (absl::StrContains(host, ':') || absl::StartsWith(host, "[")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", listen, "\": IPv6 is not supported (Debian's CivetWeb has none)"));
  }
  if (options.threads < 1 || options.threads > 1024 || options.connection_queue < 1 ||
      options.max_header_bytes < 1024 || options.io_timeout < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(
        "http server: want 1-1024 threads, a connection queue of at least 1, at least 1024 "
        "header bytes and an I/O timeout of at least 1 ms");
  }
  ASSIGN_OR_RETURN(std::string ip, ResolveIpv4(listen, host));

  static std::once_flag init_once;
  std::call_once(init_once, [] { mg_init_library(0); });

  // No document_root: nothing is ever served from disk.
  const std::pair<const char*, std::string> settings[] = {
      {"listening_ports", absl::StrCat(ip, ":", port)},
      // All threads start now: a fixed pool.
      {"num_threads", std::to_string(options.threads)},
      // Accepted sockets waiting for a thread; when full, accepting pauses.
      {"connection_queue", std::to_string(options.connection_queue)},
      // Request line + headers.
      {"max_request_size", std::to_string(options.max_header_bytes)},
      // Every read and write of a request.
      {"request_timeout_ms", std::to_string(absl::ToInt64Milliseconds(options.io_timeout))},
      // An idle client must not hold a thread.
      {"enable_keep_alive", "no"},
      {"enable_directory_listing", "no"},
  };
  std::vector<const char*> config;
  for (const auto& [name, value] : settings) {
    config.push_back(name);
    config.push_back(value.c_str());
  }
  config.push_back(nullptr);
  auto server = std::unique_ptr<HttpServer>(new HttpServer(std::move(options), ip));
  mg_callbacks callbacks = {};
  callbacks.begin_request = &HttpServer::OnBeginRequest;
  callbacks.log_message = &HttpServer::OnLogMessage;
  mg_init_data init = {};
  init.callbacks = &callbacks;
  init.user_data = server.get();
  init.configuration_options = config.data();
  char error_text[256] = "";
  unsigned error_code = 0;
  mg_error_data error = {};
  error.code = &error_code;
  error.text = error_text;
  error.text_buffer_size = sizeof(error_text);
  mg_context* ctx = mg_start2(&init, &error);
  if (ctx == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot serve HTTP on ", server->options_.listen, ": ", error_text));
  }
  mg_server_port bound[4];
  const int n = mg_get_server_ports(ctx, 4, bound);
  if (n < 1) {
    mg_stop(ctx);
    return absl::InternalError(
        absl::StrCat("http server on ", server->options_.listen, ": no listening port"));
  }
  server->port_ = bound[0].port;
  absl::MutexLock l(&server->stop_mu_);
  server->ctx_ = ctx;
  return server;
}

HttpServer::~HttpServer() { Shutdown(); }

std::string HttpServer::address() const { return absl::StrCat(host_, ":", port_); }

void HttpServer::Shutdown() {
  absl::MutexLock l(&stop_mu_);
  if (ctx_ == nullptr) return;
  // CivetWeb's accept loop polls in 2 s quanta and looks at its stop flag only in between:
  // connecting to it makes mg_stop() return at once instead of up to 2 s later.
  absl::Notification stopped;
  std::thread waker([this, &stopped] {
    const std::string ip = host_ == "0.0.0.0" ? "127.0.0.1" : host_;
    do {
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd < 0) continue;
      sockaddr_in addr = {};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port_));
      inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      close(fd);
    } while (!stopped.WaitForNotificationWithTimeout(absl::Milliseconds(50)));
  });
  mg_stop(ctx_);  // joins the worker threads: no handler runs after this
  stopped.Notify();
  waker.join();
  ctx_ = nullptr;
}

absl::Status HttpServer::Handle(absl::string_view path, Handler handler) {
  if (!absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(absl::StrCat("http path \"", path, "\": must start with /"));
  }
  auto h = std::make_shared<const Handler>(std::move(handler));
  absl::MutexLock l(&mu_);
  if (absl::EndsWith(path, "/*")) {
    prefix_[std::string(path.substr(0, path.size() - 1))] = std::move(h);
  } else {
    exact_[std::string(path)] = std::move(h);
  }
  return absl::OkStatus();
}

std::shared_ptr<const Handler> HttpServer::Find(const std::string& path) const {
  absl::ReaderMutexLock l(&mu_);
  if (auto it = exact_.find(path); it != exact_.end()) return it->second;
  std::shared_ptr<const Handler> best;
  size_t best_len = 0;
  for (const auto& [prefix, h] : prefix_) {
    if (prefix.size() > best_len && absl::StartsWith(path, prefix) && path.size() > prefix.size()) {
      best = h;
      best_len = prefix.size();
    }
  }
  return best;
}

int HttpServer::OnBeginRequest(mg_connection* conn) {
  auto* self = static_cast<HttpServer*>(mg_get_request_info(conn)->user_data);
  return self->Serve(conn);
}

int HttpServer::OnLogMessage(const mg_connection* conn, const char* message) {
  if (conn == nullptr) return 1;
  auto* self = static_cast<HttpServer*>(mg_get_user_data(mg_get_context(conn)));
  if (self != nullptr && self->options_.log) {
    absl::string_view m(message);
    self->options_.log(absl::StripTrailingAsciiWhitespace(m));
  }
  return 1;  // handled: CivetWeb prints nothing itself
}

int HttpServer::Serve(mg_connection* conn) {
  // CivetWeb is C: nothing may unwind through it.
  try {
    const mg_request_info* info = mg_get_request_info(conn);
    Request req;
    req.method = info->request_method ? info->request_method : "";
    req.path = info->local_uri ? info->local_uri : "";
    req.remote_address = info->remote_addr;
    if (info->query_string != nullptr) {
      for (absl::string_view pair : absl::StrSplit(info->query_string, '&', absl::SkipEmpty())) {
        std::pair<absl::string_view, absl::string_view> kv =
            absl::StrSplit(pair, absl::MaxSplits('=', 1));
        req.query.emplace(UrlDecode(kv.first), UrlDecode(kv.second));
      }
    }
    for (int i = 0; i < info->num_headers; ++i) {
      std::string name = absl::AsciiStrToLower(info->http_headers[i].name);
      const char* value = info->http_headers[i].value ? info->http_headers[i].value : "";
      auto [it, inserted] = req.headers.emplace(name, value);
      if (!inserted) absl::StrAppend(&it->second, ", ", value);
    }
    const bool head = req.method == "HEAD";

    // The body: refuse what is too large before reading it.
    const size_t max_body = options_.max_body_bytes;
    const bool chunked = absl::EqualsIgnoreCase(req.Header("transfer-encoding"), "chunked");
    if (info->content_length > 0 && static_cast<uint64_t>(info->content_length) > max_body) {
      return Refuse(conn, 413, "request body too large\n");
    }
    if (info->content_length > 0 || chunked) {
      char buf[8192];
      for (;;) {
        const int n = mg_read(conn, buf, sizeof(buf));
        if (n <= 0) break;  // end of body, or the client went away / timed out
        req.body.append(buf, n);
        if (req.body.size() > max_body) return Refuse(conn, 413, "request body too large\n");
      }
      if (info->content_length > 0 &&
          req.body.size() < static_cast<uint64_t>(info->content_length)) {
        mg_disable_keep_alive(conn);  // the client stalled or went away: nothing more to read
        return 400;
      }
    }

    std::shared_ptr<const Handler> handler = Find(req.path);
    Response resp = handler ? (*handler)(req) : Response::Text(404, "not found\n");
    WriteResponse(conn, resp, head);
    return resp.status;
  } catch (const std::exception& e) {
    if (options_.log) options_.log(absl::StrCat("http handler threw: ", e.what()));
  } catch (...) {
    if (options_.log) options_.log("http handler threw");
  }
  try {
    WriteResponse(conn, Response::Text(500, "internal error\n"), false);
  } catch (...) {
  }
  return 500;
}

}  // namespace farm::common::http
