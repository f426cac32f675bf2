#include "common/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/metrics/text_format.h"
#include "common/status_macros.h"

namespace farm::common::metrics {

namespace {

// Adds `v` to an atomic double (fetch_add on floating point is C++20).
void AtomicAdd(std::atomic<double>& a, double v) {
  double old = a.load(std::memory_order_relaxed);
  while (!a.compare_exchange_weak(old, old + v, std::memory_order_relaxed)) {
  }
}

// 2^53: above it not every whole number is a double, so larger increments take the float path.
constexpr double kMaxExactWhole = 9007199254740992.0;

constexpr char kKeySeparator = '\xff';

std::string SeriesKey(absl::Span<const absl::string_view> values) {
  std::string key;
  for (absl::string_view v : values) {
    key.append(v.data(), v.size());
    key.push_back(kKeySeparator);
  }
  return key;
}

// `name{a="x",b="y"}` (or `name` with no labels); `extra` is one more pair such as le="0.5".
void AppendSeriesName(std::string* out, absl::string_view name,
                      const std::vector<std::string>& label_names,
                      const std::vector<std::string>& values, absl::string_view extra_name = "",
                      absl::string_view extra_value = "") {
  out->append(name.data(), name.size());
  if (label_names.empty() && extra_name.empty()) return;
  out->push_back('{');
  bool first = true;
  for (size_t i = 0; i < label_names.size(); ++i) {
    if (!first) out->push_back(',');
    first = false;
    absl::StrAppend(out, label_names[i], "=\"", EscapeLabelValue(values[i]), "\"");
  }
  if (!extra_name.empty()) {
    if (!first) out->push_back(',');
    absl::StrAppend(out, extra_name, "=\"", extra_value, "\"");
  }
  out->push_back('}');
}

void AppendHeader(std::string* out, const MetricDesc& desc, MetricType type) {
  absl::StrAppend(out, "# HELP ", desc.name, " ", EscapeHelp(desc.help), "\n", "# TYPE ", desc.name,
                  " ", MetricTypeName(type), "\n");
}

void AppendSample(std::string* out, const MetricDesc& desc, const std::vector<std::string>& values,
                  double value) {
  AppendSeriesName(out, desc.name, desc.labels, values);
  absl::StrAppend(out, " ", FormatValue(value), "\n");
}

void AppendHistogram(std::string* out, const MetricDesc& desc,
                     const std::vector<std::string>& values, const Histogram::Snapshot& s) {
  const std::string bucket = absl::StrCat(desc.name, "_bucket");
  for (size_t i = 0; i < s.buckets.size(); ++i) {
    const std::string le = i < s.bounds.size() ? FormatValue(s.bounds[i]) : "+Inf";
    AppendSeriesName(out, bucket, desc.labels, values, "le", le);
    absl::StrAppend(out, " ", s.buckets[i], "\n");
  }
  AppendSeriesName(out, absl::StrCat(desc.name, "_sum"), desc.labels, values);
  absl::StrAppend(out, " ", FormatValue(s.sum), "\n");
  AppendSeriesName(out, absl::StrCat(desc.name, "_count"), desc.labels, values);
  absl::StrAppend(out, " ", s.count, "\n");
}

absl::Status ValidateDesc(const MetricDesc& desc, MetricType type) {
  RETURN_IF_ERROR(ValidateMetricName(desc.name, type));
  if (desc.help.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(desc.name, ": help text is required"));
  }
  absl::flat_hash_set<absl::string_view> seen;
  for (const std::string& label : desc.labels) {
    if (absl::Status s = ValidateLabelName(label); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(desc.name, ": ", s.message()));
    }
    if (!seen.insert(label).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(desc.name, ": label \"", label, "\" declared twice"));
    }
  }
  if (desc.max_series < 1) {
    return absl::InvalidArgumentError(absl::StrCat(desc.name, ": max_series must be at least 1"));
  }
  return absl::OkStatus();
}

std::vector<std::string> OverflowValues(size_t n) {
  return std::vector<std::string>(n, std::string(kOverflowLabelValue));
}

absl::Status CheckValues(const MetricDesc& desc, absl::Span<const absl::string_view> values) {
  if (values.size() != desc.labels.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(desc.name, ": want ", desc.labels.size(), " label values (",
                     absl::StrJoin(desc.labels, ", "), "), got ", values.size()));
  }
  for (absl::string_view v : values) {
    if (absl::Status s = ValidateLabelValue(v); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(desc.name, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// ---- Counter, Gauge, Histogram ----

void Counter::IncrementBy(double v) {
  if (!(v > 0)) return;  // also NaN
  if (v <= kMaxExactWhole && v == std::floor(v)) {
    whole_.fetch_add(static_cast<uint64_t>(v), std::memory_order_relaxed);
  } else {
    AtomicAdd(fraction_, v);
  }
}

double Counter::Value() const {
  return static_cast<double>(whole_.load(std::memory_order_relaxed)) +
         fraction_.load(std::memory_order_relaxed);
}

void Gauge::Add(double v) { AtomicAdd(value_, v); }

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  if (std::isnan(v)) return;
  // First bound >= v: buckets are "less than or equal".
  const size_t i = std::lower_bound(bounds_->begin(), bounds_->end(), v) - bounds_->begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot s;
  s.bounds = *bounds_;
  s.buckets.resize(bounds_->size() + 1);
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_->size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    s.buckets[i] = cumulative;
  }
  s.count = cumulative;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  std::vector<double> out;
  if (!(start > 0) || !(factor > 1)) return out;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) out.push_back(b);
  return out;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  std::vector<double> out;
  if (!(width > 0)) return out;
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

std::vector<double> DefaultLatencyBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

// ---- Family ----

template <typename T>
Family<T>::Family(MetricDesc desc, std::vector<double> bounds)
    : desc_(std::move(desc)), bounds_(std::move(bounds)) {
  overflow_ = std::make_unique<Series>();
  overflow_->values = OverflowValues(desc_.labels.size());
  overflow_->metric = NewMetric();
}

template <typename T>
Family<T>::~Family() = default;

template <typename T>
std::unique_ptr<T> Family<T>::NewMetric() const {
  if constexpr (std::is_same_v<T, Histogram>) {
    return std::unique_ptr<Histogram>(new Histogram(&bounds_));
  } else {
    return std::make_unique<T>();
  }
}

template <typename T>
MetricType Family<T>::type() const {
  if constexpr (std::is_same_v<T, Counter>) return MetricType::kCounter;
  if constexpr (std::is_same_v<T, Gauge>) return MetricType::kGauge;
  return MetricType::kHistogram;
}

template <typename T>
T& Family<T>::Overflow() const {
  overflow_used_.store(true, std::memory_order_relaxed);
  return *overflow_->metric;
}

template <typename T>
T& Family<T>::WithLabels(absl::Span<const absl::string_view> values) {
  absl::StatusOr<T*> m = TryWithLabels(values);
  return m.ok() ? **m : Overflow();
}

template <typename T>
T& Family<T>::WithLabels(const std::vector<std::string>& values) {
  std::vector<absl::string_view> views(values.begin(), values.end());
  return WithLabels(absl::MakeConstSpan(views));
}

template <typename T>
absl::StatusOr<T*> Family<T>::TryWithLabels(absl::Span<const absl::string_view> values) {
  if (values.size() != desc_.labels.size()) return CheckValues(desc_, values);
  // With the count right, a key with exactly one separator per value and no other \xff can
  // only come from valid values, so the lookup may come before validation.
  const std::string key = SeriesKey(values);
  {
    absl::ReaderMutexLock l(&mu_);
    auto it = series_.find(key);
    if (it != series_.end()) return it->second.metric.get();
  }
  RETURN_IF_ERROR(CheckValues(desc_, values));
  if (std::all_of(values.begin(), values.end(),
                  [](absl::string_view v) { return v == kOverflowLabelValue; }) &&
      !values.empty()) {
    return &Overflow();
  }
  absl::MutexLock l(&mu_);
  auto it = series_.find(key);
  if (it != series_.end()) return it->second.metric.get();
  if (static_cast<int>(series_.size()) >= desc_.max_series) {
    return absl::ResourceExhaustedError(
        absl::StrCat(desc_.name, ": already ", series_.size(),
                     " label sets (max_series); more are counted under ", kOverflowLabelValue));
  }
  Series& s = series_[key];
  for (absl::string_view v : values) s.values.emplace_back(v);
  s.metric = NewMetric();
  return s.metric.get();
}

template <typename T>
int Family<T>::series_count() const {
  absl::ReaderMutexLock l(&mu_);
  return static_cast<int>(series_.size());
}

template <typename T>
void Family<T>::AppendText(std::string* out) const {
  std::vector<const Series*> sorted;
  {
    absl::ReaderMutexLock l(&mu_);
    sorted.reserve(series_.size() + 1);
    for (const auto& [key, s] : series_) sorted.push_back(&s);
  }
  if (overflow_used_.load(std::memory_order_relaxed)) sorted.push_back(overflow_.get());
  if (sorted.empty()) return;
  std::sort(sorted.begin(), sorted.end(),
            [](const Series* a, const Series* b) { return a->values < b->values; });
  AppendHeader(out, desc_, type());
  for (const Series* s : sorted) {
    if constexpr (std::is_same_v<T, Histogram>) {
      AppendHistogram(out, desc_, s->values, s->metric->Collect());
    } else {
      AppendSample(out, desc_, s->values, s->metric->Value());
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- Callback families ----

namespace {

class CallbackFamily final : public Collector {
 public:
  CallbackFamily(MetricDesc desc, MetricType type, std::function<std::vector<Sample>()> fn,
                 Merge merge)
      : desc_(std::move(desc)), type_(type), fn_(std::move(fn)), merge_(merge) {}

  const MetricDesc& desc() const override { return desc_; }
  MetricType type() const override { return type_; }

  void AppendText(std::string* out) const override {
    std::vector<Sample> samples = fn_();
    // Valid samples by label values (sorted, duplicates merged), the rest into `overflow`.
    std::map<std::vector<std::string>, double> series;
    std::optional<double> overflow;
    auto merge_into = [this](std::optional<double>& into, double v) {
      if (!into) {
        into = v;
      } else if (merge_ == Merge::kSum) {
        *into += v;
      } else {
        *into = std::max(*into, v);
      }
    };
    for (Sample& s : samples) {
      std::vector<absl::string_view> views(s.labels.begin(), s.labels.end());
      if (!CheckValues(desc_, views).ok()) {
        merge_into(overflow, s.value);
        continue;
      }
      auto [it, inserted] = series.emplace(std::move(s.labels), s.value);
      if (!inserted) {
        std::optional<double> v = it->second;
        merge_into(v, s.value);
        it->second = *v;
      }
    }
    while (static_cast<int>(series.size()) > desc_.max_series) {
      auto last = std::prev(series.end());
      merge_into(overflow, last->second);
      series.erase(last);
    }
    if (overflow) {
      std::vector<std::string> key = OverflowValues(desc_.labels.size());
      auto [it, inserted] = series.emplace(std::move(key), *overflow);
      if (!inserted) {
        std::optional<double> v = it->second;
        merge_into(v, *overflow);
        it->second = *v;
      }
    }
    if (series.empty()) return;
    AppendHeader(out, desc_, type_);
    for (const auto& [values, value] : series) AppendSample(out, desc_, values, value);
  }

 private:
  const MetricDesc desc_;
  const MetricType type_;
  const std::function<std::vector<Sample>()> fn_;
  const Merge merge_;
};

std::function<std::vector<Sample>()> Unlabeled(std::function<double()> fn) {
  return [fn = std::move(fn)] { return std::vector<Sample>{{{}, fn()}}; };
}

}  // namespace

// ---- Registry ----

Registry::Registry() = default;
Registry::~Registry() = default;

absl::Status Registry::Add(std::unique_ptr<Collector> collector) {
  absl::MutexLock l(&mu_);
  const std::string& name = collector->desc().name;
  if (collectors_.count(name) > 0) {
    return absl::AlreadyExistsError(absl::StrCat("metric ", name, " is already registered"));
  }
  collectors_.emplace(name, std::move(collector));
  return absl::OkStatus();
}

absl::StatusOr<Family<Counter>*> Registry::AddCounter(MetricDesc desc) {
  RETURN_IF_ERROR(ValidateDesc(desc, MetricType::kCounter));
  auto family = std::unique_ptr<Family<Counter>>(new Family<Counter>(std::move(desc), {}));
  Family<Counter>* f = family.get();
  RETURN_IF_ERROR(Add(std::move(family)));
  if (f->desc().labels.empty()) f->WithLabels();  // an unlabeled metric shows from the start
  return f;
}

absl::StatusOr<Family<Gauge>*> Registry::AddGauge(MetricDesc desc) {
  RETURN_IF_ERROR(ValidateDesc(desc, MetricType::kGauge));
  auto family = std::unique_ptr<Family<Gauge>>(new Family<Gauge>(std::move(desc), {}));
  Family<Gauge>* f = family.get();
  RETURN_IF_ERROR(Add(std::move(family)));
  if (f->desc().labels.empty()) f->WithLabels();
  return f;
}

absl::StatusOr<Family<Histogram>*> Registry::AddHistogram(MetricDesc desc,
                                                          std::vector<double> bounds) {
  RETURN_IF_ERROR(ValidateDesc(desc, MetricType::kHistogram));
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(desc.name, ": bucket bounds must be finite (+Inf is implied)"));
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      return absl::InvalidArgumentError(
          absl::StrCat(desc.name, ": bucket bounds must be strictly increasing"));
    }
  }
  auto family =
      std::unique_ptr<Family<Histogram>>(new Family<Histogram>(std::move(desc), std::move(bounds)));
  Family<Histogram>* f = family.get();
  RETURN_IF_ERROR(Add(std::move(family)));
  if (f->desc().labels.empty()) f->WithLabels();
  return f;
}

absl::Status Registry::AddGaugeCallback(MetricDesc desc, std::function<std::vector<Sample>()> fn,
                                        Merge merge) {
  RETURN_IF_ERROR(ValidateDesc(desc, MetricType::kGauge));
  return Add(
      std::make_unique<CallbackFamily>(std::move(desc), MetricType::kGauge, std::move(fn), merge));
}

absl::Status Registry::AddCounterCallback(MetricDesc desc,
                                          std::function<std::vector<Sample>()> fn) {
  RETURN_IF_ERROR(ValidateDesc(desc, MetricType::kCounter));
  return Add(std::make_unique<CallbackFamily>(std::move(desc), MetricType::kCounter, std::move(fn),
                                              Merge::kSum));
}

absl::Status Registry::AddGaugeCallback(MetricDesc desc, std::function<double()> fn) {
  return AddGaugeCallback(std::move(desc), Unlabeled(std::move(fn)), Merge::kSum);
}

absl::Status Registry::AddCounterCallback(MetricDesc desc, std::function<double()> fn) {
  return AddCounterCallback(std::move(desc), Unlabeled(std::move(fn)));
}

std::string Registry::TextExposition() const {
  std::vector<const Collector*> collectors;
  {
    absl::ReaderMutexLock l(&mu_);
    collectors.reserve(collectors_.size());
    for (const auto& [name, c] : collectors_) collectors.push_back(c.get());
  }
  // Outside the lock: callbacks may take their components' locks, and those components may be
  // registering metrics.
  std::string out;
  for (const Collector* c : collectors) c->AppendText(&out);
  return out;
}

}  // namespace farm::common::metrics
