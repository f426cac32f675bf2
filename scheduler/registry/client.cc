#include "scheduler/registry/client.h"

#include <algorithm>
#include <atomic>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/backoff.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "nlohmann/json.hpp"
#include "oci/manifest.h"
#include "oci/reference.h"

namespace farm::scheduler::registry {

namespace {

using nlohmann::json;

constexpr int64_t kMaxManifestBytes = 4 << 20;
constexpr int64_t kUploadWindow = 4 << 20;  // bytes of an upload buffered at a time

std::string UrlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out += c;
    } else {
      absl::StrAppendFormat(&out, "%%%02X", static_cast<unsigned char>(c));
    }
  }
  return out;
}

std::string AppendQuery(const std::string& url, absl::string_view kv) {
  return absl::StrCat(url, absl::StrContains(url, '?') ? "&" : "?", kv);
}

// "https://host:port/path" → "host:port".
std::string AuthorityOf(absl::string_view url) {
  absl::ConsumePrefix(&url, "http://") || absl::ConsumePrefix(&url, "https://");
  return std::string(url.substr(0, url.find('/')));
}

std::string PullScope(const std::string& repo) {
  return absl::StrCat("repository:", repo, ":pull");
}
std::string PushScope(const std::string& repo) {
  return absl::StrCat("repository:", repo, ":pull,push");
}

// Registry error bodies: {"errors":[{"code":"MANIFEST_UNKNOWN","message":"..."}]}.
std::string ErrorDetail(const HttpResponse& resp) {
  json j = json::parse(resp.body, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> parts;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const json& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string code = e.value("code", "");
      std::string message = e.value("message", "");
      parts.push_back(
          absl::StrCat(absl::AsciiStrToLower(code), message.empty() ? "" : ": ", message));
    }
  }
  if (!parts.empty()) return absl::StrJoin(parts, "; ");
  std::string body(absl::StripAsciiWhitespace(resp.body.substr(0, 200)));
  return body.empty() ? absl::StrCat("HTTP ", resp.status) : body;
}

absl::StatusCode CodeFor(int status) {
  switch (status) {
    case 400:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 403:
      return absl::StatusCode::kPermissionDenied;
    case 404:
      return absl::StatusCode::kNotFound;
    case 405:
      return absl::StatusCode::kUnimplemented;
    case 409:
    case 412:
      return absl::StatusCode::kFailedPrecondition;
    case 416:
      return absl::StatusCode::kOutOfRange;
    case 429:
      return absl::StatusCode::kResourceExhausted;
    default:
      return status >= 500 ? absl::StatusCode::kUnavailable : absl::StatusCode::kUnknown;
  }
}

bool Retryable(int status) { return status == 429 || status >= 500; }

// Range: 0-<last byte> → bytes held (distribution writes "0-0" for an empty upload).
int64_t BytesFromRange(absl::string_view range) {
  absl::ConsumePrefix(&range, "bytes=");
  size_t dash = range.find('-');
  int64_t end = 0;
  if (dash == absl::string_view::npos || !absl::SimpleAtoi(range.substr(dash + 1), &end)) {
    return 0;
  }
  return end <= 0 ? 0 : end + 1;
}

// Pull-style reader over a push-style BlobSource: buffers a window at a time.
BodyReader WindowReader(const BlobSource& source, int64_t offset, int64_t length) {
  struct State {
    int64_t next = 0;  // next byte of the range to read from the source
    int64_t end = 0;
    std::string buf;
    size_t pos = 0;
  };
  auto st = std::make_shared<State>();
  st->next = offset;
  st->end = offset + length;
  return [st, source](char* out, size_t max) -> absl::StatusOr<size_t> {
    if (st->pos == st->buf.size()) {
      if (st->next >= st->end) return size_t{0};
      st->buf.clear();
      st->pos = 0;
      int64_t want = std::min<int64_t>(kUploadWindow, st->end - st->next);
      RETURN_IF_ERROR(source(st->next, want, [&](absl::string_view c) {
        st->buf.append(c.data(), c.size());
        return absl::OkStatus();
      }));
      if (static_cast<int64_t>(st->buf.size()) != want) {
        return absl::DataLossError(absl::StrCat("blob source gave ", st->buf.size(),
                                                " bytes at offset ", st->next, ", wanted ", want));
      }
      st->next += want;
    }
    size_t n = std::min(max, st->buf.size() - st->pos);
    memcpy(out, st->buf.data() + st->pos, n);
    st->pos += n;
    return n;
  };
}

}  // namespace

bool IsLoopbackDomain(absl::string_view domain) {
  std::string host;
  if (absl::StartsWith(domain, "[")) {
    host = std::string(domain.substr(0, domain.find(']') + 1));
  } else {
    host = std::string(domain.substr(0, domain.find(':')));
  }
  host = absl::AsciiStrToLower(host);
  return host == "localhost" || host == "[::1]" || absl::StartsWith(host, "127.");
}

struct Client::Impl {
  std::string domain;
  std::string host;  // what we connect to (registry-1.docker.io for docker.io)
  RegistryOptions opt;
  std::optional<common::Backoff> backoff;  // from opt, set in Create
  HttpTransport::Ptr http;
  bool insecure = false;

  absl::Mutex mu;
  bool pinged ABSL_GUARDED_BY(mu) = false;
  std::string base ABSL_GUARDED_BY(mu);
  std::vector<Challenge> challenges ABSL_GUARDED_BY(mu);
  bool creds_loaded ABSL_GUARDED_BY(mu) = false;
  Credentials creds ABSL_GUARDED_BY(mu);
  struct Token {
    std::string value;
    absl::Time expiry;
  };
  std::map<std::string, Token> tokens ABSL_GUARDED_BY(mu);

  std::atomic<int64_t> requests{0}, retries{0}, blob_uploads{0}, chunk_uploads{0}, blob_mounts{0},
      blobs_skipped{0}, bytes_uploaded{0}, bytes_downloaded{0}, token_fetches{0};

  struct Call {
    std::string method = "GET";
    std::string url;  // absolute, or a path starting with "/v2/"
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::function<BodyReader()> make_reader;  // a fresh body reader per attempt
    int64_t body_size = -1;
    std::vector<std::string> scopes;
    bool retryable = true;
    bool follow_redirects = false;
    const BodySink* sink = nullptr;
    std::function<void(int)> on_status;
  };

  // Waits before retry number `attempt` + 1: the registry's Retry-After when it sent one, else
  // the common exponential backoff (jittered, so many builders do not retry in lockstep).
  void Backoff(int attempt, const HttpResponse* resp) {
    absl::Duration d = backoff->Delay(attempt);
    if (resp != nullptr) {
      int64_t secs = 0;
      if (absl::SimpleAtoi(resp->Header("retry-after"), &secs) && secs >= 0) {
        d = std::min(absl::Seconds(secs), opt.max_backoff);
      }
    }
    absl::SleepFor(d);
    retries++;
  }

  absl::Status LoadCredentials() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (creds_loaded) return absl::OkStatus();
    if (opt.credentials) {
      creds = *opt.credentials;
    } else {
      ASSIGN_OR_RETURN(DockerConfig cfg, DockerConfig::Load(opt.docker_config_dir));
      ASSIGN_OR_RETURN(creds, cfg.Get(domain));
    }
    creds_loaded = true;
    return absl::OkStatus();
  }

  absl::Status EnsurePinged() {
    absl::MutexLock lock(&mu);
    if (pinged) return absl::OkStatus();
    std::vector<std::string> schemes = {"https"};
    if (insecure) schemes.push_back("http");
    absl::Status last;
    for (const std::string& scheme : schemes) {
      std::string base_url = absl::StrCat(scheme, "://", host);
      for (int attempt = 0; attempt < opt.max_attempts; ++attempt) {
        HttpRequest req;
        req.url = base_url + "/v2/";
        req.verify_tls = !insecure;
        req.connect_timeout = absl::Seconds(15);
        absl::StatusOr<HttpResponse> resp = http->Do(req, nullptr);
        requests++;
        if (!resp.ok()) {
          last = resp.status();
          // A TLS handshake against a plain-HTTP port fails at once: try the next scheme.
          if (scheme == "https" && insecure) break;
          if (attempt + 1 < opt.max_attempts) Backoff(attempt, nullptr);
          continue;
        }
        if (Retryable(resp->status) && attempt + 1 < opt.max_attempts) {
          last = absl::UnavailableError(absl::StrCat("GET ", req.url, ": HTTP ", resp->status));
          Backoff(attempt, &*resp);
          continue;
        }
        if (resp->status == 200 || resp->status == 401) {
          base = base_url;
          challenges = resp->status == 401 ? ParseWwwAuthenticate(resp->Header("www-authenticate"))
                                           : std::vector<Challenge>{};
          pinged = true;
          return absl::OkStatus();
        }
        return absl::Status(
            CodeFor(resp->status),
            absl::StrCat("registry ", domain, " answered GET /v2/ with HTTP ", resp->status, ": ",
                         ErrorDetail(*resp), " (not a Docker Registry v2 / OCI registry?)"));
      }
    }
    return absl::UnavailableError(
        absl::StrCat("registry ", domain, " is unreachable: ", last.message(),
                     insecure ? ""
                              : " (a registry without TLS must be listed with --insecure-registry: "
                                "farm build's flag, or farm-scheduler's on a farm)"));
  }

  absl::StatusOr<std::string> FetchToken(const Challenge& ch,
                                         const std::vector<std::string>& scopes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto realm = ch.params.find("realm");
    if (realm == ch.params.end() || realm->second.empty()) {
      return absl::UnauthenticatedError(
          absl::StrCat("registry ", domain, ": Bearer challenge without realm"));
    }
    std::string service = ch.params.count("service") ? ch.params.at("service") : "";
    HttpRequest req;
    req.verify_tls = !insecure;
    if (!creds.identity_token.empty()) {
      req.method = "POST";
      req.url = realm->second;
      req.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
      req.body =
          absl::StrCat("grant_type=refresh_token&client_id=farm&service=", UrlEscape(service),
                       "&refresh_token=", UrlEscape(creds.identity_token),
                       "&scope=", UrlEscape(absl::StrJoin(scopes, " ")));
    } else {
      std::string url = realm->second;
      if (!service.empty()) url = AppendQuery(url, "service=" + UrlEscape(service));
      for (const std::string& s : scopes) url = AppendQuery(url, "scope=" + UrlEscape(s));
      req.url = url;
      if (!creds.username.empty()) {
        req.headers.push_back(
            {"Authorization",
             "Basic " + Base64Encode(absl::StrCat(creds.username, ":", creds.password))});
      }
    }
    absl::StatusOr<HttpResponse> resp;
    for (int attempt = 0; attempt < opt.max_attempts; ++attempt) {
      resp = http->Do(req, nullptr);
      requests++;
      token_fetches++;
      if (resp.ok() && !Retryable(resp->status)) break;
      if (attempt + 1 < opt.max_attempts) Backoff(attempt, resp.ok() ? &*resp : nullptr);
    }
    if (!resp.ok()) return common::Annotate(resp.status(), "fetching a registry token");
    if (resp->status != 200) {
      return absl::Status(
          resp->status == 401 || resp->status == 403 ? absl::StatusCode::kUnauthenticated
                                                     : CodeFor(resp->status),
          absl::StrCat("registry ", domain, ": token endpoint ", realm->second, " refused (HTTP ",
                       resp->status, "): ", ErrorDetail(*resp),
                       creds.empty() ? " (not logged in: farm login " + domain + ")" : ""));
    }
    json j = json::parse(resp->body, nullptr, /*allow_exceptions=*/false);
    std::string token;
    if (j.is_object()) {
      if (j.contains("token") && j["token"].is_string()) token = j["token"].get<std::string>();
      if (token.empty() && j.contains("access_token") && j["access_token"].is_string()) {
        token = j["access_token"].get<std::string>();
      }
    }
    if (token.empty()) {
      return absl::UnauthenticatedError(
          absl::StrCat("registry ", domain, ": token endpoint returned no token"));
    }
    int64_t expires = 60;
    if (j.contains("expires_in") && j["expires_in"].is_number_integer()) {
      expires = std::max<int64_t>(j["expires_in"].get<int64_t>(), 60);
    }
    tokens[absl::StrJoin(scopes, " ")] = {token, absl::Now() + absl::Seconds(expires - 10)};
    return token;
  }

  // The Authorization header value for `scopes` ("" for none).
  absl::StatusOr<std::string> AuthHeader(const std::vector<std::string>& scopes_in) {
    absl::MutexLock lock(&mu);
    RETURN_IF_ERROR(LoadCredentials());
    for (const Challenge& ch : challenges) {
      if (ch.scheme == "bearer") {
        std::vector<std::string> scopes = scopes_in;
        std::sort(scopes.begin(), scopes.end());
        auto it = tokens.find(absl::StrJoin(scopes, " "));
        if (it != tokens.end() && absl::Now() < it->second.expiry) {
          return "Bearer " + it->second.value;
        }
        ASSIGN_OR_RETURN(std::string token, FetchToken(ch, scopes));
        return "Bearer " + token;
      }
      if (ch.scheme == "basic") {
        if (creds.username.empty()) return std::string();
        return "Basic " + Base64Encode(absl::StrCat(creds.username, ":", creds.password));
      }
    }
    return std::string();
  }

  // After a 401: adopt the new challenge and drop cached tokens so the next header is fresh.
  void Reauthenticate(const HttpResponse& resp) {
    absl::MutexLock lock(&mu);
    std::vector<Challenge> fresh = ParseWwwAuthenticate(resp.Header("www-authenticate"));
    if (!fresh.empty()) challenges = std::move(fresh);
    tokens.clear();
  }

  std::string Url(const std::string& path_or_url) {
    if (absl::StartsWith(path_or_url, "http://") || absl::StartsWith(path_or_url, "https://")) {
      return path_or_url;
    }
    absl::MutexLock lock(&mu);
    if (absl::StartsWith(path_or_url, "/")) return base + path_or_url;
    return base + "/" + path_or_url;
  }

  absl::StatusOr<HttpResponse> Send(const Call& call) {
    RETURN_IF_ERROR(EnsurePinged());
    std::string url = Url(call.url);
    bool same_host = AuthorityOf(url) == host;
    bool reauthenticated = false;
    for (int attempt = 0;;) {
      HttpRequest req;
      req.method = call.method;
      req.url = url;
      req.headers = call.headers;
      req.body = call.body;
      req.follow_redirects = call.follow_redirects;
      req.verify_tls = !insecure;
      req.on_status = call.on_status;
      if (call.make_reader) {
        req.body_reader = call.make_reader();
        req.body_size = call.body_size;
      }
      if (same_host) {
        ASSIGN_OR_RETURN(std::string auth, AuthHeader(call.scopes));
        if (!auth.empty()) req.headers.push_back({"Authorization", auth});
      }
      absl::StatusOr<HttpResponse> resp = http->Do(req, call.sink);
      requests++;
      if (!resp.ok()) {
        if (resp.status().code() == absl::StatusCode::kUnavailable && call.retryable &&
            ++attempt < opt.max_attempts) {
          Backoff(attempt - 1, nullptr);
          continue;
        }
        return resp.status();
      }
      if (resp->status == 401 && same_host && !reauthenticated) {
        reauthenticated = true;
        Reauthenticate(*resp);
        continue;
      }
      if (Retryable(resp->status) && call.retryable && ++attempt < opt.max_attempts) {
        Backoff(attempt - 1, &*resp);
        continue;
      }
      return resp;
    }
  }

  absl::Status Error(const Call& call, const HttpResponse& resp, absl::string_view what) {
    std::string detail = ErrorDetail(resp);
    std::string text =
        absl::StrCat(what, ": ", call.method, " ", Url(call.url), ": HTTP ", resp.status);
    if (detail != absl::StrCat("HTTP ", resp.status)) absl::StrAppend(&text, ": ", detail);
    if (resp.status == 401 || resp.status == 403) {
      absl::MutexLock lock(&mu);
      if (creds_loaded && creds.empty()) {
        absl::StrAppend(&text, " (no credentials were sent to ", domain,
                        ": `farm login`; on a farm, farm-scheduler's --tenant-docker-config or "
                        "--docker-config with --shared-registry-push)");
      }
    }
    return absl::Status(CodeFor(resp.status), text);
  }

  absl::StatusOr<std::string> StartUpload(const std::string& repo) {
    Call c;
    c.method = "POST";
    c.url = absl::StrCat("/v2/", repo, "/blobs/uploads/");
    c.scopes = {PushScope(repo)};
    ASSIGN_OR_RETURN(HttpResponse resp, Send(c));
    if (resp.status != 202) return Error(c, resp, absl::StrCat("starting an upload to ", repo));
    std::string loc = resp.Header("location");
    if (loc.empty()) {
      return absl::UnavailableError(absl::StrCat("registry ", domain, ": upload without Location"));
    }
    return Url(loc);
  }

  // One monolithic attempt: PUT the whole blob to `location`.
  absl::StatusOr<HttpResponse> PutWhole(const std::string& repo, const std::string& location,
                                        const common::Digest& digest, const BlobSource& source) {
    Call c;
    c.method = "PUT";
    c.url = AppendQuery(location, "digest=" + UrlEscape(digest.OciString()));
    c.headers = {{"Content-Type", "application/octet-stream"}};
    c.make_reader = [&source, size = digest.size_bytes] { return WindowReader(source, 0, size); };
    c.body_size = digest.size_bytes;
    c.scopes = {PushScope(repo)};
    c.retryable = false;  // a partial PUT leaves the session unusable: retried with a new one
    return Send(c);
  }
};

Client::Client(std::string domain, std::unique_ptr<Impl> impl)
    : domain_(std::move(domain)), impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(const std::string& domain,
                                                       RegistryOptions options) {
  if (domain.empty()) return absl::InvalidArgumentError("empty registry domain");
  auto impl = std::make_unique<Impl>();
  impl->domain = domain;
  impl->host = oci::RegistryHostFor(domain);
  impl->insecure = IsLoopbackDomain(domain) ||
                   std::find(options.insecure_registries.begin(), options.insecure_registries.end(),
                             domain) != options.insecure_registries.end();
  impl->http = options.transport ? options.transport : CurlTransport::Create();
  if (options.max_attempts < 1) options.max_attempts = 1;
  impl->opt = std::move(options);
  impl->backoff.emplace(
      common::Backoff::Options{impl->opt.initial_backoff, impl->opt.max_backoff, 2.0, 0.1});
  return std::unique_ptr<Client>(new Client(domain, std::move(impl)));
}

std::string Client::base_url() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->base;
}

ClientStats Client::stats() const {
  ClientStats s;
  s.requests = impl_->requests;
  s.retries = impl_->retries;
  s.blob_uploads = impl_->blob_uploads;
  s.chunk_uploads = impl_->chunk_uploads;
  s.blob_mounts = impl_->blob_mounts;
  s.blobs_skipped = impl_->blobs_skipped;
  s.bytes_uploaded = impl_->bytes_uploaded;
  s.bytes_downloaded = impl_->bytes_downloaded;
  s.token_fetches = impl_->token_fetches;
  return s;
}

absl::Status Client::CheckLogin() {
  RETURN_IF_ERROR(impl_->EnsurePinged());
  Impl::Call c;
  c.url = "/v2/";
  ASSIGN_OR_RETURN(HttpResponse resp, impl_->Send(c));
  if (resp.status == 200) return absl::OkStatus();
  if (resp.status == 401) {
    return absl::UnauthenticatedError(absl::StrCat("login to ", domain_,
                                                   " failed: ", ErrorDetail(resp),
                                                   " (incorrect username or password?)"));
  }
  return impl_->Error(c, resp, "checking the login");
}

absl::StatusOr<ManifestInfo> Client::HeadManifest(const std::string& repo, const std::string& ref) {
  Impl::Call c;
  c.method = "HEAD";
  c.url = absl::StrCat("/v2/", repo, "/manifests/", ref);
  c.headers = {{"Accept", oci::ManifestAcceptHeader()}};
  c.scopes = {PullScope(repo)};
  ASSIGN_OR_RETURN(HttpResponse resp, impl_->Send(c));
  if (resp.status == 404) {
    return absl::NotFoundError(absl::StrCat("manifest for ", domain_, "/", repo,
                                            absl::StartsWith(ref, "sha256:") ? "@" : ":", ref,
                                            " not found: manifest unknown"));
  }
  if (resp.status != 200) return impl_->Error(c, resp, "resolving the manifest");
  ManifestInfo info;
  info.digest = resp.Header("docker-content-digest");
  info.media_type = resp.Header("content-type");
  absl::SimpleAtoi(resp.Header("content-length"), &info.size);
  return info;
}

absl::StatusOr<FetchedManifest> Client::GetManifest(const std::string& repo,
                                                    const std::string& ref) {
  std::string body;
  BodySink sink = [&](absl::string_view chunk) -> absl::Status {
    if (static_cast<int64_t>(body.size() + chunk.size()) > kMaxManifestBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("manifest ", repo, ":", ref, " is larger than ", kMaxManifestBytes));
    }
    body.append(chunk.data(), chunk.size());
    return absl::OkStatus();
  };
  Impl::Call c;
  c.url = absl::StrCat("/v2/", repo, "/manifests/", ref);
  c.headers = {{"Accept", oci::ManifestAcceptHeader()}};
  c.scopes = {PullScope(repo)};
  c.sink = &sink;
  c.on_status = [&](int) { body.clear(); };
  ASSIGN_OR_RETURN(HttpResponse resp, impl_->Send(c));
  if (resp.status == 404) {
    return absl::NotFoundError(absl::StrCat("manifest for ", domain_, "/", repo,
                                            absl::StartsWith(ref, "sha256:") ? "@" : ":", ref,
                                            " not found: manifest unknown"));
  }
  if (resp.status != 200) return impl_->Error(c, resp, "fetching the manifest");
  FetchedManifest out;
  out.bytes = std::move(body);
  common::Digest actual = common::DigestOf(out.bytes);
  if (absl::StartsWith(ref, "sha256:") && actual.OciString() != ref) {
    return absl::DataLossError(absl::StrCat("registry ", domain_, " sent manifest ",
                                            actual.OciString(), " for ", repo, "@", ref));
  }
  std::string header_digest = resp.Header("docker-content-digest");
  if (!header_digest.empty() && absl::StartsWith(header_digest, "sha256:") &&
      header_digest != actual.OciString()) {
    return absl::DataLossError(absl::StrCat(
        "registry ", domain_, " sent a manifest for ", repo, ":", ref, " whose digest ",
        actual.OciString(), " differs from its Docker-Content-Digest ", header_digest));
  }
  out.info.digest = actual.OciString();
  out.info.media_type = resp.Header("content-type");
  out.info.size = actual.size_bytes;
  impl_->bytes_downloaded += actual.size_bytes;
  return out;
}

absl::StatusOr<std::string> Client::PutManifest(const std::string& repo, const std::string& ref,
                                                const std::string& media_type,
                                                const std::string& bytes) {
  Impl::Call c;
  c.method = "PUT";
  c.url = absl::StrCat("/v2/", repo, "/manifests/", ref);
  c.headers = {{"Content-Type", media_type}};
  c.body = bytes;
  c.scopes = {PushScope(repo)};
  ASSIGN_OR_RETURN(HttpResponse resp, impl_->Send(c));
  if (resp.status != 201 && resp.status != 200 && resp.status != 202) {
    return impl_->Error(c, resp, absl::StrCat("pushing manifest ", repo, ":", ref));
  }
  std::string digest = common::DigestOf(bytes).OciString();
  std::string reported = resp.Header("docker-content-digest");
  if (!reported.empty() && reported != digest) {
    return absl::DataLossError(absl::StrCat("registry ", domain_, " stored manifest ", repo, ":",
                                            ref, " as ", reported, ", expected ", digest));
  }
  impl_->bytes_uploaded += static_cast<int64_t>(bytes.size());
  return digest;
}

absl::StatusOr<bool> Client::BlobExists(const std::string& repo, const common::Digest& digest) {
  Impl::Call c;
  c.method = "HEAD";
  c.url = absl::StrCat("/v2/", repo, "/blobs/", digest.OciString());
  c.scopes = {PullScope(repo)};
  c.follow_redirects = true;
  ASSIGN_OR_RETURN(HttpResponse resp, impl_->Send(c));
  if (resp.status == 200) return true;
  if (resp.status == 404) return false;
  return impl_->Error(c, resp, "checking a blob");
}

absl::Status Client::GetBlob(const std::string& repo, const common::Digest& digest,
                             const BodySink& sink) {
  int64_t delivered = 0;  // bytes handed to `sink` so far
  absl::Status last;
  for (int attempt = 0; attempt < impl_->opt.max_attempts; ++attempt) {
    int64_t skip = 0;
    bool sink_failed = false;
    BodySink wrapper = [&](absl::string_view chunk) -> absl::Status {
      if (skip > 0) {
        size_t n = static_cast<size_t>(std::min<int64_t>(skip, chunk.size()));
        chunk.remove_prefix(n);
        skip -= static_cast<int64_t>(n);
        if (chunk.empty()) return absl::OkStatus();
      }
      if (delivered + static_cast<int64_t>(chunk.size()) > digest.size_bytes) {
        sink_failed = true;
        return absl::DataLossError(absl::StrCat("registry ", domain_, " sent more than the ",
                                                digest.size_bytes, " bytes of blob ",
                                                digest.OciString()));
      }
      absl::Status s = sink(chunk);
      if (!s.ok()) {
        sink_failed = true;
        return s;
      }
      delivered += static_cast<int64_t>(chunk.size());
      impl_->bytes_downloaded += static_cast<int64_t>(chunk.size());
      return absl::OkStatus();
    };
    Impl::Call c;
    c.url = absl::StrCat("/v2/", repo, "/blobs/", digest.OciString());
    c.scopes = {PullScope(repo)};
    c.follow_redirects = true;
    c.retryable = false;  // retried here, resuming with Range
    c.sink = &wrapper;
    if (delivered > 0) c.headers = {{"Range", absl::StrCat("bytes=", delivered, "-")}};
    c.on_status = [&](int status) { skip = status == 200 ? delivered : 0; };
    absl::StatusOr<HttpResponse> resp = impl_->Send(c);
    if (sink_failed) return resp.status();
    if (!resp.ok()) {
      if (resp.status().code() != absl::StatusCode::kUnavailable) return resp.status();
      last = resp.status();
    } else if (resp->status == 200 || resp->status == 206) {
      if (delivered == digest.size_bytes) return absl::OkStatus();
      last = absl::UnavailableError(absl::StrCat("blob ", digest.OciString(), " ended after ",
                                                 delivered, " of ", digest.size_bytes, " bytes"));
    } else if (resp->status == 404) {
      return absl::NotFoundError(absl::StrCat("blob ", digest.OciString(), " not found in ",
                                              domain_, "/", repo, ": blob unknown"));
    } else if (Retryable(resp->status)) {
      last = impl_->Error(c, *resp, "fetching a blob");
    } else {
      return impl_->Error(c, *resp, "fetching a blob");
    }
    if (attempt + 1 < impl_->opt.max_attempts) {
      impl_->Backoff(attempt, resp.ok() ? &*resp : nullptr);
    }
  }
  return absl::UnavailableError(
      absl::StrCat("fetching blob ", digest.OciString(), " from ", domain_, "/", repo,
                   " failed after ", impl_->opt.max_attempts, " attempts: ", last.message()));
}

absl::StatusOr<BlobPushResult> Client::PushBlob(const std::string& repo,
                                                const common::Digest& digest,
                                                const std::vector<std::string>& mount_from,
                                                const BlobSource& source) {
  ASSIGN_OR_RETURN(bool exists, BlobExists(repo, digest));
  if (exists) {
    impl_->blobs_skipped++;
    return BlobPushResult::kExists;
  }
  std::string location;
  for (const std::string& from : mount_from) {
    if (from == repo) continue;
    Impl::Call c;
    c.method = "POST";
    c.url = absl::StrCat("/v2/", repo, "/blobs/uploads/?mount=", UrlEscape(digest.OciString()),
                         "&from=", UrlEscape(from));
    c.scopes = {PushScope(repo), PullScope(from)};
    absl::StatusOr<HttpResponse> resp = impl_->Send(c);
    if (!resp.ok()) return resp.status();
    if (resp->status == 201) {
      impl_->blob_mounts++;
      return BlobPushResult::kMounted;
    }
    if (resp->status == 202 && !resp->Header("location").empty()) {
      location = impl_->Url(resp->Header("location"));  // the registry opened an upload instead
      break;
    }
  }
  const int64_t size = digest.size_bytes;
  const int64_t chunk = impl_->opt.chunk_size;
  absl::Status last;
  if (chunk <= 0 || size <= chunk) {
    for (int attempt = 0; attempt < impl_->opt.max_attempts; ++attempt) {
      if (location.empty()) {
        ASSIGN_OR_RETURN(location, impl_->StartUpload(repo));
      }
      absl::StatusOr<HttpResponse> resp = impl_->PutWhole(repo, location, digest, source);
      location.clear();
      if (resp.ok() && (resp->status == 201 || resp->status == 204)) {
        impl_->blob_uploads++;
        impl_->bytes_uploaded += size;
        return BlobPushResult::kUploaded;
      }
      if (resp.ok() && !Retryable(resp->status)) {
        return absl::Status(
            CodeFor(resp->status),
            absl::StrCat("uploading blob ", digest.OciString(), " to ", domain_, "/", repo,
                         ": HTTP ", resp->status, ": ", ErrorDetail(*resp)));
      }
      if (!resp.ok() && resp.status().code() != absl::StatusCode::kUnavailable) {
        return resp.status();
      }
      last =
          resp.ok() ? absl::UnavailableError(absl::StrCat("HTTP ", resp->status)) : resp.status();
      if (attempt + 1 < impl_->opt.max_attempts) {
        impl_->Backoff(attempt, resp.ok() ? &*resp : nullptr);
      }
    }
    return absl::UnavailableError(
        absl::StrCat("uploading blob ", digest.OciString(), " to ", domain_, "/", repo,
                     " failed after ", impl_->opt.max_attempts, " attempts: ", last.message()));
  }

  // Chunked: PATCH windows of `chunk` bytes, resuming from the registry's Range on failure.
  if (location.empty()) {
    ASSIGN_OR_RETURN(location, impl_->StartUpload(repo));
  }
  int64_t offset = 0;
  int failures = 0;
  while (offset < size) {
    int64_t n = std::min(chunk, size - offset);
    Impl::Call c;
    c.method = "PATCH";
    c.url = location;
    c.headers = {{"Content-Type", "application/octet-stream"},
                 {"Content-Range", absl::StrCat(offset, "-", offset + n - 1)}};
    c.make_reader = [&source, offset, n] { return WindowReader(source, offset, n); };
    c.body_size = n;
    c.scopes = {PushScope(repo)};
    c.retryable = false;
    absl::StatusOr<HttpResponse> resp = impl_->Send(c);
    if (resp.ok() && resp->status == 202) {
      impl_->chunk_uploads++;
      impl_->bytes_uploaded += n;
      std::string loc = resp->Header("location");
      if (!loc.empty()) location = impl_->Url(loc);
      std::string range = resp->Header("range");
      offset = range.empty() ? offset + n : BytesFromRange(range);
      continue;
    }
    if (resp.ok() && !Retryable(resp->status) && resp->status != 416) {
      return absl::Status(CodeFor(resp->status),
                          absl::StrCat("uploading blob ", digest.OciString(), " (bytes ", offset,
                                       "-", offset + n - 1, ") to ", domain_, "/", repo, ": HTTP ",
                                       resp->status, ": ", ErrorDetail(*resp)));
    }
    if (!resp.ok() && resp.status().code() != absl::StatusCode::kUnavailable) {
      return resp.status();
    }
    if (++failures >= impl_->opt.max_attempts) {
      return absl::UnavailableError(absl::StrCat(
          "uploading blob ", digest.OciString(), " to ", domain_, "/", repo, " failed after ",
          failures, " attempts: ",
          resp.ok() ? absl::StrCat("HTTP ", resp->status) : std::string(resp.status().message())));
    }
    impl_->Backoff(failures - 1, resp.ok() ? &*resp : nullptr);
    // Ask the registry how much it holds and resume from there; start over if it lost it.
    Impl::Call status;
    status.url = location;
    status.scopes = {PushScope(repo)};
    absl::StatusOr<HttpResponse> st = impl_->Send(status);
    if (st.ok() && st->status == 204) {
      offset = BytesFromRange(st->Header("range"));
      std::string loc = st->Header("location");
      if (!loc.empty()) location = impl_->Url(loc);
    } else {
      ASSIGN_OR_RETURN(location, impl_->StartUpload(repo));
      offset = 0;
    }
  }
  Impl::Call fin;
  fin.method = "PUT";
  fin.url = AppendQuery(location, "digest=" + UrlEscape(digest.OciString()));
  fin.headers = {{"Content-Type", "application/octet-stream"}};
  fin.scopes = {PushScope(repo)};
  ASSIGN_OR_RETURN(HttpResponse resp, impl_->Send(fin));
  if (resp.status != 201 && resp.status != 204) {
    return impl_->Error(fin, resp, absl::StrCat("completing the upload of ", digest.OciString()));
  }
  impl_->blob_uploads++;
  return BlobPushResult::kUploaded;
}

absl::StatusOr<Client*> ClientPool::Get(const std::string& domain) {
  absl::MutexLock lock(&mu_);
  auto it = clients_.find(domain);
  if (it != clients_.end()) return it->second.get();
  ASSIGN_OR_RETURN(std::unique_ptr<Client> c, Client::Create(domain, options_));
  Client* raw = c.get();
  clients_[domain] = std::move(c);
  return raw;
}

}  // namespace farm::scheduler::registry
