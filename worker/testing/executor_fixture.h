// A gtest fixture for executor tests: a busybox base layer (built by the test suite, with a
// few extras: /d/old, /caps/ping carrying a security.capability xattr, /usr/lib + /lib ->
// usr/lib) in an in-memory CAS, and one LocalStepExecutor shared by the suite's tests. The
// suite runs in network namespaces of its own (test_hosts.h: this process is the worker host,
// a peer at 10.77.0.2 another host), so the executor's isolated step network (its nftables
// table, the steps' veth pairs) exists only there.
#ifndef FARM_WORKER_TESTING_EXECUTOR_FIXTURE_H_
#define FARM_WORKER_TESTING_EXECUTOR_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "cache/testing/memory_stores.h"
#include "common/fs.h"
#include "gtest/gtest.h"
#include "worker/local_step_executor.h"
#include "worker/testing/layers.h"
#include "worker/testing/test_hosts.h"

namespace farm::worker::testing {

class ExecutorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  static void TearDownTestSuite();

  // A RUN of `args` on `parents` (default: the base layer), shell form not assumed.
  farm::v1::StepRequest Run(std::vector<std::string> args,
                            std::vector<farm::v1::Layer> parents = {});
  farm::v1::StepRequest Sh(const std::string& script, std::vector<farm::v1::Layer> parents = {}) {
    return Run({"/bin/sh", "-c", script}, std::move(parents));
  }
  // A COPY from the context built by `ctx` to `dest`.
  farm::v1::StepRequest Copy(const ContextBuilder& ctx, std::vector<std::string> srcs,
                             const std::string& dest, std::vector<farm::v1::Layer> parents = {});

  struct Outcome {
    absl::StatusOr<farm::v1::StepResult> result;
    std::vector<std::string> out, err;
  };
  Outcome Exec(const farm::v1::StepRequest& req, const absl::Notification* cancel = nullptr);
  // Executes and expects success with a layer; returns the layer's contents.
  LayerContents ExecLayer(const farm::v1::StepRequest& req, farm::v1::Layer* layer = nullptr);

  static TestHosts* hosts_;
  static std::shared_ptr<cache::testing::MemoryBlobStore> cas_;
  static common::TempDir* tmp_;
  static farm::v1::Layer base_;
  static worker::LocalStepExecutor* executor_;
};

}  // namespace farm::worker::testing

#endif  // FARM_WORKER_TESTING_EXECUTOR_FIXTURE_H_
