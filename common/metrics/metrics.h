// A small Prometheus client: a Registry of metric families (counters, gauges, histograms, and
// gauges or counters computed at scrape time) and their text exposition (format 0.0.4), which
// common/http serves on /metrics.
//
// Every family declares its label names up front. A series (one combination of label values)
// is created on first use and lives as long as the registry; at most `max_series` of them exist
// per family. Past that cap, and for label values that are not acceptable (wrong number, not
// UTF-8, longer than kMaxLabelValueBytes), updates go to one overflow series whose every label
// value is kOverflowLabelValue ("__overflow__"): totals stay right, the set of series stays
// bounded, and the overflow is visible on the scrape.
//
//   metrics::Registry registry;
//   ASSIGN_OR_RETURN(metrics::Family<metrics::Counter>* builds,
//                    registry.AddCounter({"farm_scheduler_builds_total",
//                                         "Builds finished, by outcome.", {"outcome"}}));
//   ASSIGN_OR_RETURN(metrics::Family<metrics::Histogram>* duration,
//                    registry.AddHistogram({"farm_scheduler_build_duration_seconds",
//                                           "Wall time of finished builds."},
//                                          metrics::ExponentialBuckets(1, 2, 12)));
//   RETURN_IF_ERROR(registry.AddGaugeCallback(
//       {"farm_scheduler_queued_tasks", "Steps waiting for a worker.", {"platform", "tenant"}},
//       [d] {
//         std::vector<metrics::Sample> out;
//         for (const auto& q : d->Stats().queues) {
//           out.push_back({{q.platform, q.tenant}, static_cast<double>(q.size)});
//         }
//         return out;
//       }));
//   ...
//   builds->WithLabels({"succeeded"}).Increment();
//   duration->WithLabels().ObserveDuration(absl::Now() - start);
//   std::string body = registry.TextExposition();
//
// Thread safety: everything here may be called from any thread. Updating a series is a relaxed
// atomic operation; WithLabels() takes the family's reader lock for the lookup (a writer lock
// only when it creates a series), so hot paths keep the returned reference: it stays valid for
// the registry's lifetime.
#ifndef FARM_COMMON_METRICS_METRICS_H_
#define FARM_COMMON_METRICS_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/metrics/naming.h"

namespace farm::common::metrics {

// The label value every label of the overflow series carries.
inline constexpr absl::string_view kOverflowLabelValue = "__overflow__";

// What a family is: checked by the Registry when it is added.
struct MetricDesc {
  // farm_<component>_<what>[_<unit>], e.g. farm_cache_stored_bytes; counters end in _total.
  std::string name;
  // One line saying what is counted (required; escaped on output).
  std::string help;
  // Label names, in the order WithLabels() takes the values.
  std::vector<std::string> labels;
  // Most label-value combinations kept; more go to the overflow series.
  int max_series = 256;
};

// A monotonically increasing value. Increments of whole numbers are one fetch_add.
class Counter {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Increment() { whole_.fetch_add(1, std::memory_order_relaxed); }
  // Adds `v`; negative and NaN values are ignored (a counter never goes down).
  void IncrementBy(double v);
  double Value() const;

 private:
  std::atomic<uint64_t> whole_{0};   // whole-number increments (the common case)
  std::atomic<double> fraction_{0};  // everything else
};

// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  void Sub(double v) { Add(-v); }
  void Increment() { Add(1); }
  void Decrement() { Add(-1); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with fixed upper bounds (the family's), plus their sum.
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `v` in the first bucket whose bound is >= v (the +Inf bucket if none) and adds it
  // to the sum. NaN is ignored.
  void Observe(double v);
  void ObserveDuration(absl::Duration d) { Observe(absl::ToDoubleSeconds(d)); }

  struct Snapshot {
    std::vector<double> bounds;     // upper bounds, ascending, without +Inf
    std::vector<uint64_t> buckets;  // cumulative counts: buckets[i] is le=bounds[i]; last +Inf
    double sum = 0;
    uint64_t count = 0;  // == buckets.back()
  };
  // A copy of the current state. Under concurrent Observe() calls the sum may lag the counts by
  // the observations in flight; `count` always equals the +Inf bucket.
  Snapshot Collect() const;

 private:
  template <typename T>
  friend class Family;
  explicit Histogram(const std::vector<double>* bounds);

  const std::vector<double>* const bounds_;          // the family's; outlives this
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket (not cumulative), +Inf last
  std::atomic<double> sum_{0};
};

// Bucket bounds: `count` bounds start, start*factor, start*factor^2, ... (start > 0, factor > 1).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// `count` bounds start, start+width, ... (width > 0).
std::vector<double> LinearBuckets(double start, double width, int count);
// For request latencies in seconds: 5 ms to 10 s (Prometheus' usual default).
std::vector<double> DefaultLatencyBuckets();

// Every family a Registry holds; writes its part of the exposition.
class Collector {
 public:
  virtual ~Collector() = default;
  virtual const MetricDesc& desc() const = 0;
  virtual MetricType type() const = 0;
  // Appends this family's lines (# HELP, # TYPE and the samples) to `out`; nothing if it has
  // no series yet.
  virtual void AppendText(std::string* out) const = 0;
};

// The series of one metric, one per combination of label values. Owned by the Registry.
// T is Counter, Gauge or Histogram.
template <typename T>
class Family final : public Collector {
 public:
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;
  ~Family() override;

  // The series for `values` (one per declared label, in order), created on first use; the
  // overflow series if they are not acceptable or the family is at its cap. Never fails.
  T& WithLabels(absl::Span<const absl::string_view> values);
  T& WithLabels(std::initializer_list<absl::string_view> values = {}) {
    return WithLabels(absl::MakeConstSpan(values.begin(), values.size()));
  }
  T& WithLabels(const std::vector<std::string>& values);

  // Like WithLabels(), but says why instead of falling back to the overflow series:
  // INVALID_ARGUMENT for a wrong number of values or a bad value, RESOURCE_EXHAUSTED at the cap.
  absl::StatusOr<T*> TryWithLabels(absl::Span<const absl::string_view> values);

  // Series created so far, not counting the overflow series.
  int series_count() const;

  const MetricDesc& desc() const override { return desc_; }
  MetricType type() const override;
  void AppendText(std::string* out) const override;

 private:
  friend class Registry;
  struct Series {
    std::vector<std::string> values;
    std::unique_ptr<T> metric;
  };

  Family(MetricDesc desc, std::vector<double> bounds);
  std::unique_ptr<T> NewMetric() const;
  T& Overflow() const;

  const MetricDesc desc_;
  const std::vector<double> bounds_;  // histograms only
  mutable absl::Mutex mu_;
  // Keyed by the values joined with '\xff' (a byte UTF-8 never contains). Nodes are stable, so
  // a scrape can read them after dropping the lock.
  absl::node_hash_map<std::string, Series> series_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Series> overflow_;
  mutable std::atomic<bool> overflow_used_{false};
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

// One sample a callback reports: label values (one per declared label, in order) and a value.
struct Sample {
  std::vector<std::string> labels;
  double value = 0;
};

// How samples that land in one series are combined (duplicates, and the overflow series of a
// callback gauge): summing suits counts (queue depth), the maximum suits ages and sizes.
enum class Merge { kSum, kMax };

// Holds metric families and writes them out. Families are added at start-up and never
// removed; pointers returned stay valid for the Registry's lifetime.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Adds a family. INVALID_ARGUMENT if the name, help, labels or buckets break the rules
  // (naming.h; counters end in _total), ALREADY_EXISTS if the name is taken.
  absl::StatusOr<Family<Counter>*> AddCounter(MetricDesc desc);
  absl::StatusOr<Family<Gauge>*> AddGauge(MetricDesc desc);
  // `bounds`: finite, strictly increasing upper bounds; +Inf is implied (and dropped if given).
  absl::StatusOr<Family<Histogram>*> AddHistogram(MetricDesc desc, std::vector<double> bounds);

  // A gauge (or counter) whose samples `fn` computes at every scrape, for values that live
  // elsewhere (queue depth, bytes stored, a component's own counters). `fn` runs on the
  // scraping thread with no lock of the Registry held; it must be thread-safe and quick. Its
  // samples are validated and capped like pushed ones: bad label values and those past
  // `max_series` (in sorted order) are merged into the overflow series with `merge`.
  absl::Status AddGaugeCallback(MetricDesc desc, std::function<std::vector<Sample>()> fn,
                                Merge merge = Merge::kSum);
  absl::Status AddCounterCallback(MetricDesc desc, std::function<std::vector<Sample>()> fn);
  // The same for an unlabeled value.
  absl::Status AddGaugeCallback(MetricDesc desc, std::function<double()> fn);
  absl::Status AddCounterCallback(MetricDesc desc, std::function<double()> fn);

  // The text exposition (format 0.0.4; serve it with kTextContentType from text_format.h):
  // families sorted by name, series by label values, each family's lines together.
  std::string TextExposition() const;

 private:
  absl::Status Add(std::unique_ptr<Collector> collector);

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<Collector>> collectors_ ABSL_GUARDED_BY(mu_);
};

}  // namespace farm::common::metrics

#endif  // FARM_COMMON_METRICS_METRICS_H_
