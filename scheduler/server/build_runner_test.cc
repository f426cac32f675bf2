#include "scheduler/server/build_runner.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "cache/rocksdb_action_cache.h"
#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/registry/auth.h"
#include "scheduler/registry/testing/local_registry.h"

namespace farm::scheduler::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// Runs every step successfully without running anything; remembers the steps' last argument.
// A step named "cancel-me" plays a user canceling the build while it runs: it notifies
// `cancel_build`, then waits for the cancel to reach the step and fails CANCELLED.
class FakeExecutor : public executor::StepExecutor {
 public:
  absl::StatusOr<farm::v1::StepResult> Execute(const farm::v1::StepRequest& request,
                                               const executor::LogSink& log,
                                               const absl::Notification* cancel) override {
    std::string name = request.has_run() && request.run().args_size() > 0
                           ? request.run().args(request.run().args_size() - 1)
                           : "?";
    {
      absl::MutexLock l(&mu_);
      ran_.push_back(name);
    }
    if (name == "cancel-me") {
      cancel_build->Notify();
      if (cancel == nullptr || !cancel->WaitForNotificationWithTimeout(absl::Seconds(20))) {
        return absl::DeadlineExceededError("the cancel did not reach the step");
      }
      return absl::CancelledError("canceled");
    }
    return farm::v1::StepResult();
  }
  std::vector<std::string> ran() {
    absl::MutexLock l(&mu_);
    return ran_;
  }

  absl::Notification* cancel_build = nullptr;

 private:
  absl::Mutex mu_;
  std::vector<std::string> ran_;
};

BuildRunner::Options Options(std::vector<std::string> insecure = {}) {
  BuildRunner::Options o;
  o.insecure_registries = std::move(insecure);
  o.docker_config_dir = "/etc/farm/docker";
  return o;
}

TEST(BuildRunnerTest, SpecForDefaultsTheCacheInstanceToMain) {
  farm::v1::SubmitBuildRequest req;
  req.set_tenant("team-a");
  req.set_priority(3);
  BuildSpec spec = BuildRunner::SpecFor("b1", req, {{"tok", "s3cret"}});
  EXPECT_EQ(spec.build_id, "b1");
  EXPECT_EQ(spec.tenant, "team-a");
  EXPECT_EQ(spec.priority, 3);
  EXPECT_EQ(spec.cache_instance, "main");
  EXPECT_THAT(spec.secrets, ElementsAre(Pair("tok", "s3cret")));
  req.set_cache_write_scope("pr-42");
  EXPECT_EQ(BuildRunner::SpecFor("b1", req, {}).cache_instance, "pr-42");
}

TEST(BuildRunnerTest, PipelineRequestDefaults) {
  BuildRunner runner(Options());
  farm::v1::SubmitBuildRequest req;
  req.set_dockerfile("FROM scratch\n");
  auto pr = runner.PipelineRequest(req, BuildRunner::SpecFor("b1", req, {}));
  ASSERT_TRUE(pr.ok()) << pr.status();
  EXPECT_EQ(pr->dockerfile, "FROM scratch\n");
  EXPECT_EQ(pr->dockerfile_name, "Dockerfile");
  EXPECT_EQ(pr->context, nullptr);  // Run sets it
  EXPECT_EQ(pr->plan.platform, "linux/amd64");
  EXPECT_EQ(pr->plan.default_network, "default");
  EXPECT_EQ(pr->resolve.pull_policy, image::PullPolicy::kMissing);
  EXPECT_THAT(pr->engine.cache_read_scopes, ElementsAre("main"));
  EXPECT_EQ(pr->engine.cache_write_scope, "main");
  EXPECT_FALSE(pr->engine.source_date_epoch.has_value());
  EXPECT_EQ(pr->engine.format, image::ManifestFormat::kOci);
  EXPECT_EQ(pr->engine.max_parallel, 64);
  EXPECT_TRUE(pr->tags.empty());
  EXPECT_FALSE(pr->push);
  EXPECT_EQ(pr->first_vertex_id, 1);
}

TEST(BuildRunnerTest, PipelineRequestCarriesTheSubmittedOptions) {
  BuildRunner runner(Options({"registry.local:5000"}));
  farm::v1::SubmitBuildRequest req;
  req.set_dockerfile("FROM scratch\n");
  req.set_dockerfile_name("app.Dockerfile");
  (*req.mutable_build_args())["V"] = "1";
  req.set_target("final");
  req.set_platform("linux/arm64");
  req.set_network("none");
  req.set_pull(true);
  req.add_insecure_registries("other.local:5000");
  req.set_cache_write_scope("pr-42");
  req.add_cache_read_scopes("pr-42");  // the write scope is read first, once
  req.add_cache_read_scopes("main");
  req.set_no_cache(true);
  req.mutable_layer_options()->set_source_date_epoch(1700000000);
  req.set_manifest_format("docker");
  (*req.mutable_labels())["org.example.team"] = "a";
  req.add_tags("example.com/app");
  req.add_tags("example.com/app:v2");
  req.set_push(true);
  req.set_first_vertex_id(4);
  auto pr = runner.PipelineRequest(req, BuildRunner::SpecFor("b1", req, {}));
  ASSERT_TRUE(pr.ok()) << pr.status();
  EXPECT_EQ(pr->dockerfile_name, "app.Dockerfile");
  EXPECT_THAT(pr->plan.build_args, ElementsAre(Pair("V", "1")));
  EXPECT_EQ(pr->plan.target, "final");
  EXPECT_EQ(pr->plan.platform, "linux/arm64");
  EXPECT_EQ(pr->plan.default_network, "none");
  EXPECT_EQ(pr->plan.layer_options.source_date_epoch(), 1700000000);
  EXPECT_EQ(pr->resolve.pull_policy, image::PullPolicy::kAlways);
  EXPECT_THAT(pr->resolve.registry.insecure_registries,
              ElementsAre("registry.local:5000", "other.local:5000"));
  EXPECT_EQ(pr->resolve.registry.docker_config_dir, "/etc/farm/docker");
  EXPECT_EQ(pr->engine.cache_write_scope, "pr-42");
  EXPECT_THAT(pr->engine.cache_read_scopes, ElementsAre("pr-42", "main"));
  EXPECT_TRUE(pr->engine.no_cache);
  EXPECT_EQ(pr->engine.source_date_epoch, 1700000000);
  EXPECT_EQ(pr->engine.format, image::ManifestFormat::kDocker);
  EXPECT_THAT(pr->engine.labels, ElementsAre(Pair("org.example.team", "a")));
  ASSERT_EQ(pr->tags.size(), 2u);
  EXPECT_EQ(pr->tags[0].tag(), "latest");
  EXPECT_EQ(pr->tags[1].tag(), "v2");
  EXPECT_TRUE(pr->push);
  EXPECT_THAT(pr->push_registry.insecure_registries,
              ElementsAre("registry.local:5000", "other.local:5000"));
  EXPECT_EQ(pr->first_vertex_id, 4);
}

TEST(BuildRunnerTest, RegistryCredentialsArePerTenant) {
  BuildRunner::Options o = Options();
  o.docker_config_dir = "/etc/farm/docker";
  o.tenant_docker_config_dirs = {{"big", "/etc/farm/tenants/big"}};
  o.shared_registry_push = false;
  BuildRunner runner(std::move(o));
  farm::v1::SubmitBuildRequest req;
  req.set_dockerfile("FROM scratch\n");
  req.set_push(true);
  req.add_tags("example.com/app");

  // A tenant with its own credentials pulls and pushes with them only.
  req.set_tenant("big");
  auto big = runner.PipelineRequest(req, BuildRunner::SpecFor("b1", req, {}));
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->resolve.registry.docker_config_dir, "/etc/farm/tenants/big");
  EXPECT_EQ(big->push_registry.docker_config_dir, "/etc/farm/tenants/big");
  EXPECT_FALSE(big->push_registry.credentials.has_value());  // read from its config.json

  // Another tenant pulls with the farm's shared credentials and pushes anonymously.
  req.set_tenant("small");
  auto small = runner.PipelineRequest(req, BuildRunner::SpecFor("b2", req, {}));
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->resolve.registry.docker_config_dir, "/etc/farm/docker");
  EXPECT_FALSE(small->resolve.registry.credentials.has_value());
  ASSERT_TRUE(small->push_registry.credentials.has_value());
  EXPECT_TRUE(small->push_registry.credentials->empty());

  // With shared pushes allowed (a farm without authentication), the shared config pushes.
  BuildRunner::Options open = Options();
  open.docker_config_dir = "/etc/farm/docker";
  BuildRunner open_runner(std::move(open));
  auto shared = open_runner.PipelineRequest(req, BuildRunner::SpecFor("b3", req, {}));
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(shared->push_registry.docker_config_dir, "/etc/farm/docker");
  EXPECT_FALSE(shared->push_registry.credentials.has_value());
}

TEST(BuildRunnerTest, BadTagIsAnError) {
  BuildRunner runner(Options());
  farm::v1::SubmitBuildRequest req;
  req.add_tags("Not A Reference!");
  EXPECT_FALSE(runner.PipelineRequest(req, BuildRunner::SpecFor("b1", req, {})).ok());
}

class BuildRunnerRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tmp = common::TempDir::Create("build-runner");
    ASSERT_TRUE(tmp.ok()) << tmp.status();
    tmp_ = std::make_unique<common::TempDir>(*std::move(tmp));
    cache::RocksDbStoreOptions o;
    o.dir = common::JoinPath(tmp_->path(), "cas");
    auto cas = cache::RocksDbBlobStore::Create(o);
    ASSERT_TRUE(cas.ok()) << cas.status();
    std::shared_ptr<cache::RocksDbBlobStore> store = *std::move(cas);
    auto ac = cache::RocksDbActionCache::Create(store);
    ASSERT_TRUE(ac.ok()) << ac.status();
    auto images = image::RocksDbImageStore::Create(common::JoinPath(tmp_->path(), "images"));
    ASSERT_TRUE(images.ok()) << images.status();
    // The empty context: an empty REAPI Directory.
    ASSERT_TRUE(store->WriteBlob(common::Digest::Empty(), "").ok());
    options_.cas = store;
    options_.ac = *std::move(ac);
    options_.images = *std::move(images);
    options_.executors = [this](const BuildSpec& spec) {
      absl::MutexLock l(&mu_);
      specs_.push_back(spec);
      return exec_;
    };
  }

  static farm::v1::SubmitBuildRequest Request(const std::string& dockerfile) {
    farm::v1::SubmitBuildRequest r;
    r.set_dockerfile(dockerfile);
    r.mutable_context()->set_digest(common::Digest::Empty().OciString());
    r.mutable_context()->set_size(0);
    r.set_tenant("team-a");
    r.mutable_layer_options()->set_source_date_epoch(0);
    return r;
  }

  std::unique_ptr<common::TempDir> tmp_;
  BuildRunner::Options options_;
  std::shared_ptr<FakeExecutor> exec_ = std::make_shared<FakeExecutor>();
  absl::Mutex mu_;
  std::vector<BuildSpec> specs_;
};

TEST_F(BuildRunnerRunTest, RunsTheBuildOnTheBuildsExecutor) {
  BuildRunner runner(options_);
  int planned = -1;
  std::vector<farm::v1::BuildEvent> events;
  absl::Status s = runner.Run(
      "b1", Request("FROM scratch\nRUN [\"one\"]\nRUN [\"two\"]\n"), {{"tok", "s3cret"}},
      [&](int steps) { planned = steps; },
      [&](const farm::v1::BuildEvent& e) { events.push_back(e); }, /*cancel=*/nullptr);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(planned, 2);
  EXPECT_THAT(exec_->ran(), ElementsAre("one", "two"));
  {
    absl::MutexLock l(&mu_);
    ASSERT_EQ(specs_.size(), 1u);
    EXPECT_EQ(specs_[0].build_id, "b1");
    EXPECT_EQ(specs_[0].tenant, "team-a");
    EXPECT_EQ(specs_[0].cache_instance, "main");
    EXPECT_EQ(specs_[0].secrets.at("tok"), "s3cret");
  }
  ASSERT_FALSE(events.empty());
  ASSERT_TRUE(events.back().has_outcome());
  EXPECT_TRUE(events.back().outcome().ok()) << events.back().outcome().error();
  EXPECT_TRUE(absl::StartsWith(events.back().outcome().image_id(), "sha256:"));
}

// A registry that needs credentials: a tenant with its own pushes; another, without the farm
// letting it use the shared credentials, is refused even though the shared config has them.
TEST_F(BuildRunnerRunTest, PushesWithTheTenantsOwnCredentialsOnly) {
  auto reg = registry::testing::LocalRegistry::Start(common::JoinPath(tmp_->path(), "reg"),
                                                     {"farm", "pa55word"});
  ASSERT_TRUE(reg.ok()) << reg.status();
  auto write_config = [&](const std::string& dir) {
    ASSERT_TRUE(common::MakeDirs(dir, 0700).ok());
    auto cfg = registry::DockerConfig::Load(dir);
    ASSERT_TRUE(cfg.ok()) << cfg.status();
    ASSERT_TRUE(cfg->Set((*reg)->domain(), {"farm", "pa55word", ""}).ok());
    ASSERT_TRUE(cfg->Save().ok());
  };
  std::string shared = common::JoinPath(tmp_->path(), "shared-docker");
  std::string own = common::JoinPath(tmp_->path(), "team-a-docker");
  write_config(shared);
  write_config(own);
  options_.docker_config_dir = shared;
  options_.shared_registry_push = false;
  farm::v1::SubmitBuildRequest req = Request("FROM scratch\nLABEL a=b\n");
  req.add_tags((*reg)->domain() + "/team/app:1");
  req.set_push(true);
  auto run = [&](const BuildRunner& runner, const std::string& tenant) {
    farm::v1::SubmitBuildRequest r = req;
    r.set_tenant(tenant);
    return runner.Run(
        "b-" + tenant, r, {}, nullptr, [](const farm::v1::BuildEvent&) {},
        /*cancel=*/nullptr);
  };

  options_.tenant_docker_config_dirs = {{"team-a", own}};
  BuildRunner runner(options_);
  absl::Status a = run(runner, "team-a");
  EXPECT_TRUE(a.ok()) << a;
  absl::Status b = run(runner, "team-b");
  ASSERT_FALSE(b.ok());
  EXPECT_THAT(std::string(b.message()), ::testing::HasSubstr((*reg)->domain())) << b;
  EXPECT_THAT(std::string(b.message()), ::testing::HasSubstr("HTTP 401 (no credentials were sent"))
      << b;

  // The same tenant pushes once the farm lets the shared credentials push.
  options_.shared_registry_push = true;
  BuildRunner sharing(options_);
  absl::Status b2 = run(sharing, "team-b");
  EXPECT_TRUE(b2.ok()) << b2;
}

TEST_F(BuildRunnerRunTest, CancelReachesTheRunningStep) {
  BuildRunner runner(options_);
  absl::Notification cancel;
  exec_->cancel_build = &cancel;
  absl::Status s = runner.Run(
      "b1", Request("FROM scratch\nRUN [\"cancel-me\"]\nRUN [\"after\"]\n"), {}, nullptr,
      [](const farm::v1::BuildEvent&) {}, &cancel);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_THAT(exec_->ran(), ElementsAre("cancel-me"));
}

}  // namespace
}  // namespace farm::scheduler::server
