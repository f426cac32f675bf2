// AuthTestServer: serves farm.auth.testing.AuthTest (auth_test_service.proto) behind a
// ServerAuth, for auth/'s end-to-end tests. Every method answers with the identity the server
// authenticated; the rules (AuthTestRules) differ per method.
//
//   ASSIGN_OR_RETURN(auto server, AuthTestServer::Start(server_auth));
//   auto stub = farm::auth::testing::AuthTest::NewStub(
//       grpc::CreateChannel(server->address(), creds));
#ifndef FARM_AUTH_TESTING_AUTH_TEST_SERVER_H_
#define FARM_AUTH_TESTING_AUTH_TEST_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "auth/authorizer.h"
#include "auth/grpc_auth.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace farm {
namespace auth {
namespace testing {

class AuthTestServiceImpl;

// Public: Anyone. WhoAmI: tokens or workers. Read: tokens (read scope of the request's
// instance_name) or workers. Write: tokens with the write scope. Admin: role "admin".
// Connect (bidi stream): workers only.
Authorizer::Ptr AuthTestRules();

class AuthTestServer {
 public:
  // Serves on `listen` (default: a free loopback port) with `auth`'s credentials.
  static absl::StatusOr<std::unique_ptr<AuthTestServer>> Start(
      std::shared_ptr<const ServerAuth> auth, const std::string& listen = "127.0.0.1:0");
  ~AuthTestServer();

  // "127.0.0.1:PORT".
  std::string address() const;
  int port() const { return port_; }
  // How many calls reached a handler (to show that refused calls never do).
  int64_t handler_calls() const;

 private:
  AuthTestServer() = default;
  std::unique_ptr<AuthTestServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace testing
}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_TESTING_AUTH_TEST_SERVER_H_
