// farm-cache's store metrics and readiness over a real RocksDB store with an injected clock.
#include "cache/server/ops.h"

#include <string>

#include "cache/rocksdb_blob_store.h"
#include "common/fs.h"
#include "common/metrics/promtool_check.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::cache::server {
namespace {

using ::testing::HasSubstr;

TEST(CacheMetricsTest, StoredBytesRetentionAndReadiness) {
  auto tmp = common::TempDir::Create("cache-ops");
  ASSERT_TRUE(tmp.ok());
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  RocksDbStoreOptions o;
  o.dir = common::JoinPath(tmp->path(), "cache");
  o.max_size = 256 << 20;
  o.clock = [&now] { return now; };
  auto store = RocksDbBlobStore::Create(o);
  ASSERT_TRUE(store.ok()) << store.status();
  std::shared_ptr<RocksDbBlobStore> cas = *std::move(store);

  common::metrics::Registry registry;
  CacheMetricsOptions mo;
  mo.max_age = absl::ZeroDuration();  // every scrape reads the store
  mo.now = [&now] { return now; };
  mo.server_counters = [] {
    ServerCounters c;
    c.bytes_read = 7;
    c.bytes_written = 1500;
    return c;
  };
  ASSERT_TRUE(RegisterCacheMetrics(&registry, cas, mo).ok());
  std::string text = registry.TextExposition();
  EXPECT_THAT(text, HasSubstr("farm_cache_stored_bytes 0\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_oldest_blob_age_seconds 0\n"));

  ASSERT_TRUE(cas->Put(std::string(1000, 'a')).ok());
  now += absl::Minutes(5);
  ASSERT_TRUE(cas->Put(std::string(500, 'b')).ok());
  now += absl::Minutes(1);
  text = registry.TextExposition();
  EXPECT_THAT(text, HasSubstr("farm_cache_stored_bytes 1500\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_blobs 2\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_max_size_bytes 268435456\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_evicted_bytes_total 0\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_read_bytes_total 7\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_written_bytes_total 1500\n"));
  EXPECT_THAT(text, HasSubstr("farm_cache_oldest_blob_age_seconds 360\n"));  // the 'a' blob
  common::metrics::PromtoolResult lint = common::metrics::PromtoolCheckMetrics(text);
  EXPECT_EQ(lint.exit_code, 0) << lint.output << "\n" << text;

  common::http::ReadinessChecks ready;
  AddStoreReadiness(&ready, cas);
  EXPECT_TRUE(ready.Check().ok()) << ready.Check();
}

TEST(CacheMetricsTest, SnapshotsAreReusedWithinMaxAge) {
  class CountingAdmin : public CacheAdmin {
   public:
    absl::StatusOr<CacheStats> Stats() override {
      ++calls;
      CacheStats s;
      s.blob_bytes = calls;
      return s;
    }
    absl::StatusOr<GcResult> Gc(const GcOptions&) override { return GcResult(); }
    int calls = 0;
  };
  auto admin = std::make_shared<CountingAdmin>();
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  CacheMetricsOptions mo;
  mo.max_age = absl::Seconds(2);
  mo.now = [&now] { return now; };
  common::metrics::Registry registry;
  ASSERT_TRUE(RegisterCacheMetrics(&registry, admin, mo).ok());
  registry.TextExposition();
  registry.TextExposition();
  EXPECT_EQ(admin->calls, 1);  // one Stats() for every family of both scrapes
  now += absl::Seconds(3);
  EXPECT_THAT(registry.TextExposition(), HasSubstr("farm_cache_stored_bytes 2\n"));
  EXPECT_EQ(admin->calls, 2);
}

}  // namespace
}  // namespace farm::cache::server
