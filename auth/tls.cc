#include "auth/tls.h"

#include <arpa/inet.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "auth/openssl_util.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm {
namespace auth {

using internal::ClearOpenSslErrors;
using internal::EvpPkeyPtr;
using internal::OpenSslErrors;
using internal::X509Ptr;

namespace {

int NoPassword(char*, int, int, void*) { return -1; }

absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view what) {
  absl::StatusOr<std::string> text = common::ReadFile(path);
  if (!text.ok()) return common::Annotate(text.status(), what);
  return text;
}

absl::Status CheckValidNow(X509* cert, absl::string_view what, const std::string& path) {
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", path, " (CN=", internal::CommonName(cert), ") is not valid before ",
                     internal::AsnTimeText(X509_get0_notBefore(cert))));
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", path, " (CN=", internal::CommonName(cert), ") expired on ",
                     internal::AsnTimeText(X509_get0_notAfter(cert))));
  }
  return absl::OkStatus();
}

// A certificate chain file: PEM certificates, the first one ours, valid now and fit for
// `purpose` (X509_PURPOSE_SSL_SERVER / _CLIENT).
absl::StatusOr<std::string> LoadCertChain(const std::string& path, int purpose,
                                          std::vector<X509Ptr>* certs) {
  const char* what = "TLS certificate";
  ASSIGN_OR_RETURN(std::string pem, ReadPem(path, what));
  absl::StatusOr<std::vector<X509Ptr>> read = internal::ReadPemCertificates(pem);
  if (!read.ok()) return common::Annotate(read.status(), absl::StrCat(what, " ", path));
  *certs = *std::move(read);
  if (certs->empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, ": no PEM certificate in it (want -----BEGIN CERTIFICATE-----)"));
  }
  X509* leaf = (*certs)[0].get();
  RETURN_IF_ERROR(CheckValidNow(leaf, what, path));
  if (X509_check_purpose(leaf, purpose, 0) != 1) {
    bool server = purpose == X509_PURPOSE_SSL_SERVER;
    ClearOpenSslErrors();
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " (CN=", internal::CommonName(leaf), ") is not for TLS ",
                     server ? "servers" : "clients", " (its extendedKeyUsage lacks ",
                     server ? "serverAuth" : "clientAuth", ")"));
  }
  return pem;
}

absl::StatusOr<std::string> LoadKeyFor(const std::string& key_path, X509* leaf,
                                       const std::string& cert_path) {
  const char* what = "TLS key";
  ASSIGN_OR_RETURN(std::string pem, ReadPem(key_path, what));
  if (absl::StrContains(pem, "ENCRYPTED")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", key_path, " is encrypted; give an unencrypted key (mode 0600)"));
  }
  internal::BioPtr bio = internal::MemBio(pem);
  ClearOpenSslErrors();
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassword, nullptr));
  if (!key) {
    std::string why = OpenSslErrors();
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", key_path, ": not a PEM private key (", why, ")"));
  }
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ClearOpenSslErrors();
    return absl::InvalidArgumentError(absl::StrCat(what, " ", key_path,
                                                   " does not match the certificate ", cert_path,
                                                   " (CN=", internal::CommonName(leaf), ")"));
  }
  return pem;
}

absl::StatusOr<std::string> LoadCaBundle(const std::string& path, absl::string_view what) {
  ASSIGN_OR_RETURN(std::string pem, ReadPem(path, what));
  absl::StatusOr<std::vector<X509Ptr>> read = internal::ReadPemCertificates(pem);
  if (!read.ok()) return common::Annotate(read.status(), absl::StrCat(what, " ", path));
  std::vector<X509Ptr> certs = *std::move(read);
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, ": no PEM certificate in it (want -----BEGIN CERTIFICATE-----)"));
  }
  for (const X509Ptr& c : certs) {
    if (X509_check_ca(c.get()) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " ", path, ": CN=", internal::CommonName(c.get()),
          " is not a CA certificate (give the CA that signed the certificates, e.g. ca.crt)"));
    }
    RETURN_IF_ERROR(CheckValidNow(c.get(), what, path));
  }
  return pem;
}

// Splits "HOST:PORT" / "[V6]:PORT" / "HOST" into the host; handles gRPC's scheme prefixes.
std::string HostOf(absl::string_view address) {
  for (absl::string_view prefix : {"dns:///", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(address, prefix)) {
      address.remove_prefix(prefix.size());
      break;
    }
  }
  if (absl::StartsWith(address, "[")) {
    size_t close = address.find(']');
    if (close == absl::string_view::npos) return "";
    return std::string(address.substr(1, close - 1));
  }
  size_t colon = address.rfind(':');
  if (colon != absl::string_view::npos && address.find(':') == colon) {
    address = address.substr(0, colon);
  }
  return std::string(address);
}

absl::StatusOr<PeerCertificate> PeerFromAuthContext(const grpc::AuthContext& ctx) {
  std::vector<grpc::string_ref> type =
      ctx.FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  bool tls = false;
  for (const grpc::string_ref& t : type) {
    absl::string_view v(t.data(), t.size());
    tls = tls || v == GRPC_SSL_TRANSPORT_SECURITY_TYPE || v == GRPC_TLS_TRANSPORT_SECURITY_TYPE;
  }
  if (!tls) return absl::UnauthenticatedError("the connection is not TLS: no client certificate");
  std::vector<grpc::string_ref> pem = ctx.FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pem.empty()) return absl::UnauthenticatedError("the peer sent no client certificate");
  PeerCertificate out;
  out.pem.assign(pem[0].data(), pem[0].size());
  for (const grpc::string_ref& cn : ctx.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
    out.common_name.assign(cn.data(), cn.size());
  }
  for (const grpc::string_ref& san : ctx.FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    out.subject_alt_names.emplace_back(san.data(), san.size());
  }
  return out;
}

}  // namespace

absl::StatusOr<ServerTlsMaterial> LoadServerTls(const TlsServerOptions& o) {
  if (o.cert_file.empty() || o.key_file.empty()) {
    return absl::InvalidArgumentError(
        o.cert_file.empty() ? "TLS needs a certificate (--tls-cert) with the key"
                            : "TLS needs a private key (--tls-key) with the certificate");
  }
  ServerTlsMaterial m;
  std::vector<X509Ptr> chain;
  ASSIGN_OR_RETURN(m.cert_chain, LoadCertChain(o.cert_file, X509_PURPOSE_SSL_SERVER, &chain));
  ASSIGN_OR_RETURN(m.private_key, LoadKeyFor(o.key_file, chain[0].get(), o.cert_file));
  if (!o.client_ca_file.empty()) {
    ASSIGN_OR_RETURN(m.client_ca, LoadCaBundle(o.client_ca_file, "TLS client CA"));
    m.client_cert_request = o.client_certs == TlsServerOptions::ClientCerts::kRequire
                                ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return m;
}

absl::StatusOr<ClientTlsMaterial> LoadClientTls(const TlsClientOptions& o) {
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(o.cert_file.empty()
                                          ? "a TLS client key needs its certificate (--tls-cert)"
                                          : "a TLS client certificate needs its key (--tls-key)");
  }
  ClientTlsMaterial m;
  if (!o.ca_file.empty()) {
    ASSIGN_OR_RETURN(m.roots, LoadCaBundle(o.ca_file, "TLS CA"));
  }
  if (!o.cert_file.empty()) {
    std::vector<X509Ptr> chain;
    ASSIGN_OR_RETURN(m.cert_chain, LoadCertChain(o.cert_file, X509_PURPOSE_SSL_CLIENT, &chain));
    ASSIGN_OR_RETURN(m.private_key, LoadKeyFor(o.key_file, chain[0].get(), o.cert_file));
  }
  return m;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerOptions& options) {
  ASSIGN_OR_RETURN(ServerTlsMaterial m, LoadServerTls(options));
  grpc::SslServerCredentialsOptions ssl(m.client_cert_request);
  ssl.pem_root_certs = m.client_ca;
  ssl.pem_key_cert_pairs.push_back({m.private_key, m.cert_chain});
  return grpc::SslServerCredentials(ssl);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsClientOptions& options) {
  ASSIGN_OR_RETURN(ClientTlsMaterial m, LoadClientTls(options));
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = m.roots;
  ssl.pem_cert_chain = m.cert_chain;
  ssl.pem_private_key = m.private_key;
  return grpc::SslCredentials(ssl);
}

bool IsLoopbackAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") || absl::StartsWith(address, "unix-abstract:")) {
    return true;
  }
  std::string host = absl::AsciiStrToLower(HostOf(address));
  if (host == "localhost" || absl::EndsWith(host, ".localhost")) return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

absl::Status CheckListenSecurity(absl::string_view listen, bool tls, bool insecure) {
  if (tls || insecure || IsLoopbackAddress(listen)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to serve plaintext on ", listen,
      " (not a loopback address): give --tls-cert and --tls-key (and --tls-client-ca to verify "
      "client certificates), or --insecure to serve without TLS anyway"));
}

absl::Status CheckDialSecurity(absl::string_view target, bool tls, bool insecure) {
  if (tls || insecure || IsLoopbackAddress(target)) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to connect to ", target,
      " without TLS (not a loopback address): give --tls-ca (the farm's CA certificate), or "
      "--insecure to connect in plaintext anyway"));
}

absl::StatusOr<PeerCertificate> PeerCertificateOf(const grpc::AuthContext& context) {
  return PeerFromAuthContext(context);
}

absl::StatusOr<PeerCertificate> PeerCertificateOf(const grpc::ServerContextBase& context) {
  std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
  if (!auth) return absl::UnauthenticatedError("no auth context");
  return PeerFromAuthContext(*auth);
}

}  // namespace auth
}  // namespace farm
