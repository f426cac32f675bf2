// farm-token: `farm token` on its own (until the CLI wires auth::RunTokenCommand). See
// token_command.h.
#include <string>
#include <vector>

#include "auth/token_command.h"

int main(int argc, char** argv) {
  return farm::auth::RunTokenCommand(std::vector<std::string>(argv + 1, argv + argc));
}
