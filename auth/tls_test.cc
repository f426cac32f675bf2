#include "auth/tls.h"

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm {
namespace auth {
namespace {

using ::testing::HasSubstr;

std::string* g_dir = nullptr;
std::string F(const std::string& rel) { return absl::StrCat(*g_dir, "/", rel); }

// A self-signed certificate valid from now+`from` to now+`to`, written with its key.
void WriteSelfSigned(const std::string& crt, const std::string& key, long from, long to) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), from);
  X509_gmtime_adj(X509_getm_notAfter(x), to);
  X509_set_pubkey(x, pkey);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("old"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, pkey, EVP_sha256());
  FILE* f = fopen(crt.c_str(), "w");
  PEM_write_X509(f, x);
  fclose(f);
  f = fopen(key.c_str(), "w");
  PEM_write_PrivateKey(f, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  fclose(f);
  X509_free(x);
  EVP_PKEY_free(pkey);
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* tmp = getenv("TEST_TMPDIR");
    g_dir = new std::string(absl::StrCat(tmp ? tmp : "/tmp", "/tls"));
    std::string cmd = absl::StrCat(getenv("TEST_SRCDIR"), "/farm/deploy/make-certs.sh --dir ",
                                   *g_dir, " --server s=127.0.0.1 --worker w1 >/dev/null");
    ASSERT_EQ(std::system(cmd.c_str()), 0);
  }

  static TlsServerOptions Server() {
    TlsServerOptions o;
    o.cert_file = F("servers/s.crt");
    o.key_file = F("servers/s.key");
    o.client_ca_file = F("client-cas.crt");
    return o;
  }

  static void ExpectError(const absl::Status& s, absl::StatusCode code, const std::string& want) {
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_THAT(s.message(), HasSubstr(want));
  }
};

TEST_F(TlsTest, GoodFilesGiveCredentials) {
  auto m = LoadServerTls(Server());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->client_cert_request, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  EXPECT_THAT(m->cert_chain, HasSubstr("BEGIN CERTIFICATE"));
  TlsServerOptions optional = Server();
  optional.client_certs = TlsServerOptions::ClientCerts::kOptional;
  EXPECT_EQ(LoadServerTls(optional)->client_cert_request,
            GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  TlsServerOptions no_clients = Server();
  no_clients.client_ca_file.clear();
  EXPECT_EQ(LoadServerTls(no_clients)->client_cert_request,
            GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  EXPECT_TRUE(MakeServerCredentials(Server()).ok());

  TlsClientOptions c;
  c.ca_file = F("ca.crt");
  c.cert_file = F("workers/w1.crt");
  c.key_file = F("workers/w1.key");
  EXPECT_TRUE(MakeChannelCredentials(c).ok());
  TlsClientOptions system_roots;
  system_roots.use_tls = true;
  EXPECT_TRUE(system_roots.enabled());
  EXPECT_TRUE(MakeChannelCredentials(system_roots).ok());
}

TEST_F(TlsTest, ErrorsNameTheFile) {
  TlsServerOptions o = Server();
  o.cert_file = F("missing.crt");
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kNotFound, F("missing.crt"));

  o = Server();
  o.key_file = F("servers/s.crt");  // a certificate where the key belongs
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument,
              absl::StrCat("TLS key ", F("servers/s.crt"), ": not a PEM private key"));

  o = Server();
  o.cert_file = F("servers/s.key");  // a key where the certificate belongs
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument,
              absl::StrCat("TLS certificate ", F("servers/s.key"), ": no PEM certificate"));

  o = Server();
  o.key_file = F("workers/w1.key");
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument,
              absl::StrCat("TLS key ", F("workers/w1.key"), " does not match the certificate ",
                           F("servers/s.crt"), " (CN=s)"));

  o = Server();
  o.cert_file = F("workers/w1.crt");
  o.key_file = F("workers/w1.key");
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument,
              "(CN=w1) is not for TLS servers (its extendedKeyUsage lacks serverAuth)");

  o = Server();
  o.client_ca_file = F("servers/s.crt");
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument,
              "CN=s is not a CA certificate");

  std::string bundle = *common::ReadFile(F("ca.crt"));
  ASSERT_TRUE(
      common::WriteFileAtomic(
          F("damaged-cas.crt"),
          absl::StrCat(bundle, "-----BEGIN CERTIFICATE-----\nMIIB!!\n-----END CERTIFICATE-----\n"))
          .ok());
  o = Server();
  o.client_ca_file = F("damaged-cas.crt");
  ExpectError(
      LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument,
      absl::StrCat("TLS client CA ", F("damaged-cas.crt"), ": PEM certificate 2 is malformed"));

  o = Server();
  o.key_file.clear();
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kInvalidArgument, "--tls-key");

  ASSERT_TRUE(common::WriteFileAtomic(F("unreadable.key"), "x", 0000).ok());
  o = Server();
  o.key_file = F("unreadable.key");
  if (geteuid() != 0) {  // root reads anything
    ExpectError(LoadServerTls(o).status(), absl::StatusCode::kPermissionDenied,
                F("unreadable.key"));
  }

  WriteSelfSigned(F("old.crt"), F("old.key"), -2 * 86400, -86400);
  o = Server();
  o.cert_file = F("old.crt");
  o.key_file = F("old.key");
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kFailedPrecondition,
              absl::StrCat("TLS certificate ", F("old.crt"), " (CN=old) expired on "));
  WriteSelfSigned(F("future.crt"), F("future.key"), 86400, 2 * 86400);
  o.cert_file = F("future.crt");
  o.key_file = F("future.key");
  ExpectError(LoadServerTls(o).status(), absl::StatusCode::kFailedPrecondition,
              "is not valid before");

  TlsClientOptions c;
  c.cert_file = F("workers/w1.crt");
  ExpectError(LoadClientTls(c).status(), absl::StatusCode::kInvalidArgument, "needs its key");
  c.key_file = F("workers/w1.key");
  c.cert_file = F("servers/s.crt");
  ExpectError(LoadClientTls(c).status(), absl::StatusCode::kInvalidArgument,
              "is not for TLS clients (its extendedKeyUsage lacks clientAuth)");
  c = TlsClientOptions();
  c.ca_file = F("nope.crt");
  ExpectError(LoadClientTls(c).status(), absl::StatusCode::kNotFound, "TLS CA");
}

TEST(LoopbackTest, Addresses) {
  for (const char* a : {"127.0.0.1:9092", "127.1.2.3:1", "localhost:9092", "LOCALHOST:1",
                        "[::1]:9092", "::1", "unix:/run/farm.sock", "unix-abstract:farm",
                        "dns:///localhost:9092", "ipv4:127.0.0.1:80", "[::ffff:127.0.0.1]:1"}) {
    EXPECT_TRUE(IsLoopbackAddress(a)) << a;
  }
  for (const char* a :
       {"0.0.0.0:9092", "[::]:9092", ":9092", "10.0.0.5:9092", "cache.farm.internal:9092",
        "dns:///cache:9092", "128.0.0.1:1", "localhost.example.com:1", "[::2]:1"}) {
    EXPECT_FALSE(IsLoopbackAddress(a)) << a;
  }
}

TEST(ListenPolicyTest, PlaintextOnlyOnLoopbackUnlessInsecure) {
  EXPECT_TRUE(CheckListenSecurity("127.0.0.1:0", false, false).ok());
  EXPECT_TRUE(CheckListenSecurity("0.0.0.0:9092", true, false).ok());
  EXPECT_TRUE(CheckListenSecurity("0.0.0.0:9092", false, true).ok());
  absl::Status s = CheckListenSecurity("0.0.0.0:9092", false, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(),
            "refusing to serve plaintext on 0.0.0.0:9092 (not a loopback address): give "
            "--tls-cert and --tls-key (and --tls-client-ca to verify client certificates), or "
            "--insecure to serve without TLS anyway");
  s = CheckDialSecurity("sched.farm.internal:9091", false, false);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("refusing to connect to sched.farm.internal:9091 without "
                                     "TLS"));
  EXPECT_TRUE(CheckDialSecurity("localhost:9091", false, false).ok());
}

}  // namespace
}  // namespace auth
}  // namespace farm
