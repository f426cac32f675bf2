#include "common/metrics/metrics.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/metrics/text_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace farm::common::metrics {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(TextFormatTest, FormatsValuesShortestAndExact) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(-3), "-3");
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(2.5), "2.5");
  // A byte counter keeps every digit (printf's %g would print 1.23457e+11).
  EXPECT_EQ(FormatValue(123456789012.0), "123456789012");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
  // Round trip.
  for (double v : {1.0 / 3, 1e-300, 6.02214076e23, 0.30000000000000004}) {
    EXPECT_EQ(std::stod(FormatValue(v)), v) << FormatValue(v);
  }
}

TEST(TextFormatTest, Escapes) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(EscapeLabelValue("é/日本"), "é/日本");
  EXPECT_EQ(EscapeHelp("say \"hi\"\\\n"), "say \"hi\"\\\\\\n");
}

TEST(CounterTest, CountsWholeAndFractionalIncrementsAndIgnoresDecrements) {
  Registry r;
  auto f = r.AddCounter({"test_events_total", "Events."});
  ASSERT_TRUE(f.ok()) << f.status();
  Counter& c = (*f)->WithLabels();
  c.Increment();
  c.IncrementBy(2);
  c.IncrementBy(0.25);
  c.IncrementBy(-5);
  c.IncrementBy(std::nan(""));
  EXPECT_DOUBLE_EQ(c.Value(), 3.25);
  c.IncrementBy(1e300);  // beyond 2^53: the floating-point path
  EXPECT_DOUBLE_EQ(c.Value(), 1e300);
}

TEST(GaugeTest, SetsAddsAndSubtracts) {
  Registry r;
  auto f = r.AddGauge({"test_level", "Level."});
  ASSERT_TRUE(f.ok());
  Gauge& g = (*f)->WithLabels();
  g.Set(10);
  g.Add(2.5);
  g.Sub(4);
  g.Increment();
  g.Decrement();
  g.Decrement();
  EXPECT_DOUBLE_EQ(g.Value(), 7.5);
}

TEST(HistogramTest, BucketsAreLessOrEqualAndCumulative) {
  Registry r;
  auto f = r.AddHistogram({"test_latency_seconds", "Latency."}, {0.1, 1, 10});
  ASSERT_TRUE(f.ok()) << f.status();
  Histogram& h = (*f)->WithLabels();
  for (double v : {0.05, 0.1, 0.5, 1.0, 5.0, 100.0}) h.Observe(v);
  h.Observe(std::nan(""));  // ignored
  h.ObserveDuration(absl::Milliseconds(1500));
  Histogram::Snapshot s = h.Collect();
  EXPECT_THAT(s.bounds, ::testing::ElementsAre(0.1, 1, 10));
  // le=0.1: 0.05 0.1; le=1: + 0.5 1.0; le=10: + 5.0 1.5; +Inf: + 100.
  EXPECT_THAT(s.buckets, ::testing::ElementsAre(2, 4, 6, 7));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 0.05 + 0.1 + 0.5 + 1 + 5 + 100 + 1.5);
}

TEST(HistogramTest, RejectsBadBucketsAndDropsATrailingInf) {
  Registry r;
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(r.AddHistogram({"test_a_seconds", "A."}, {1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram({"test_b_seconds", "B."}, {2, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram({"test_c_seconds", "C."}, {1, std::nan("")}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram({"test_d_seconds", "D."}, {-inf, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto f = r.AddHistogram({"test_e_seconds", "E."}, {1, inf});
  ASSERT_TRUE(f.ok());
  EXPECT_THAT((*f)->WithLabels().Collect().bounds, ::testing::ElementsAre(1));
  // No bounds at all: just +Inf.
  auto g = r.AddHistogram({"test_f_seconds", "F."}, {});
  ASSERT_TRUE(g.ok());
  (*g)->WithLabels().Observe(3);
  EXPECT_THAT((*g)->WithLabels().Collect().buckets, ::testing::ElementsAre(1));
}

TEST(BucketsTest, Helpers) {
  EXPECT_THAT(ExponentialBuckets(1, 2, 4), ::testing::ElementsAre(1, 2, 4, 8));
  EXPECT_THAT(LinearBuckets(0, 5, 3), ::testing::ElementsAre(0, 5, 10));
  EXPECT_TRUE(ExponentialBuckets(0, 2, 3).empty());
  EXPECT_TRUE(ExponentialBuckets(1, 1, 3).empty());
  std::vector<double> d = DefaultLatencyBuckets();
  EXPECT_TRUE(std::is_sorted(d.begin(), d.end()));
  Registry r;
  EXPECT_TRUE(r.AddHistogram({"test_default_seconds", "D."}, d).ok());
}

TEST(RegistryTest, RejectsBadDescriptions) {
  Registry r;
  EXPECT_EQ(r.AddCounter({"test_events", "No _total."}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddGauge({"test_events_total", "Gauge with _total."}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddGauge({"test_level", ""}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddGauge({"test_level", "L.", {"a", "a"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddGauge({"test_level", "L.", {"Bad"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram({"test_h_seconds", "H.", {"le"}}, {1}).status().code(),
            absl::StatusCode::kInvalidArgument);
  MetricDesc zero{"test_level", "L.", {"a"}};
  zero.max_series = 0;
  EXPECT_EQ(r.AddGauge(zero).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(r.AddGauge({"test_level", "L."}).ok());
  EXPECT_EQ(r.AddGauge({"test_level", "L."}).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(r.AddGaugeCallback({"test_level", "L."}, [] { return 1.0; }).code(),
            absl::StatusCode::kAlreadyExists);
  // Nothing half-registered by the failures.
  EXPECT_EQ(r.TextExposition(), "# HELP test_level L.\n# TYPE test_level gauge\ntest_level 0\n");
}

// The whole exposition, byte for byte: order of families and series, HELP/TYPE lines,
// escaping, histogram series and float formatting.
TEST(RegistryTest, TextExpositionGolden) {
  Registry r;
  auto rpcs = r.AddCounter(
      {"test_rpcs_total", "RPCs handled.\nBy \"method\" and code \\ status.", {"method", "code"}});
  auto level = r.AddGauge({"test_level_bytes", "Bytes held."});
  auto latency = r.AddHistogram({"test_latency_seconds", "Latency.", {"method"}}, {0.5, 1});
  auto empty = r.AddCounter({"test_unused_total", "Never incremented.", {"kind"}});
  ASSERT_TRUE(rpcs.ok() && level.ok() && latency.ok() && empty.ok());
  ASSERT_TRUE(r.AddGaugeCallback({"test_queue_depth", "Queued.", {"tenant"}}, [] {
                 return std::vector<Sample>{{{"b"}, 2}, {{"a"}, 1}};
               }).ok());
  (*rpcs)->WithLabels({"/x.Y/Get", "OK"}).IncrementBy(3);
  (*rpcs)->WithLabels({"/x.Y/Get", "NOT_FOUND"}).Increment();
  (*rpcs)->WithLabels({"/a.B/Put", "OK"}).Increment();
  (*rpcs)->WithLabels({"we\"ird\\\n", "OK"}).Increment();
  (*level)->WithLabels().Set(1.5e10);
  (*latency)->WithLabels({"/x.Y/Get"}).Observe(0.25);
  (*latency)->WithLabels({"/x.Y/Get"}).Observe(0.75);
  (*latency)->WithLabels({"/x.Y/Get"}).Observe(3);
  EXPECT_EQ(r.TextExposition(),
            "# HELP test_latency_seconds Latency.\n"
            "# TYPE test_latency_seconds histogram\n"
            "test_latency_seconds_bucket{method=\"/x.Y/Get\",le=\"0.5\"} 1\n"
            "test_latency_seconds_bucket{method=\"/x.Y/Get\",le=\"1\"} 2\n"
            "test_latency_seconds_bucket{method=\"/x.Y/Get\",le=\"+Inf\"} 3\n"
            "test_latency_seconds_sum{method=\"/x.Y/Get\"} 4\n"
            "test_latency_seconds_count{method=\"/x.Y/Get\"} 3\n"
            "# HELP test_level_bytes Bytes held.\n"
            "# TYPE test_level_bytes gauge\n"
            "test_level_bytes 1.5e+10\n"
            "# HELP test_queue_depth Queued.\n"
            "# TYPE test_queue_depth gauge\n"
            "test_queue_depth{tenant=\"a\"} 1\n"
            "test_queue_depth{tenant=\"b\"} 2\n"
            "# HELP test_rpcs_total RPCs handled.\\nBy \"method\" and code \\\\ status.\n"
            "# TYPE test_rpcs_total counter\n"
            "test_rpcs_total{method=\"/a.B/Put\",code=\"OK\"} 1\n"
            "test_rpcs_total{method=\"/x.Y/Get\",code=\"NOT_FOUND\"} 1\n"
            "test_rpcs_total{method=\"/x.Y/Get\",code=\"OK\"} 3\n"
            "test_rpcs_total{method=\"we\\\"ird\\\\\\n\",code=\"OK\"} 1\n");
}

TEST(FamilyTest, SameLabelsSameSeries) {
  Registry r;
  auto f = r.AddCounter({"test_events_total", "E.", {"kind"}});
  ASSERT_TRUE(f.ok());
  Counter& a = (*f)->WithLabels({"a"});
  EXPECT_EQ(&a, &(*f)->WithLabels({"a"}));
  EXPECT_EQ(&a, &(*f)->WithLabels(std::vector<std::string>{"a"}));
  EXPECT_NE(&a, &(*f)->WithLabels({"b"}));
  EXPECT_EQ((*f)->series_count(), 2);
}

TEST(FamilyTest, OverflowPastTheCap) {
  Registry r;
  MetricDesc desc{"test_builds_total", "Builds.", {"tenant", "outcome"}};
  desc.max_series = 3;
  auto f = r.AddCounter(desc);
  ASSERT_TRUE(f.ok());
  for (int i = 0; i < 10; ++i) (*f)->WithLabels({absl::StrCat("t", i), "ok"}).Increment();
  EXPECT_EQ((*f)->series_count(), 3);
  // Existing series keep counting; new ones fail in TryWithLabels and share the overflow.
  (*f)->WithLabels({"t0", "ok"}).Increment();
  EXPECT_TRUE((*f)->TryWithLabels({"t1", "ok"}).ok());
  absl::StatusOr<Counter*> refused = (*f)->TryWithLabels({"t99", "ok"});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  Counter& overflow = (*f)->WithLabels({"t99", "ok"});
  overflow.Increment();
  Counter& again = (*f)->WithLabels({"t100", "failed"});
  EXPECT_EQ(&overflow, &again);
  again.Increment();
  EXPECT_EQ(overflow.Value(), 7 + 2);  // t3..t9, then t99 and t100
  const std::string text = r.TextExposition();
  EXPECT_THAT(text, HasSubstr("test_builds_total{tenant=\"t0\",outcome=\"ok\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("test_builds_total{tenant=\"__overflow__\",outcome=\"__overflow__\"}"
                              " 9\n"));
  EXPECT_THAT(text, Not(HasSubstr("t5")));
  // The sum over all series is still every increment made.
  double total = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    total += std::stod(std::string(line.substr(line.rfind(' ') + 1)));
  }
  EXPECT_EQ(total, 10 + 1 + 2);
}

TEST(FamilyTest, BadLabelValuesGoToOverflow) {
  Registry r;
  auto f = r.AddGauge({"test_level", "L.", {"a", "b"}});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->TryWithLabels({"x"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*f)->TryWithLabels({"x", "y", "z"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*f)->TryWithLabels({"x", "\xff"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*f)->TryWithLabels({"x", std::string(kMaxLabelValueBytes + 1, 'a')}).status().code(),
            absl::StatusCode::kInvalidArgument);
  Gauge& o = (*f)->WithLabels({"x"});
  EXPECT_EQ(&o, &(*f)->WithLabels({"x", "\xc0\xaf"}));
  EXPECT_EQ(&o, &(*f)->WithLabels({"__overflow__", "__overflow__"}));
  EXPECT_EQ((*f)->series_count(), 0);
  // "x\xff" + "" would make the same lookup key as "x" + "\xff" + "": never accepted.
  ASSERT_TRUE((*f)->TryWithLabels({"x", ""}).ok());
  EXPECT_EQ((*f)->TryWithLabels({"x\xff", ""}).status().code(), absl::StatusCode::kInvalidArgument);
  // An empty value and multi-byte UTF-8 are fine.
  EXPECT_TRUE((*f)->TryWithLabels({"", "日本"}).ok());
}

TEST(FamilyTest, LabeledFamiliesShowOnlyOnceUsed) {
  Registry r;
  auto f = r.AddCounter({"test_events_total", "E.", {"kind"}});
  auto g = r.AddCounter({"test_plain_total", "P."});
  ASSERT_TRUE(f.ok() && g.ok());
  EXPECT_EQ(r.TextExposition(),
            "# HELP test_plain_total P.\n# TYPE test_plain_total counter\ntest_plain_total 0\n");
  (*f)->WithLabels({"a"});
  EXPECT_THAT(r.TextExposition(), HasSubstr("test_events_total{kind=\"a\"} 0\n"));
}

TEST(CallbackTest, MergesDuplicatesCapsAndValidates) {
  Registry r;
  MetricDesc depth{"test_queue_depth", "Q.", {"platform"}};
  depth.max_series = 2;
  std::vector<Sample> samples = {{{"linux/amd64"}, 3}, {{"linux/arm64"}, 1},
                                 {{"linux/amd64"}, 2}, {{"windows/amd64"}, 4},
                                 {{"z"}, 5},           {{"a", "extra"}, 10}};
  ASSERT_TRUE(r.AddGaugeCallback(depth, [&] { return samples; }).ok());
  MetricDesc age{"test_oldest_age_seconds", "A.", {"platform"}};
  age.max_series = 1;
  ASSERT_TRUE(r.AddGaugeCallback(
                   age,
                   [] {
                     return std::vector<Sample>{{{"a"}, 7}, {{"b"}, 30}, {{"c"}, 9}};
                   },
                   Merge::kMax)
                  .ok());
  ASSERT_TRUE(r.AddCounterCallback({"test_done_total", "D."}, [] { return 12; }).ok());
  ASSERT_TRUE(
      r.AddGaugeCallback({"test_nothing", "N.", {"x"}}, [] { return std::vector<Sample>{}; }).ok());
  EXPECT_EQ(r.TextExposition(),
            "# HELP test_done_total D.\n# TYPE test_done_total counter\ntest_done_total 12\n"
            "# HELP test_oldest_age_seconds A.\n# TYPE test_oldest_age_seconds gauge\n"
            "test_oldest_age_seconds{platform=\"__overflow__\"} 30\n"
            "test_oldest_age_seconds{platform=\"a\"} 7\n"
            "# HELP test_queue_depth Q.\n# TYPE test_queue_depth gauge\n"
            "test_queue_depth{platform=\"__overflow__\"} 19\n"  // windows 4 + z 5 + bad 10
            "test_queue_depth{platform=\"linux/amd64\"} 5\n"
            "test_queue_depth{platform=\"linux/arm64\"} 1\n");
  // Evaluated at every scrape.
  samples = {{{"linux/amd64"}, 8}};
  EXPECT_THAT(r.TextExposition(), HasSubstr("test_queue_depth{platform=\"linux/amd64\"} 8\n"));
}

// Many threads on one series lose no update; series creation races with scrapes.
TEST(ConcurrencyTest, ParallelUpdatesAreExact) {
  Registry r;
  MetricDesc events{"test_events_total", "E.", {"worker"}};
  events.max_series = 1000;
  auto c = r.AddCounter(events);
  auto h = r.AddHistogram({"test_latency_seconds", "L."}, {1, 2});
  auto g = r.AddGauge({"test_level", "L."});
  ASSERT_TRUE(c.ok() && h.ok() && g.ok());
  constexpr int kThreads = 8;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) EXPECT_FALSE(r.TextExposition().empty());
  });
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Counter& shared = (*c)->WithLabels({"shared"});
      for (int i = 0; i < kIterations; ++i) {
        shared.Increment();
        (*c)->WithLabels({absl::StrCat("w", t, "_", i % 50)}).IncrementBy(0.5);
        (*h)->WithLabels().Observe(i % 3);
        (*g)->WithLabels().Add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  scraper.join();
  EXPECT_EQ((*c)->WithLabels({"shared"}).Value(), kThreads * kIterations);
  EXPECT_EQ((*c)->series_count(), 1 + kThreads * 50);
  EXPECT_EQ((*c)->WithLabels({"w3_7"}).Value(), 0.5 * kIterations / 50);
  Histogram::Snapshot s = (*h)->WithLabels().Collect();
  EXPECT_EQ(s.count, uint64_t{kThreads * kIterations});
  EXPECT_EQ((*g)->WithLabels().Value(), kThreads * kIterations);
}

}  // namespace
}  // namespace farm::common::metrics
