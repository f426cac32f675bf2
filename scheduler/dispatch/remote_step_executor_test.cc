#include "scheduler/dispatch/remote_step_executor.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/digest.h"
#include "oci/chain_id.h"
#include "scheduler/dispatch/testing/fake_worker.h"

namespace farm::scheduler::dispatch {
namespace {

using ::farm::scheduler::dispatch::testing::FakeWorker;
using ::farm::scheduler::dispatch::testing::FakeWorkerOptions;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

farm::v1::Layer L(const std::string& content) {
  farm::v1::Layer l;
  l.set_diff_id(common::DigestOf(content).OciString());
  l.set_digest(common::DigestOf(content + ".gz").OciString());
  return l;
}

TEST(ParentChainIdsTest, SameIdsAsTheWorkersLayerStore) {
  farm::v1::StepRequest r;
  *r.add_parents() = L("base");
  *r.add_parents() = L("apt");
  *r.add_parents() = L("app");
  absl::StatusOr<std::vector<std::string>> ids = ParentChainIds(r.parents());
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->size(), 3u);
  std::vector<common::Digest> diff_ids;
  for (int i = 0; i < 3; ++i) {
    diff_ids.push_back(*common::Digest::ParseOci(r.parents(i).diff_id(), 0));
    EXPECT_EQ((*ids)[i], oci::ChainId(diff_ids)) << i;
  }
  EXPECT_EQ((*ids)[0], r.parents(0).diff_id());  // ChainID(L0) = DiffID(L0)
}

TEST(ParentChainIdsTest, MalformedDiffIdNamesTheParent) {
  farm::v1::StepRequest r;
  *r.add_parents() = L("base");
  r.add_parents()->set_diff_id("md5:abc");
  absl::StatusOr<std::vector<std::string>> ids = ParentChainIds(r.parents());
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("parent layer 1"));
  EXPECT_THAT(ids.status().message(), HasSubstr("md5:abc"));
}

TEST(RemoteStepExecutorTest, SpecCarriesTheBuildAndOnlyTheMountedSecrets) {
  RemoteBuild b;
  b.build_id = "b-1";
  b.tenant = "team-a";
  b.priority = 3;
  b.cache_instance = "pr-12";
  b.secrets = {{"npmrc", "x"}, {"aws", "y"}, {"unused", "z"}};
  RemoteStepExecutor exec(nullptr, b);
  farm::v1::StepRequest r;
  r.set_key("abc");
  r.mutable_env()->set_platform("linux/arm64");
  *r.add_parents() = L("base");
  farm::v1::Mount* m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::SECRET);
  m->set_id("npmrc");
  m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::SECRET);
  m->set_target("/root/.aws/aws");  // id defaults to the target's base name
  m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::SECRET);
  m->set_id("missing");
  m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::CACHE);
  m->set_target("/root/.cache/go");
  m = r.mutable_run()->add_mounts();
  m->set_type(farm::v1::Mount::CACHE);
  m->set_id("apt");
  EXPECT_THAT(MountedSecretIds(r), ElementsAre("npmrc", "aws", "missing"));
  absl::StatusOr<TaskSpec> spec = exec.SpecFor(r);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->key, "abc");
  EXPECT_EQ(spec->build_id, "b-1");
  EXPECT_EQ(spec->tenant, "team-a");
  EXPECT_EQ(spec->priority, 3);
  EXPECT_EQ(spec->cache_instance, "pr-12");
  EXPECT_EQ(spec->platform, "linux/arm64");
  EXPECT_EQ(spec->secrets, (std::map<std::string, std::string>{{"aws", "y"}, {"npmrc", "x"}}));
  EXPECT_THAT(spec->parent_chain_ids, ElementsAre(r.parents(0).diff_id()));
  // Cache mounts are the tenant's own (the request as planned is left alone).
  EXPECT_EQ(spec->request.run().mounts(3).id(), "tenant/team-a//root/.cache/go");
  EXPECT_EQ(spec->request.run().mounts(4).id(), "tenant/team-a/apt");
  EXPECT_EQ(r.run().mounts(4).id(), "apt");
}

TEST(RemoteStepExecutorTest, ExecuteRunsOnTheWorkerHoldingTheParents) {
  SimulatedClock clock;
  Options o;
  o.clock = &clock;
  auto d = Dispatcher::Create(o);
  ASSERT_TRUE(d.ok()) << d.status();
  farm::v1::StepRequest r;
  r.set_key("k1");
  r.set_description("RUN make");
  *r.add_parents() = L("base");
  *r.add_parents() = L("deps");
  r.mutable_run()->add_args("make");
  std::vector<std::string> chain = *ParentChainIds(r.parents());

  FakeWorkerOptions cold;
  cold.id = "cold";
  cold.slots = 4;
  FakeWorker cold_worker((*d)->sessions(), cold);
  ASSERT_TRUE(cold_worker.Connect().ok());
  FakeWorkerOptions warm = cold;
  warm.id = "warm";
  warm.chain_ids = {chain[1]};
  FakeWorker warm_worker((*d)->sessions(), warm);
  ASSERT_TRUE(warm_worker.Connect().ok());

  RemoteStepExecutor exec(d->get(), RemoteBuild{"b-1", "t", 0, {}, "main"});
  std::vector<std::string> lines;
  absl::StatusOr<farm::v1::StepResult> result;
  std::thread caller([&] {
    result = exec.Execute(
        r, [&](absl::string_view line, bool) { lines.emplace_back(line); }, nullptr);
  });
  farm::v1::Task t = warm_worker.NextTask();
  EXPECT_EQ(t.request().description(), "RUN make");
  EXPECT_EQ(t.cache_instance(), "main");
  ASSERT_TRUE(warm_worker.Log(t, "cc -o app").ok());
  ASSERT_TRUE(warm_worker.Finish(t, 2).ok());
  caller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code(), 2);
  EXPECT_THAT(lines, ElementsAre("cc -o app"));
  EXPECT_TRUE(cold_worker.Idle());
}

}  // namespace
}  // namespace farm::scheduler::dispatch
