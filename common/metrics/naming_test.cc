#include "common/metrics/naming.h"

#include <string>

#include "gtest/gtest.h"

namespace farm::common::metrics {
namespace {

TEST(NamingTest, AcceptsConventionalNames) {
  EXPECT_TRUE(ValidateMetricName("farm_builds_total", MetricType::kCounter).ok());
  EXPECT_TRUE(ValidateMetricName("farm_cas_evicted_bytes_total", MetricType::kCounter).ok());
  EXPECT_TRUE(ValidateMetricName("farm_cas_stored_bytes", MetricType::kGauge).ok());
  EXPECT_TRUE(ValidateMetricName("farm_queue_tasks", MetricType::kGauge).ok());
  EXPECT_TRUE(ValidateMetricName("farm_build_duration_seconds", MetricType::kHistogram).ok());
  EXPECT_TRUE(ValidateMetricName("farm_http2_streams", MetricType::kGauge).ok());
  EXPECT_TRUE(ValidateMetricName("_private_value", MetricType::kGauge).ok());
}

TEST(NamingTest, RejectsUnconventionalNames) {
  struct Case {
    const char* name;
    MetricType type;
  };
  for (const Case& c : {
           Case{"", MetricType::kGauge},
           Case{"farm_builds", MetricType::kCounter},             // counters end in _total
           Case{"_total", MetricType::kCounter},                  // nothing before it
           Case{"farm_builds_total", MetricType::kGauge},         // only counters do
           Case{"farm_x_seconds_total", MetricType::kHistogram},  // nor histograms
           Case{"farmBuilds_total", MetricType::kCounter},        // camelCase
           Case{"farm:builds_total", MetricType::kCounter},       // colons: recording rules
           Case{"9farm", MetricType::kGauge},
           Case{"farm-builds", MetricType::kGauge},
           Case{"__farm", MetricType::kGauge},
           Case{"farm_build_duration_milliseconds", MetricType::kHistogram},
           Case{"farm_build_duration_ms", MetricType::kHistogram},
           Case{"farm_age_hours", MetricType::kGauge},
           Case{"farm_cas_kilobytes", MetricType::kGauge},
           Case{"farm_cas_kb", MetricType::kGauge},
           Case{"farm_cas_gibibytes", MetricType::kGauge},
           Case{"farm_link_bits", MetricType::kGauge},
           Case{"farm_wait_s", MetricType::kGauge},
           Case{"farm_queue_gauge", MetricType::kGauge},  // type in the name
           Case{"farm_x_bucket", MetricType::kGauge},
           Case{"farm_x_count", MetricType::kGauge},
           Case{"farm_x_sum", MetricType::kHistogram},
           Case{"farm_x_sum", MetricType::kGauge},
       }) {
    absl::Status s = ValidateMetricName(c.name, c.type);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
        << c.name << " as " << MetricTypeName(c.type);
  }
}

TEST(NamingTest, LabelNames) {
  EXPECT_TRUE(ValidateLabelName("method").ok());
  EXPECT_TRUE(ValidateLabelName("grpc_code").ok());
  EXPECT_TRUE(ValidateLabelName("_x").ok());
  for (const char* bad : {"", "Method", "a-b", "1a", "__name__", "le", "quantile", "a b"}) {
    EXPECT_EQ(ValidateLabelName(bad).code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(NamingTest, Utf8) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("ascii"));
  EXPECT_TRUE(IsValidUtf8("é"));                 // 2 bytes
  EXPECT_TRUE(IsValidUtf8("日本"));              // 3 bytes
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));  // U+1F600, 4 bytes
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_TRUE(ValidateLabelValue(std::string(kMaxLabelValueBytes, 'a')).ok());
  EXPECT_FALSE(ValidateLabelValue(std::string(kMaxLabelValueBytes + 1, 'a')).ok());
}

}  // namespace
}  // namespace farm::common::metrics
