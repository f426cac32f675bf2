// A small embedded HTTP/1.1 server for a server's operational endpoints (/metrics, /healthz,
// /readyz, a status page): handlers take a plain Request and return a Response. It wraps
// CivetWeb (Debian's libcivetweb), which brings a fixed pool of worker threads, a bounded queue
// of accepted connections and per-request socket timeouts; this wrapper adds the body-size
// limit, exact and prefix path routing, and keeps CivetWeb's C API and any exception a handler
// lets out away from the rest of the code.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<http::HttpServer> server,
//                    http::HttpServer::Create("0.0.0.0:9100"));
//   RETURN_IF_ERROR(server->Handle("/hello", [](const http::Request& r) {
//     return http::Response::Text(200, "hello " + r.QueryValue("name") + "\n");
//   }));
//   std::cout << "metrics on port " << server->port() << "\n";
//   ...
//   server->Shutdown();  // also done by the destructor
//
// Not for untrusted bulk traffic: there is no TLS, and IPv6 listen addresses are refused
// (Debian builds CivetWeb without IPv6). Process-wide effects: CivetWeb ignores SIGPIPE for the
// whole process, and its threads inherit the creating thread's signal mask, so servers that
// sigwait() for SIGTERM create it after blocking the stop signals, like their other threads.
#ifndef FARM_COMMON_HTTP_HTTP_SERVER_H_
#define FARM_COMMON_HTTP_HTTP_SERVER_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct mg_context;
struct mg_connection;

namespace farm::common::http {

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // URL-decoded and normalized, without the query: "/builds/b-12"
  std::multimap<std::string, std::string> query;  // decoded; '+' is a space
  std::map<std::string, std::string> headers;     // names lower-cased; repeats joined by ", "
  std::string body;                               // at most Options::max_body_bytes
  std::string remote_address;                     // the peer's IP

  // The first value of query parameter `name`, or "" if absent.
  std::string QueryValue(absl::string_view name) const;
  // The value of header `name` (any case), or "" if absent.
  std::string Header(absl::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers

  // A text/plain response.
  static Response Text(int status, std::string body);
};

// Called concurrently from the server's worker threads; must be thread-safe and should not
// block for long: each call holds one of a fixed number of threads. Exceptions are caught
// (the client gets a 500) but our code does not throw.
using Handler = std::function<Response(const Request&)>;

class HttpServer {
 public:
  struct Options {
    // "HOST:PORT" (IPv4 address or host name; ":PORT" or "0.0.0.0:PORT" for every interface).
    // Port 0 picks a free port: see port().
    std::string listen;
    // Worker threads: requests served at once.
    int threads = 4;
    // Accepted connections waiting for a worker; past it the kernel's listen backlog fills up.
    int connection_queue = 32;
    // Largest request line plus headers; larger requests are refused (CivetWeb answers 4xx)
    // before any handler runs.
    size_t max_header_bytes = 16 << 10;
    // Largest request body; larger ones get 413 without being read.
    size_t max_body_bytes = 1 << 20;
    // Longest wait for the client while reading a request or writing a response.
    absl::Duration io_timeout = absl::Seconds(10);
    // CivetWeb's error messages (one line each, no newline); dropped if unset.
    std::function<void(absl::string_view)> log;
  };

  // Starts serving (404 for every path until handlers are added). INVALID_ARGUMENT for a
  // malformed address or options, FAILED_PRECONDITION if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(Options options);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Create(const std::string& listen);

  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Serves `path` with `handler`, replacing an earlier handler of the same path. A path ending
  // in "/*" serves every path under it ("/builds/*" serves "/builds/b-1", not "/builds"); the
  // exact path wins over a prefix, the longest prefix over a shorter one. INVALID_ARGUMENT if
  // `path` does not start with '/'. Thread-safe; takes effect for the next request.
  absl::Status Handle(absl::string_view path, Handler handler);

  // The bound port (the real one when Options::listen asked for port 0).
  int port() const { return port_; }
  // "HOST:PORT" with the bound port.
  std::string address() const;

  // Stops accepting, lets running requests finish (bounded by io_timeout) and joins the
  // threads. Idempotent; handlers are not called after it returns.
  void Shutdown();

 private:
  HttpServer(Options options, std::string host);
  static int OnBeginRequest(mg_connection* conn);
  static int OnLogMessage(const mg_connection* conn, const char* message);
  int Serve(mg_connection* conn);
  std::shared_ptr<const Handler> Find(const std::string& path) const;

  const Options options_;
  const std::string host_;
  int port_ = 0;
  absl::Mutex stop_mu_;
  mg_context* ctx_ ABSL_GUARDED_BY(stop_mu_) = nullptr;

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Handler>> exact_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const Handler>> prefix_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::common::http

#endif  // FARM_COMMON_HTTP_HTTP_SERVER_H_
