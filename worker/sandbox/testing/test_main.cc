// gtest main for binaries whose tests run sandboxed steps: the runner is this binary
// re-executed (see worker/sandbox/sandbox.h), so main() dispatches to it first.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/sandbox/sandbox.h"

int main(int argc, char** argv) {
  farm::worker::sandbox::RunSandboxIfRequested(argc, argv);
  testing::InitGoogleMock(&argc, argv);
  return RUN_ALL_TESTS();
}
