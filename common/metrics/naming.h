// Prometheus naming rules, checked when a metric is registered (metrics.h), so that a badly
// named metric fails at server start-up in tests rather than in someone's dashboard.
//
//   RETURN_IF_ERROR(ValidateMetricName("farm_cache_evicted_bytes_total", MetricType::kCounter));
//
// Beyond the data model's character set these enforce the conventions of
// https://prometheus.io/docs/practices/naming/ (the ones `promtool check metrics` lints):
// lower-case snake_case, no colons (reserved for recording rules), counters and only counters
// end in `_total`, `_bucket`/`_count`/`_sum` are left to histograms, base units only (`_seconds`,
// `_bytes`, not `_milliseconds`, `_kb` or `_ms`), and no type name inside the name.
#ifndef FARM_COMMON_METRICS_NAMING_H_
#define FARM_COMMON_METRICS_NAMING_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace farm::common::metrics {

enum class MetricType { kCounter, kGauge, kHistogram };

// "counter", "gauge", "histogram": the word on a # TYPE line.
absl::string_view MetricTypeName(MetricType type);

// OK, or INVALID_ARGUMENT saying which rule `name` breaks.
absl::Status ValidateMetricName(absl::string_view name, MetricType type);

// A label name: [a-z_][a-z0-9_]*, not starting with "__" (reserved), not "le" or "quantile"
// (reserved for histograms and summaries). INVALID_ARGUMENT otherwise.
absl::Status ValidateLabelName(absl::string_view name);

// Longest label value accepted, in bytes: values are meant to be ids and enum-like words.
inline constexpr size_t kMaxLabelValueBytes = 1024;

// A label value: valid UTF-8 (the format requires it) of at most kMaxLabelValueBytes.
absl::Status ValidateLabelValue(absl::string_view value);

// True if `s` is well-formed UTF-8 (no overlong forms, surrogates or code points > U+10FFFF).
bool IsValidUtf8(absl::string_view s);

}  // namespace farm::common::metrics

#endif  // FARM_COMMON_METRICS_NAMING_H_
