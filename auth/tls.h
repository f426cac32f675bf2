// TLS for Farm's gRPC links: server and channel credentials from PEM files, checked with
// OpenSSL first so that a wrong file gets an error naming it (gRPC's own are a failed
// handshake much later); the plaintext policy (loopback only, unless told --insecure); and the
// verified client certificate of a call's peer.
//
//   auth::TlsServerOptions tls;
//   tls.cert_file = "/etc/farm/tls/server/farm-cache.crt";
//   tls.key_file = "/etc/farm/tls/server/farm-cache.key";
//   tls.client_ca_file = "/etc/farm/tls/client-cas.crt";     // require client certificates
//   RETURN_IF_ERROR(auth::CheckListenSecurity(listen, tls.enabled(), insecure));
//   ASSIGN_OR_RETURN(auto creds, auth::MakeServerCredentials(tls));
//   builder.AddListeningPort(listen, creds, &port);
//
//   auth::TlsClientOptions c;
//   c.ca_file = "/etc/farm/tls/ca.crt";                       // verify the server
//   c.cert_file = "...worker/w1.crt";  c.key_file = "...worker/w1.key";   // mutual TLS
//   ASSIGN_OR_RETURN(auto channel_creds, auth::MakeChannelCredentials(c));
//
// Servers that authenticate callers use grpc_auth.h's ServerAuth::Credentials instead of
// MakeServerCredentials: the same TLS, plus the token/certificate check on every call.
//
// Client certificates: with client_ca_file set, a server verifies any client certificate
// against it, and by default requires one (kRequire). farm-scheduler serves clients (who
// authenticate with tokens) and workers (with certificates) on one port, so it asks for
// kOptional: a certificate is verified when sent, and the authorization rules say which
// methods need one.
#ifndef FARM_AUTH_TLS_H_
#define FARM_AUTH_TLS_H_

#include <grpc/grpc_security_constants.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace grpc {
class AuthContext;
class ChannelCredentials;
class ServerContextBase;
class ServerCredentials;
}  // namespace grpc

namespace farm {
namespace auth {

struct TlsServerOptions {
  std::string cert_file;       // PEM certificate chain, the server's own first
  std::string key_file;        // PEM private key of that certificate
  std::string client_ca_file;  // PEM CA certificates client certificates must chain to
  enum class ClientCerts { kRequire, kOptional };
  ClientCerts client_certs = ClientCerts::kRequire;  // (with client_ca_file)

  bool enabled() const { return !cert_file.empty() || !key_file.empty(); }
};

struct TlsClientOptions {
  std::string ca_file;    // PEM CA certificates the server's must chain to (empty: system roots)
  std::string cert_file;  // client certificate chain for mutual TLS (optional)
  std::string key_file;
  bool use_tls = false;  // TLS with the system roots, even without any file

  bool enabled() const {
    return use_tls || !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  }
};

// The checked PEM texts, as gRPC takes them.
struct ServerTlsMaterial {
  std::string cert_chain;
  std::string private_key;
  std::string client_ca;  // empty: client certificates are not asked for
  grpc_ssl_client_certificate_request_type client_cert_request =
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
};
struct ClientTlsMaterial {
  std::string roots;  // empty: gRPC's default roots
  std::string cert_chain;
  std::string private_key;
};

// Reads and checks the files: each exists, is readable and is PEM of the right kind; the key
// matches the certificate; the certificate is valid now and meant for TLS servers (or clients);
// CA files hold CA certificates. Errors name the file: NOT_FOUND / PERMISSION_DENIED (cannot
// read), INVALID_ARGUMENT (wrong content or a missing partner: a key without a certificate),
// FAILED_PRECONDITION (expired or not yet valid).
absl::StatusOr<ServerTlsMaterial> LoadServerTls(const TlsServerOptions& options);
absl::StatusOr<ClientTlsMaterial> LoadClientTls(const TlsClientOptions& options);

// grpc::SslServerCredentials / grpc::SslCredentials from checked files (see Load*Tls).
// MakeServerCredentials needs options.enabled(); MakeChannelCredentials gives TLS with the
// system roots when only use_tls is set.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerOptions& options);
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsClientOptions& options);

// Whether `address` (a listen address "HOST:PORT", "[V6]:PORT", "unix:PATH", or a gRPC target
// such as "dns:///HOST:PORT", "ipv4:127.0.0.1:80") stays on this machine: localhost, 127.0.0.0/8,
// ::1, or a unix socket. An empty host (":9092", all interfaces) and any other name is not.
bool IsLoopbackAddress(absl::string_view address);

// The plaintext policy. OK when `tls`, when the address is loopback, or when `insecure`;
// otherwise FAILED_PRECONDITION naming the address and the flags that fix it.
absl::Status CheckListenSecurity(absl::string_view listen, bool tls, bool insecure);
absl::Status CheckDialSecurity(absl::string_view target, bool tls, bool insecure);

// The verified certificate a TLS peer presented.
struct PeerCertificate {
  std::string common_name;                     // subject CN
  std::vector<std::string> subject_alt_names;  // DNS names, IPs, URIs, as gRPC lists them
  std::string pem;                             // the leaf certificate
};
// UNAUTHENTICATED if the connection is not TLS or the peer sent no (verified) certificate.
// gRPC exposes only certificates it verified (we never use its "don't verify" modes).
absl::StatusOr<PeerCertificate> PeerCertificateOf(const grpc::AuthContext& context);
absl::StatusOr<PeerCertificate> PeerCertificateOf(const grpc::ServerContextBase& context);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_TLS_H_
