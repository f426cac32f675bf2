#include "auth/grpc_auth.h"

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <iostream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "auth/openssl_util.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm {
namespace auth {

using internal::X509Ptr;

namespace {

constexpr size_t kMaxWorkerIdLength = 128;
constexpr size_t kWorkerCacheEntries = 1024;

// What the transport says about the peer, from either the C or the C++ auth context.
struct PeerFacts {
  bool tls = false;
  std::string pem;          // verified leaf certificate, if any
  std::string common_name;  // its CN
};

PeerFacts PeerFactsOf(const grpc::AuthContext& ctx) {
  PeerFacts f;
  absl::StatusOr<PeerCertificate> cert = PeerCertificateOf(ctx);
  for (const grpc::string_ref& t :
       ctx.FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
    absl::string_view v(t.data(), t.size());
    f.tls = f.tls || v == GRPC_SSL_TRANSPORT_SECURITY_TYPE || v == GRPC_TLS_TRANSPORT_SECURITY_TYPE;
  }
  if (cert.ok()) {
    f.pem = std::move(cert->pem);
    f.common_name = std::move(cert->common_name);
  }
  return f;
}

std::string FirstProperty(const grpc_auth_context* ctx, const char* name) {
  grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ctx, name);
  const grpc_auth_property* p = grpc_auth_property_iterator_next(&it);
  if (p == nullptr) return "";
  return std::string(p->value, p->value_length);
}

PeerFacts PeerFactsOf(const grpc_auth_context* ctx) {
  PeerFacts f;
  grpc_auth_property_iterator it =
      grpc_auth_context_find_properties_by_name(ctx, GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  while (const grpc_auth_property* p = grpc_auth_property_iterator_next(&it)) {
    absl::string_view v(p->value, p->value_length);
    f.tls = f.tls || v == GRPC_SSL_TRANSPORT_SECURITY_TYPE || v == GRPC_TLS_TRANSPORT_SECURITY_TYPE;
  }
  if (f.tls) {
    f.pem = FirstProperty(ctx, GRPC_X509_PEM_CERT_PROPERTY_NAME);
    // The last CN, as the C++ PeerCertificateOf takes it.
    grpc_auth_property_iterator cn =
        grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
    while (const grpc_auth_property* p = grpc_auth_property_iterator_next(&cn)) {
      f.common_name.assign(p->value, p->value_length);
    }
  }
  return f;
}

bool ValidWorkerId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxWorkerIdLength) return false;
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return false;
    }
  }
  return true;
}

// Core server credentials (TLS or plaintext) as a grpc::ServerCredentials, so that
// ServerBuilder takes them. See the header comment for why.
class CoreServerCredentials final : public grpc::ServerCredentials {
 public:
  // Takes ownership of `creds`.
  explicit CoreServerCredentials(grpc_server_credentials* creds) : creds_(creds) {}
  ~CoreServerCredentials() override { grpc_server_credentials_release(creds_); }

  void SetAuthMetadataProcessor(const std::shared_ptr<grpc::AuthMetadataProcessor>&) override {
    // ServerAuth's processor is already attached; a second one would silently replace it.
    std::cerr << "farm::auth: SetAuthMetadataProcessor on ServerAuth credentials" << std::endl;
    std::abort();
  }

 private:
  int AddPortToServer(const std::string& addr, grpc_server* server) override {
    return grpc_server_add_http2_port(server, addr.c_str(), creds_);
  }

  grpc_server_credentials* creds_;
};

}  // namespace

struct ServerAuth::Core {
  ServerAuthOptions options;
  std::optional<ServerTlsMaterial> tls;
  std::unique_ptr<TokenVerifier> tokens;
  std::vector<X509Ptr> worker_cas;
  bool allow_all = false;  // AllowAll(): authentication is off

  mutable absl::Mutex worker_mu;
  // SHA-256 of a peer certificate → whether a worker CA issued it.
  mutable absl::flat_hash_map<std::string, bool> worker_cache ABSL_GUARDED_BY(worker_mu);

  bool IssuedByWorkerCa(const std::string& pem) const {
    if (worker_cas.empty()) return false;
    std::string key = internal::Sha256(pem);
    {
      absl::MutexLock lock(&worker_mu);
      auto it = worker_cache.find(key);
      if (it != worker_cache.end()) return it->second;
    }
    bool issued = false;
    absl::StatusOr<std::vector<X509Ptr>> certs = internal::ReadPemCertificates(pem);
    if (certs.ok() && !certs->empty()) {
      X509* leaf = (*certs)[0].get();
      for (const X509Ptr& ca : worker_cas) {
        // The TLS handshake verified the chain (and validity) against all client CAs; this
        // says which CA signed it.
        if (X509_check_issued(ca.get(), leaf) == X509_V_OK &&
            X509_verify(leaf, X509_get0_pubkey(ca.get())) == 1) {
          issued = true;
          break;
        }
      }
      internal::ClearOpenSslErrors();
    }
    absl::MutexLock lock(&worker_mu);
    if (worker_cache.size() >= kWorkerCacheEntries) worker_cache.clear();
    worker_cache[key] = issued;
    return issued;
  }

  // The identity a call presents: `authorization` holds the values of that metadata key.
  absl::StatusOr<Identity> Identify(const std::vector<absl::string_view>& authorization,
                                    const PeerFacts& peer) const {
    Identity id;
    if (!peer.pem.empty()) {
      id.certificate = peer.common_name.empty() ? "(no CN)" : peer.common_name;
      if (IssuedByWorkerCa(peer.pem)) {
        if (!ValidWorkerId(peer.common_name)) {
          return absl::UnauthenticatedError(
              absl::StrCat("worker certificate CN \"", absl::CEscape(peer.common_name),
                           "\" is not a worker id (1-128 of A-Z a-z 0-9 . _ -)"));
        }
        id.worker_id = peer.common_name;
      }
    }
    if (authorization.size() > 1) {
      return absl::UnauthenticatedError("more than one \"authorization\" metadata entry");
    }
    if (authorization.size() == 1) {
      absl::string_view value = absl::StripAsciiWhitespace(authorization[0]);
      constexpr absl::string_view kScheme = "bearer ";
      if (value.size() <= kScheme.size() ||
          !absl::EqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme)) {
        return absl::UnauthenticatedError("\"authorization\" metadata is not \"Bearer <token>\"");
      }
      absl::string_view token = absl::StripLeadingAsciiWhitespace(value.substr(kScheme.size()));
      if (tokens == nullptr) {
        return absl::UnauthenticatedError(
            "this server does not accept bearer tokens (it has no token keys)");
      }
      ASSIGN_OR_RETURN(Identity from_token, tokens->Verify(token));
      from_token.certificate = std::move(id.certificate);
      from_token.worker_id = std::move(id.worker_id);
      id = std::move(from_token);
    }
    if (id.is_worker()) {
      id.roles.emplace_back(kRoleWorker);
      if (id.subject.empty()) id.subject = id.worker_id;
    }
    return id;
  }

  absl::Status CheckCall(absl::string_view method,
                         const std::vector<absl::string_view>& authorization,
                         const PeerFacts& peer) const {
    if (method.empty()) return absl::PermissionDeniedError("call without a method (:path)");
    ASSIGN_OR_RETURN(Identity id, Identify(authorization, peer));
    return options.authorizer->Authorize(id, method, RequestInfo::Call());
  }

  void Log(absl::string_view line) const { options.log(line); }
};

namespace {

absl::string_view SliceView(const grpc_slice& s) {
  return absl::string_view(reinterpret_cast<const char*>(GRPC_SLICE_START_PTR(s)),
                           GRPC_SLICE_LENGTH(s));
}

// grpc_auth_metadata_processor.process: runs for every call, on the thread that read its
// headers (it must not block: token checks are CPU only, plus at most a stat and a small file
// read when the token key file is due for a look).
void ProcessCall(void* state, grpc_auth_context* context, const grpc_metadata* md, size_t num_md,
                 grpc_process_auth_metadata_done_cb done, void* user_data) {
  const auto& core = *static_cast<std::shared_ptr<const ServerAuth::Core>*>(state);
  absl::string_view method;
  std::vector<absl::string_view> authorization;
  for (size_t i = 0; i < num_md; ++i) {
    absl::string_view key = SliceView(md[i].key);
    if (key == ":path") method = SliceView(md[i].value);
    if (key == "authorization") authorization.push_back(SliceView(md[i].value));
  }
  absl::Status s = core->CheckCall(method, authorization, PeerFactsOf(context));
  if (s.ok()) {
    done(user_data, nullptr, 0, nullptr, 0, GRPC_STATUS_OK, nullptr);
  } else {
    std::string message(s.message());
    done(user_data, nullptr, 0, nullptr, 0, static_cast<grpc_status_code>(s.code()),
         message.c_str());
  }
}

void DestroyState(void* state) {
  delete static_cast<std::shared_ptr<const ServerAuth::Core>*>(state);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerAuth>> ServerAuth::Create(ServerAuthOptions options) {
  if (!options.authorizer) {
    return absl::InvalidArgumentError("ServerAuth needs an authorizer (the server's rules)");
  }
  if (!options.log) {
    options.log = [](absl::string_view line) { std::cerr << "farm: " << line << std::endl; };
  }
  auto core = std::make_shared<Core>();
  if (options.tls.enabled()) {
    ASSIGN_OR_RETURN(core->tls, LoadServerTls(options.tls));
  } else if (!options.tls.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "client certificates (--tls-client-ca) need TLS: give --tls-cert and --tls-key");
  }
  if (!options.worker_ca_file.empty()) {
    if (!core->tls || core->tls->client_ca.empty()) {
      return absl::InvalidArgumentError(
          "a worker CA needs TLS with client certificates (--tls-cert, --tls-key and "
          "--tls-client-ca including the worker CA)");
    }
    absl::StatusOr<std::string> pem = common::ReadFile(options.worker_ca_file);
    if (!pem.ok()) return common::Annotate(pem.status(), "worker CA");
    absl::StatusOr<std::vector<X509Ptr>> cas = internal::ReadPemCertificates(*pem);
    if (!cas.ok()) {
      return common::Annotate(cas.status(), absl::StrCat("worker CA ", options.worker_ca_file));
    }
    core->worker_cas = *std::move(cas);
    if (core->worker_cas.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("worker CA ", options.worker_ca_file, ": no PEM certificate in it"));
    }
    std::vector<X509Ptr> client_cas =
        internal::ReadPemCertificates(core->tls->client_ca).value_or(std::vector<X509Ptr>());
    for (const X509Ptr& w : core->worker_cas) {
      bool found = false;
      for (const X509Ptr& c : client_cas) found = found || X509_cmp(w.get(), c.get()) == 0;
      if (!found) {
        return absl::InvalidArgumentError(
            absl::StrCat("worker CA ", options.worker_ca_file,
                         " (CN=", internal::CommonName(w.get()), ") is not among the client CAs (",
                         options.tls.client_ca_file, "): workers' certificates would be refused"));
      }
    }
  }
  if (!options.tokens.key_file.empty()) {
    if (!options.tokens.log) options.tokens.log = options.log;
    ASSIGN_OR_RETURN(core->tokens, TokenVerifier::Create(options.tokens));
  }
  core->options = std::move(options);
  return std::unique_ptr<ServerAuth>(new ServerAuth(std::move(core)));
}

std::unique_ptr<ServerAuth> ServerAuth::AllowAll(bool insecure) {
  ServerAuthOptions o;
  o.insecure = insecure;
  o.authorizer = AllowAllAuthorizer();
  absl::StatusOr<std::unique_ptr<ServerAuth>> sa = Create(std::move(o));
  (*sa)->core_->allow_all = true;
  return *std::move(sa);  // nothing to load, nothing to fail
}

bool ServerAuth::allows_all() const { return core_->allow_all; }

ServerAuth::~ServerAuth() = default;

bool ServerAuth::tls() const { return core_->tls.has_value(); }

const TokenVerifier* ServerAuth::token_verifier() const { return core_->tokens.get(); }

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerAuth::Credentials(
    absl::string_view listen) const {
  RETURN_IF_ERROR(CheckListenSecurity(listen, tls(), core_->options.insecure));
  // Core objects need the library initialized; CoreServerCredentials then holds its own
  // reference (grpc::ServerCredentials's base class), so this one is dropped at the end.
  grpc_init();
  grpc_server_credentials* creds = nullptr;
  if (core_->tls) {
    const ServerTlsMaterial& m = *core_->tls;
    grpc_ssl_pem_key_cert_pair pair = {m.private_key.c_str(), m.cert_chain.c_str()};
    grpc_ssl_server_certificate_config* config = grpc_ssl_server_certificate_config_create(
        m.client_ca.empty() ? nullptr : m.client_ca.c_str(), &pair, 1);
    grpc_ssl_server_credentials_options* opts =
        grpc_ssl_server_credentials_create_options_using_config(m.client_cert_request, config);
    creds = grpc_ssl_server_credentials_create_with_options(opts);
  } else {
    creds = grpc_insecure_server_credentials_create();
  }
  if (creds == nullptr) {
    grpc_shutdown();
    return absl::InternalError("gRPC refused the server credentials");
  }
  grpc_auth_metadata_processor processor;
  processor.process = ProcessCall;
  processor.destroy = DestroyState;
  processor.state = new std::shared_ptr<const Core>(core_);
  grpc_server_credentials_set_auth_metadata_processor(creds, processor);
  auto out = std::make_shared<CoreServerCredentials>(creds);
  grpc_shutdown();
  return out;
}

absl::StatusOr<Identity> ServerAuth::IdentityOf(const grpc::ServerContextBase& ctx) const {
  std::vector<absl::string_view> authorization;
  auto range = ctx.client_metadata().equal_range("authorization");
  for (auto it = range.first; it != range.second; ++it) {
    authorization.emplace_back(it->second.data(), it->second.size());
  }
  PeerFacts peer;
  if (std::shared_ptr<const grpc::AuthContext> ac = ctx.auth_context()) peer = PeerFactsOf(*ac);
  return core_->Identify(authorization, peer);
}

absl::StatusOr<Identity> ServerAuth::Authorize(const grpc::ServerContextBase& ctx,
                                               absl::string_view full_method,
                                               const RequestInfo& request) const {
  ASSIGN_OR_RETURN(Identity who, IdentityOf(ctx));
  RETURN_IF_ERROR(core_->options.authorizer->Authorize(who, full_method, request));
  return who;
}

void ServerAuth::Audit(const grpc::ServerContextBase& ctx, const Identity& who,
                       absl::string_view action) const {
  core_->Log(absl::StrCat("audit: ", action, " by ", who.DebugString(), " from ", ctx.peer()));
}

// ------------------------------------------------------------------------------------------
// Client side.

namespace {

// The token, from a string or a file read again when it changes (stat per call: cheap, and
// it lets a renewed token file take effect without a restart).
class BearerTokenPlugin final : public grpc::MetadataCredentialsPlugin {
 public:
  BearerTokenPlugin(std::string token, std::string file)
      : token_(std::move(token)), file_(std::move(file)) {}

  bool IsBlocking() const override { return false; }
  const char* GetType() const override { return "farm.bearer"; }

  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref, const grpc::AuthContext&,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    absl::StatusOr<std::string> token = Token();
    if (!token.ok()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(token.status().message()));
    }
    metadata->emplace("authorization", absl::StrCat("Bearer ", *token));
    return grpc::Status::OK;
  }

  grpc::string DebugString() override {
    return file_.empty() ? "farm bearer token" : absl::StrCat("farm bearer token from ", file_);
  }

  absl::StatusOr<std::string> Token() {
    if (file_.empty()) return token_;
    struct stat st;
    if (stat(file_.c_str(), &st) != 0) {
      return common::ErrnoToStatus(errno, absl::StrCat("token file ", file_));
    }
    int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    absl::MutexLock lock(&mu_);
    if (loaded_ && st.st_ino == ino_ && st.st_size == size_ && mtime == mtime_) return token_;
    absl::StatusOr<std::string> text = common::ReadFile(file_);
    if (!text.ok()) return common::Annotate(text.status(), "token file");
    std::string token(absl::StripAsciiWhitespace(*text));
    if (token.empty())
      return absl::UnauthenticatedError(absl::StrCat("token file ", file_, " is empty"));
    token_ = std::move(token);
    loaded_ = true;
    ino_ = st.st_ino;
    size_ = st.st_size;
    mtime_ = mtime;
    return token_;
  }

 private:
  absl::Mutex mu_;
  std::string token_ ABSL_GUARDED_BY(mu_);
  const std::string file_;
  bool loaded_ ABSL_GUARDED_BY(mu_) = false;
  ino_t ino_ ABSL_GUARDED_BY(mu_) = 0;
  off_t size_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t mtime_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    absl::string_view target, const ClientAuthOptions& options) {
  if (!options.token.empty() && !options.token_file.empty()) {
    return absl::InvalidArgumentError("give a token or a token file, not both");
  }
  std::unique_ptr<BearerTokenPlugin> plugin;
  if (!options.token.empty() || !options.token_file.empty()) {
    plugin = std::make_unique<BearerTokenPlugin>(
        std::string(absl::StripAsciiWhitespace(options.token)), options.token_file);
    RETURN_IF_ERROR(plugin->Token().status());  // an unreadable file fails now, not per call
  }
  if (options.tls.enabled()) {
    ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> tls,
                     MakeChannelCredentials(options.tls));
    if (!plugin) return tls;
    return grpc::CompositeChannelCredentials(
        tls, grpc::MetadataCredentialsFromPlugin(std::move(plugin)));
  }
  RETURN_IF_ERROR(CheckDialSecurity(target, /*tls=*/false, options.insecure));
  if (!plugin) return grpc::InsecureChannelCredentials();
  if (!IsLoopbackAddress(target)) {
    return absl::FailedPreconditionError(
        absl::StrCat("not sending a bearer token to ", target,
                     " in plaintext: give --tls-ca (the farm's CA certificate) to use TLS"));
  }
  grpc_local_connect_type local =
      absl::StartsWith(target, "unix:") || absl::StartsWith(target, "unix-abstract:") ? UDS
                                                                                      : LOCAL_TCP;
  return grpc::CompositeChannelCredentials(
      grpc::experimental::LocalCredentials(local),
      grpc::experimental::MetadataCredentialsFromPlugin(std::move(plugin), GRPC_SECURITY_NONE));
}

}  // namespace auth
}  // namespace farm
