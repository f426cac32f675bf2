// farm-scheduler's flags: the defaults, every flag reaching its option, and each validation
// error with the message the operator sees.
#include "scheduler/server/flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::scheduler::server {
namespace {

using ::testing::HasSubstr;

const std::vector<std::string> kRequired = {"--cache", "cache:9092", "--dir", "/var/lib/farm"};

std::vector<std::string> With(std::vector<std::string> extra) {
  std::vector<std::string> args = kRequired;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(ParseFlagsTest, Defaults) {
  absl::StatusOr<ParsedFlags> f = ParseFlags(kRequired);
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->help, "");
  const SchedulerOptions& o = f->options;
  EXPECT_EQ(o.listen, "127.0.0.1:9091");
  EXPECT_EQ(o.cache, "cache:9092");
  EXPECT_EQ(o.advertise_cache, "cache:9092");  // defaults to --cache
  EXPECT_EQ(o.dir, "/var/lib/farm");
  EXPECT_EQ(o.max_active_builds, 32);
  EXPECT_EQ(o.max_queued_builds, 10000);
  EXPECT_EQ(o.max_queued_tasks, 100000);
  EXPECT_EQ(o.max_attempts, 3);
  EXPECT_EQ(o.heartbeat_interval, absl::Seconds(5));
  EXPECT_EQ(o.lease_timeout, absl::Seconds(30));
  EXPECT_EQ(o.locality_wait, absl::Milliseconds(500));
  EXPECT_EQ(o.restart_grace, absl::Minutes(10));
  EXPECT_TRUE(o.tenant_weights.empty());
  EXPECT_TRUE(o.insecure_registries.empty());
  EXPECT_EQ(o.docker_config_dir, "");
  EXPECT_EQ(o.max_worker_send_queue_bytes, int64_t{64} << 20);
  EXPECT_EQ(o.max_worker_send_queue_messages, 16384);
}

TEST(ParseFlagsTest, EveryFlagReachesItsOption) {
  absl::StatusOr<ParsedFlags> f = ParseFlags(With({
      "--listen=0.0.0.0:0",
      "--advertise-cache",
      "cache.example:443",
      "--max-active-builds=4",
      "--max-queued-builds=0",
      "--max-queued-tasks=7",
      "--max-attempts=1",
      "--heartbeat-interval=2",
      "--lease-timeout=1m",
      "--locality-wait=0",
      "--restart-grace=1h30m",
      "--tenant-weight=team-a=2.5",
      "--tenant-weight",
      "team-b=1",
      "--insecure-registry=localhost:5000",
      "--insecure-registry=10.0.0.1:5000",
      "--docker-config=/etc/farm/docker",
      "--max-worker-send-queue=8M",
      "--max-worker-send-queue-messages=100",
  }));
  ASSERT_TRUE(f.ok()) << f.status();
  const SchedulerOptions& o = f->options;
  EXPECT_EQ(o.listen, "0.0.0.0:0");
  EXPECT_EQ(o.cache, "cache:9092");
  EXPECT_EQ(o.advertise_cache, "cache.example:443");
  EXPECT_EQ(o.max_active_builds, 4);
  EXPECT_EQ(o.max_queued_builds, 0);
  EXPECT_EQ(o.max_queued_tasks, 7);
  EXPECT_EQ(o.max_attempts, 1);
  EXPECT_EQ(o.heartbeat_interval, absl::Seconds(2));
  EXPECT_EQ(o.lease_timeout, absl::Minutes(1));
  EXPECT_EQ(o.locality_wait, absl::ZeroDuration());
  EXPECT_EQ(o.restart_grace, absl::Minutes(90));
  EXPECT_EQ(o.tenant_weights, (std::map<std::string, double>{{"team-a", 2.5}, {"team-b", 1}}));
  EXPECT_EQ(o.insecure_registries, (std::vector<std::string>{"localhost:5000", "10.0.0.1:5000"}));
  EXPECT_EQ(o.docker_config_dir, "/etc/farm/docker");
  EXPECT_EQ(o.max_worker_send_queue_bytes, int64_t{8} << 20);
  EXPECT_EQ(o.max_worker_send_queue_messages, 100);
}

TEST(ParseFlagsTest, OpsFlags) {
  absl::StatusOr<ParsedFlags> f = ParseFlags(kRequired);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->options.ops.metrics_listen, "");
  EXPECT_EQ(f->options.ops.log_format, common::logging::Format::kText);
  f = ParseFlags(With({"--metrics-listen", "0.0.0.0:9100", "--log-format", "json"}));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->options.ops.metrics_listen, "0.0.0.0:9100");
  EXPECT_EQ(f->options.ops.log_format, common::logging::Format::kJson);
  EXPECT_FALSE(ParseFlags(With({"--log-format", "yaml"})).ok());
}

TEST(ParseFlagsTest, NegativeSendQueueBoundIsRefused) {
  absl::StatusOr<ParsedFlags> f = ParseFlags(With({"--max-worker-send-queue-messages=-1"}));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(f.status().message(), HasSubstr("--max-worker-send-queue-messages"));
}

TEST(ParseFlagsTest, HelpNeedsNoOtherFlags) {
  for (const char* flag : {"--help", "-h"}) {
    absl::StatusOr<ParsedFlags> f = ParseFlags({flag});
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_THAT(f->help, HasSubstr("farm-scheduler --cache HOST:PORT --dir DIR"));
    EXPECT_THAT(f->help, HasSubstr("--lease-timeout"));
    EXPECT_THAT(f->help, HasSubstr("--tenant-weight"));
  }
}

// Every error is INVALID_ARGUMENT (farm-scheduler exits 2) and says what is wrong.
void ExpectError(const std::vector<std::string>& args, const std::string& message) {
  absl::StatusOr<ParsedFlags> f = ParseFlags(args);
  ASSERT_FALSE(f.ok()) << "accepted: " << ::testing::PrintToString(args);
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.status().message(), message);
}

TEST(ParseFlagsTest, RequiredFlagsAndPositionals) {
  ExpectError({"--dir", "/d"}, "--cache is required (farm-cache's HOST:PORT)");
  ExpectError({"--cache", "c:1"}, "--dir is required");
  ExpectError(With({"extra"}), "unexpected argument \"extra\"");
}

TEST(ParseFlagsTest, UnknownFlagsAndBadIntegers) {
  absl::StatusOr<ParsedFlags> f = ParseFlags(With({"--bogus"}));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("unknown flag: --bogus"));
  f = ParseFlags(With({"--max-attempts=many"}));
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("max-attempts"));
}

TEST(ParseFlagsTest, Limits) {
  const std::string limits =
      "--max-active-builds, --max-queued-tasks and --max-attempts must be at least 1, "
      "--max-queued-builds not negative";
  ExpectError(With({"--max-active-builds=0"}), limits);
  ExpectError(With({"--max-queued-builds=-1"}), limits);
  ExpectError(With({"--max-queued-tasks=0"}), limits);
  ExpectError(With({"--max-attempts=0"}), limits);
}

TEST(ParseFlagsTest, Durations) {
  ExpectError(With({"--lease-timeout", "soon"}),
              "--lease-timeout soon: want a duration such as 30, 30s, 500ms or 2m");
  ExpectError(With({"--locality-wait=-1s"}),
              "--locality-wait -1s: want a duration such as 30, 30s, 500ms or 2m");
  ExpectError(With({"--restart-grace=-5"}),
              "--restart-grace -5: want a duration such as 30, 30s, 500ms or 2m");
  const std::string order =
      "--lease-timeout must be longer than --heartbeat-interval (and both positive)";
  ExpectError(With({"--heartbeat-interval", "5", "--lease-timeout", "2"}), order);
  ExpectError(With({"--heartbeat-interval=10s", "--lease-timeout=10s"}), order);
  ExpectError(With({"--heartbeat-interval=0", "--lease-timeout=10s"}), order);
}

TEST(ParseFlagsTest, TenantWeights) {
  ExpectError(With({"--tenant-weight=team=0"}),
              "--tenant-weight team=0: the weight must be a positive number");
  ExpectError(With({"--tenant-weight=team=-1"}),
              "--tenant-weight team=-1: the weight must be a positive number");
  ExpectError(With({"--tenant-weight=team"}),
              "--tenant-weight team: the weight must be a positive number");
  ExpectError(With({"--tenant-weight="}), "--tenant-weight : want TENANT=WEIGHT");
}

TEST(ParseFlagsTest, TenantRegistryCredentials) {
  auto parsed = ParseFlags(With({"--tenant-docker-config", "big=/etc/farm/tenants/big",
                                 "--tenant-docker-config=small=/etc/farm/tenants/small"}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->options.tenant_docker_config_dirs.at("big"), "/etc/farm/tenants/big");
  EXPECT_EQ(parsed->options.tenant_docker_config_dirs.at("small"), "/etc/farm/tenants/small");
  EXPECT_FALSE(parsed->options.shared_registry_push);
  parsed = ParseFlags(With({"--shared-registry-push"}));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->options.shared_registry_push);
  ExpectError(With({"--tenant-docker-config=big"}), "--tenant-docker-config big: want TENANT=DIR");
  ExpectError(With({"--tenant-docker-config=a=/x", "--tenant-docker-config=a=/y"}),
              "--tenant-docker-config: tenant a is given twice");
}

TEST(ParseDurationFlagTest, SecondsOrGoDurations) {
  EXPECT_EQ(*ParseDurationFlag("f", "30"), absl::Seconds(30));
  EXPECT_EQ(*ParseDurationFlag("f", "1.5"), absl::Milliseconds(1500));
  EXPECT_EQ(*ParseDurationFlag("f", "500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseDurationFlag("f", "2m"), absl::Minutes(2));
  EXPECT_EQ(*ParseDurationFlag("f", "1h30m"), absl::Minutes(90));
  EXPECT_EQ(*ParseDurationFlag("f", "0"), absl::ZeroDuration());
  absl::StatusOr<absl::Duration> bad = ParseDurationFlag("lease-timeout", "2 minutes");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "--lease-timeout 2 minutes: want a duration such as 30, 30s, 500ms or 2m");
}

}  // namespace
}  // namespace farm::scheduler::server
