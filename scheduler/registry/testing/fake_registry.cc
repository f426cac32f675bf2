#include "scheduler/registry/testing/fake_registry.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/digest.h"
#include "scheduler/registry/auth.h"

namespace farm::scheduler::registry::testing {

namespace {

std::string UrlDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      if (absl::SimpleHexAtoi(s.substr(i + 1, 2), &v)) {
        out += static_cast<char>(v);
        i += 2;
        continue;
      }
    }
    out += s[i] == '+' ? ' ' : s[i];
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> QueryParams(absl::string_view q) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view kv : absl::StrSplit(q, '&', absl::SkipEmpty())) {
    size_t eq = kv.find('=');
    out.emplace_back(UrlDecode(kv.substr(0, eq)),
                     eq == absl::string_view::npos ? "" : UrlDecode(kv.substr(eq + 1)));
  }
  return out;
}

std::string Param(absl::string_view q, absl::string_view name) {
  for (const auto& [k, v] : QueryParams(q)) {
    if (k == name) return v;
  }
  return "";
}

bool WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 416:
      return "Requested Range Not Satisfiable";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

}  // namespace

FakeRegistry::~FakeRegistry() {
  stopping_ = true;
  if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::vector<std::thread> workers;
  {
    absl::MutexLock lock(&mu_);
    for (int fd : open_fds_) shutdown(fd, SHUT_RDWR);
    workers.swap(workers_);
  }
  for (std::thread& t : workers) t.join();
  if (listen_fd_ >= 0) close(listen_fd_);
}

absl::Status FakeRegistry::Start() {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listen_fd_, 64) != 0) {
    return absl::InternalError(absl::StrCat("bind/listen: ", strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return absl::OkStatus();
}

std::string FakeRegistry::domain() const { return absl::StrCat("127.0.0.1:", port_); }

void FakeRegistry::AcceptLoop() {
  while (!stopping_) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      return;  // shut down
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      close(fd);
      return;
    }
    open_fds_.insert(fd);
    workers_.emplace_back([this, fd] { Serve(fd); });
  }
}

void FakeRegistry::Serve(int fd) {
  std::string buf;
  char chunk[65536];
  auto fill = [&]() {
    ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
    return true;
  };
  while (!stopping_) {
    size_t end;
    while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) goto done;
      // A TLS ClientHello (a client trying https first): not HTTP, hang up as Go's server does.
      if (!buf.empty() && static_cast<unsigned char>(buf[0]) == 0x16) goto done;
    }
    {
      Request req;
      std::vector<std::string> lines = absl::StrSplit(buf.substr(0, end), "\r\n");
      buf.erase(0, end + 4);
      std::vector<std::string> first = absl::StrSplit(lines[0], ' ');
      if (first.size() < 2) goto done;
      req.method = first[0];
      req.target = first[1];
      size_t q = req.target.find('?');
      req.path = req.target.substr(0, q);
      req.query = q == std::string::npos ? "" : req.target.substr(q + 1);
      for (size_t i = 1; i < lines.size(); ++i) {
        size_t colon = lines[i].find(':');
        if (colon == std::string::npos) continue;
        req.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
            std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
      }
      size_t length = 0;
      auto cl = req.headers.find("content-length");
      if (cl != req.headers.end()) absl::SimpleAtoi(cl->second, &length);
      while (buf.size() < length) {
        if (!fill()) goto done;
      }
      req.body = buf.substr(0, length);
      buf.erase(0, length);

      Response resp = Handle(req);
      std::string head = absl::StrCat("HTTP/1.1 ", resp.status, " ", Reason(resp.status), "\r\n");
      for (const auto& [k, v] : resp.headers) absl::StrAppend(&head, k, ": ", v, "\r\n");
      absl::StrAppend(&head, "Content-Length: ", resp.body.size(), "\r\n\r\n");
      if (!WriteAll(fd, head)) goto done;
      if (!resp.head && req.method != "HEAD") {
        if (resp.cut_after != std::string::npos) {
          WriteAll(fd, absl::string_view(resp.body).substr(0, resp.cut_after));
          goto done;
        }
        if (!WriteAll(fd, resp.body)) goto done;
      }
    }
  }
done : {
  absl::MutexLock lock(&mu_);
  open_fds_.erase(fd);
}
  close(fd);
}

FakeRegistry::Response FakeRegistry::Error(int status, const std::string& code,
                                           const std::string& message) {
  Response r;
  r.status = status;
  r.headers.push_back({"Content-Type", "application/json"});
  r.body = absl::StrCat(R"({"errors":[{"code":")", code, R"(","message":")", message, R"("}]})");
  return r;
}

FakeRegistry::Response FakeRegistry::Handle(const Request& req) {
  absl::MutexLock lock(&mu_);
  log_.push_back(absl::StrCat(req.method, " ", req.target));
  return HandleLocked(req);
}

FakeRegistry::Response FakeRegistry::HandleLocked(const Request& req) {
  for (Failure& f : failures_) {
    if (f.count > 0 && absl::StartsWith(req.path, f.prefix)) {
      --f.count;
      Response r = Error(f.status, "UNAVAILABLE", "injected failure");
      if (f.status == 429) r.headers.push_back({"Retry-After", "0"});
      return r;
    }
  }
  if (req.path == "/token") {
    if (!bearer_user_.empty()) {
      auto auth = req.headers.find("authorization");
      std::string want = "Basic " + Base64Encode(bearer_user_ + ":" + bearer_pass_);
      if (auth == req.headers.end() || auth->second != want) {
        return Error(401, "UNAUTHORIZED", "incorrect username or password");
      }
    }
    for (const auto& [k, v] : QueryParams(req.query)) {
      if (k == "scope") token_scopes_.push_back(v);
    }
    std::string token = absl::StrCat("tok-", tokens_.size() + 1);
    tokens_.insert(token);
    Response r;
    r.headers.push_back({"Content-Type", "application/json"});
    r.body = absl::StrCat(R"({"token":")", token, R"(","expires_in":300})");
    return r;
  }
  if (!absl::StartsWith(req.path, "/v2/")) return Error(404, "NOT_FOUND", "no route");

  // Route: /v2/<repo>/(manifests/<ref> | blobs/uploads/[<uuid>] | blobs/<digest>)
  std::string repo, op, arg;
  absl::string_view rest = absl::string_view(req.path).substr(4);
  for (const char* marker : {"/manifests/", "/blobs/uploads/", "/blobs/uploads", "/blobs/"}) {
    size_t at = rest.rfind(marker);
    if (at != absl::string_view::npos && at > 0) {
      repo = std::string(rest.substr(0, at));
      op = marker;
      arg = std::string(rest.substr(at + strlen(marker)));
      break;
    }
  }
  if (bearer_) {
    auto auth = req.headers.find("authorization");
    bool ok = auth != req.headers.end() && absl::StartsWith(auth->second, "Bearer ") &&
              tokens_.count(auth->second.substr(7)) > 0;
    if (!ok) {
      Response r = Error(401, "UNAUTHORIZED", "authentication required");
      std::string scope = repo.empty() ? "" : absl::StrCat(",scope=\"repository:", repo, ":pull\"");
      r.headers.push_back(
          {"WWW-Authenticate", absl::StrCat("Bearer realm=\"http://", domain(),
                                            "/token\",service=\"fake-registry\"", scope)});
      return r;
    }
  }
  if (req.path == "/v2/") {
    Response r;
    r.body = "{}";
    return r;
  }
  if (op == "/manifests/") {
    if (req.method == "HEAD" && !manifest_head_) return Error(405, "UNSUPPORTED", "no HEAD");
    if (req.method == "PUT") {
      std::string digest = "sha256:" + common::Sha256Hex(req.body);
      std::string type = req.headers.count("content-type") ? req.headers.at("content-type") : "";
      manifests_[repo][arg] = {type, req.body};
      manifests_[repo][digest] = {type, req.body};
      Response r;
      r.status = 201;
      r.headers.push_back({"Docker-Content-Digest", digest});
      r.headers.push_back({"Location", absl::StrCat("/v2/", repo, "/manifests/", digest)});
      return r;
    }
    auto rit = manifests_.find(repo);
    if (rit == manifests_.end() || rit->second.count(arg) == 0) {
      return Error(404, "MANIFEST_UNKNOWN", "manifest unknown");
    }
    const StoredManifest& m = rit->second.at(arg);
    Response r;
    r.headers.push_back({"Content-Type", m.media_type});
    r.headers.push_back({"Docker-Content-Digest", "sha256:" + common::Sha256Hex(m.bytes)});
    r.body = m.bytes;
    return r;
  }
  if (op == "/blobs/uploads" || op == "/blobs/uploads/") {
    if (req.method == "POST") {
      std::string mount = Param(req.query, "mount"), from = Param(req.query, "from");
      if (!mount.empty() && repo_blobs_[from].count(mount) > 0) {
        repo_blobs_[repo].insert(mount);
        Response r;
        r.status = 201;
        r.headers.push_back({"Location", absl::StrCat("/v2/", repo, "/blobs/", mount)});
        r.headers.push_back({"Docker-Content-Digest", mount});
        return r;
      }
      std::string uuid = absl::StrCat("u", ++next_upload_);
      uploads_[uuid] = "";
      Response r;
      r.status = 202;
      r.headers.push_back({"Location", absl::StrCat("/v2/", repo, "/blobs/uploads/", uuid)});
      r.headers.push_back({"Range", "0-0"});
      r.headers.push_back({"Docker-Upload-UUID", uuid});
      return r;
    }
    auto up = uploads_.find(arg);
    if (up == uploads_.end()) return Error(404, "BLOB_UPLOAD_UNKNOWN", "upload unknown");
    auto range_of = [&] {
      return absl::StrCat("0-", up->second.empty() ? 0 : up->second.size() - 1);
    };
    if (req.method == "GET") {
      Response r;
      r.status = 204;
      r.headers.push_back({"Range", range_of()});
      r.headers.push_back({"Location", absl::StrCat("/v2/", repo, "/blobs/uploads/", arg)});
      return r;
    }
    if (req.method == "PATCH") {
      auto cr = req.headers.find("content-range");
      if (cr != req.headers.end()) {
        int64_t start = -1;
        absl::SimpleAtoi(cr->second.substr(0, cr->second.find('-')), &start);
        if (start != static_cast<int64_t>(up->second.size())) {
          return Error(416, "BLOB_UPLOAD_INVALID", "range mismatch");
        }
      }
      if (patch_countdown_ > 0 && --patch_countdown_ == 0) {
        up->second += req.body.substr(0, req.body.size() / 2);
        return Error(500, "UNKNOWN", "injected chunk failure");
      }
      up->second += req.body;
      Response r;
      r.status = 202;
      r.headers.push_back({"Location", absl::StrCat("/v2/", repo, "/blobs/uploads/", arg)});
      r.headers.push_back({"Range", range_of()});
      return r;
    }
    if (req.method == "PUT") {
      up->second += req.body;
      std::string digest = Param(req.query, "digest");
      std::string actual = "sha256:" + common::Sha256Hex(up->second);
      if (digest != actual) {
        uploads_.erase(up);
        return Error(400, "DIGEST_INVALID", "provided digest did not match uploaded content");
      }
      blobs_[actual] = up->second;
      repo_blobs_[repo].insert(actual);
      uploads_.erase(up);
      Response r;
      r.status = 201;
      r.headers.push_back({"Docker-Content-Digest", actual});
      r.headers.push_back({"Location", absl::StrCat("/v2/", repo, "/blobs/", actual)});
      return r;
    }
    return Error(405, "UNSUPPORTED", "method");
  }
  if (op == "/blobs/") {
    if (repo_blobs_[repo].count(arg) == 0) return Error(404, "BLOB_UNKNOWN", "blob unknown");
    std::string data = blobs_[arg];
    if (tampered_.count(arg) && !data.empty()) data.back() = static_cast<char>(data.back() ^ 1);
    Response r;
    r.headers.push_back({"Content-Type", "application/octet-stream"});
    r.headers.push_back({"Docker-Content-Digest", arg});
    auto range = req.headers.find("range");
    size_t from = 0;
    if (range != req.headers.end() && absl::StartsWith(range->second, "bytes=")) {
      absl::SimpleAtoi(range->second.substr(6, range->second.find('-') - 6), &from);
      if (from > data.size()) return Error(416, "RANGE", "bad range");
      r.status = 206;
      r.headers.push_back(
          {"Content-Range", absl::StrCat("bytes ", from, "-", data.size() - 1, "/", data.size())});
    }
    r.body = data.substr(from);
    if (req.method == "GET" && cut_once_.erase(arg) > 0) r.cut_after = r.body.size() / 2;
    return r;
  }
  return Error(404, "NOT_FOUND", "no route");
}

void FakeRegistry::PutBlob(const std::string& repo, const std::string& bytes) {
  absl::MutexLock lock(&mu_);
  std::string digest = "sha256:" + common::Sha256Hex(bytes);
  blobs_[digest] = bytes;
  repo_blobs_[repo].insert(digest);
}

void FakeRegistry::PutManifest(const std::string& repo, const std::string& ref,
                               const std::string& media_type, const std::string& bytes) {
  absl::MutexLock lock(&mu_);
  manifests_[repo][ref] = {media_type, bytes};
  manifests_[repo]["sha256:" + common::Sha256Hex(bytes)] = {media_type, bytes};
}

bool FakeRegistry::HasBlob(const std::string& repo, const std::string& digest) {
  absl::MutexLock lock(&mu_);
  return repo_blobs_[repo].count(digest) > 0;
}

void FakeRegistry::RequireBearer(const std::string& user, const std::string& pass) {
  absl::MutexLock lock(&mu_);
  bearer_ = true;
  bearer_user_ = user;
  bearer_pass_ = pass;
}

void FakeRegistry::FailNext(const std::string& prefix, int count, int status) {
  absl::MutexLock lock(&mu_);
  failures_.push_back({prefix, count, status});
}

void FakeRegistry::TamperBlob(const std::string& digest) {
  absl::MutexLock lock(&mu_);
  tampered_.insert(digest);
}

void FakeRegistry::CutBlobOnce(const std::string& digest) {
  absl::MutexLock lock(&mu_);
  cut_once_.insert(digest);
}

void FakeRegistry::FailPatch(int nth) {
  absl::MutexLock lock(&mu_);
  patch_countdown_ = nth;
}

void FakeRegistry::DisableManifestHead() {
  absl::MutexLock lock(&mu_);
  manifest_head_ = false;
}

std::vector<std::string> FakeRegistry::requests() {
  absl::MutexLock lock(&mu_);
  return log_;
}

int FakeRegistry::CountRequests(const std::string& method, const std::string& contains) {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const std::string& l : log_) {
    if (absl::StartsWith(l, method + " ") && absl::StrContains(l, contains)) ++n;
  }
  return n;
}

void FakeRegistry::ClearRequests() {
  absl::MutexLock lock(&mu_);
  log_.clear();
}

std::vector<std::string> FakeRegistry::token_scopes() {
  absl::MutexLock lock(&mu_);
  return token_scopes_;
}

}  // namespace farm::scheduler::registry::testing
