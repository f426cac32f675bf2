// `farm token`: mint, check and publish bearer tokens (an administrator's tool). Lives in auth/
// so that the CLI wires it with one line ({"token", "...", farm::auth::RunTokenCommand}); also
// built alone as //auth:farm-token.
//
//   farm token mint --key jwt/signing.key --sub ci-web --tenant web --read main
//       --read 'pr/*' --write 'pr/*' --role submit --ttl 30d > ci-web.token   (one line)
//   farm token verify --keys jwt/signing.pub < ci-web.token     # what a server would see
//   farm token jwks jwt/signing.key jwt/next.pub > keys.jwks    # the public keys as a JWK Set
#ifndef FARM_AUTH_TOKEN_COMMAND_H_
#define FARM_AUTH_TOKEN_COMMAND_H_

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace farm {
namespace auth {

// Runs `farm token ARGS...` (args after "token"); returns the exit code (0 ok, 1 failed, 2 bad
// usage). Output on std::cout, errors on std::cerr.
int RunTokenCommand(const std::vector<std::string>& args);

// The same with explicit streams, stdin and clock (tests).
int RunTokenCommand(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
                    std::ostream& err, const std::function<absl::Time()>& now);

}  // namespace auth
}  // namespace farm

#endif  // FARM_AUTH_TOKEN_COMMAND_H_
