#include "worker/testing/executor_fixture.h"

#include "absl/strings/str_join.h"
#include "common/testing/status_matchers.h"
#include "worker/testing/busybox.h"
#include "worker/testing/fs_helpers.h"

namespace farm::worker::testing {

TestHosts* ExecutorTest::hosts_ = nullptr;
std::shared_ptr<cache::testing::MemoryBlobStore> ExecutorTest::cas_;
common::TempDir* ExecutorTest::tmp_ = nullptr;
farm::v1::Layer ExecutorTest::base_;
worker::LocalStepExecutor* ExecutorTest::executor_ = nullptr;

void ExecutorTest::SetUpTestSuite() {
  auto hosts = TestHosts::Create();
  ASSERT_OK(hosts);
  hosts_ = hosts->release();
  cas_ = std::make_shared<cache::testing::MemoryBlobStore>();
  auto t = common::TempDir::Create("executor-test");
  ASSERT_OK(t);
  tmp_ = new common::TempDir(std::move(*t));
  std::string root = tmp_->path() + "/rootfs";
  ASSERT_OK(MakeBusyboxRootfs(root));
  ASSERT_OK(WriteFile(root + "/d/old", "old\n"));
  ASSERT_OK(WriteFile(root + "/caps/ping", "not really ping\n", 0755));
  ASSERT_OK(SetXattr(root + "/caps/ping", "security.capability", NetRawCapability()));
  ASSERT_OK(WriteFile(root + "/usr/lib/libc.so", "libc\n"));
  ASSERT_OK(Symlink("usr/lib", root + "/lib"));
  auto base = MakeLayer(cas_.get(), root);
  ASSERT_OK(base);
  base_ = *base;
  LocalStepExecutor::Options o;
  o.state_dir = tmp_->path() + "/state";
  o.cas = cas_;
  auto e = LocalStepExecutor::Create(std::move(o));
  ASSERT_OK(e);
  executor_ = e->release();
}

void ExecutorTest::TearDownTestSuite() {
  delete executor_;
  executor_ = nullptr;
  delete tmp_;
  tmp_ = nullptr;
  cas_.reset();
  delete hosts_;
  hosts_ = nullptr;
}

farm::v1::StepRequest ExecutorTest::Run(std::vector<std::string> args,
                                        std::vector<farm::v1::Layer> parents) {
  farm::v1::StepRequest r;
  r.set_description("RUN test");
  if (parents.empty()) parents.push_back(base_);
  for (auto& p : parents) *r.add_parents() = p;
  for (auto& a : args) r.mutable_run()->add_args(a);
  r.mutable_run()->set_network("none");
  r.mutable_env()->add_env("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
  return r;
}

farm::v1::StepRequest ExecutorTest::Copy(const ContextBuilder& ctx, std::vector<std::string> srcs,
                                         const std::string& dest,
                                         std::vector<farm::v1::Layer> parents) {
  farm::v1::StepRequest r;
  r.set_description("COPY test");
  if (parents.empty()) parents.push_back(base_);
  for (auto& p : parents) *r.add_parents() = p;
  auto root = ctx.Store(cas_.get());
  EXPECT_OK(root);
  farm::v1::CopyOp* c = r.mutable_copy();
  *c->mutable_source()->mutable_context() = *root;
  for (auto& s : srcs) c->add_srcs(s);
  c->set_dest(dest);
  return r;
}

ExecutorTest::Outcome ExecutorTest::Exec(const farm::v1::StepRequest& req,
                                         const absl::Notification* cancel) {
  Outcome o;
  absl::Mutex mu;
  o.result = executor_->Execute(
      req,
      [&](absl::string_view line, bool is_stderr) {
        absl::MutexLock lock(&mu);
        (is_stderr ? o.err : o.out).emplace_back(line);
      },
      cancel);
  return o;
}

LayerContents ExecutorTest::ExecLayer(const farm::v1::StepRequest& req, farm::v1::Layer* layer) {
  Outcome o = Exec(req);
  EXPECT_OK(o.result);
  if (!o.result.ok()) return {};
  EXPECT_EQ(o.result->exit_code(), 0) << absl::StrJoin(o.result->output_tail(), "\n");
  EXPECT_TRUE(o.result->has_layer());
  if (!o.result->has_layer()) return {};
  if (layer != nullptr) *layer = o.result->layer();
  auto contents = ReadLayer(cas_.get(), o.result->layer());
  EXPECT_OK(contents);
  return contents.ok() ? *contents : LayerContents{};
}

}  // namespace farm::worker::testing
