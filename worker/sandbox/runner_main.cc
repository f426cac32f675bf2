// farm-sandbox: the sandbox runner on its own, a small program that starts in a millisecond
// or two where the farm binary (with gRPC, RocksDB and libcurl to load) takes 12-15 ms. `farm`
// and `farm-worker` run it for every RUN step when it sits next to them, and run themselves
// (/proc/self/exe) otherwise: RunSandbox in sandbox.cc.
#include <cstdio>

#include "worker/sandbox/sandbox.h"

int main(int argc, char** argv) {
  farm::worker::sandbox::RunSandboxIfRequested(argc, argv);
  std::fprintf(stderr, "farm-sandbox: started by farm and farm-worker for each RUN step only\n");
  return 2;
}
