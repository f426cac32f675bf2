// The hot-path cost of metrics updates, single- and multi-threaded:
//   tools/bazel-locked run -c opt //common/metrics:metrics_benchmark
#include <benchmark/benchmark.h>

#include "common/metrics/metrics.h"

namespace farm::common::metrics {
namespace {

Registry& TheRegistry() {
  static Registry* r = new Registry();
  return *r;
}

Family<Counter>* Counters() {
  static Family<Counter>* f =
      *TheRegistry().AddCounter({"bench_events_total", "E.", {"method", "code"}});
  return f;
}

Family<Histogram>* Histograms() {
  static Family<Histogram>* f = *TheRegistry().AddHistogram(
      {"bench_latency_seconds", "L.", {"method"}}, DefaultLatencyBuckets());
  return f;
}

// A kept reference: what hot paths do.
void BM_CounterIncrement(benchmark::State& state) {
  Counter& c = Counters()->WithLabels({"/farm.v1.Scheduler/Submit", "OK"});
  for (auto _ : state) c.Increment();
}
BENCHMARK(BM_CounterIncrement)->ThreadRange(1, 4);

void BM_CounterIncrementByFraction(benchmark::State& state) {
  Counter& c = Counters()->WithLabels({"/farm.v1.Scheduler/Submit", "FRACTION"});
  for (auto _ : state) c.IncrementBy(0.5);
}
BENCHMARK(BM_CounterIncrementByFraction)->ThreadRange(1, 4);

// Looking the series up by label values every time.
void BM_CounterWithLabels(benchmark::State& state) {
  for (auto _ : state) Counters()->WithLabels({"/farm.v1.Scheduler/Submit", "OK"}).Increment();
}
BENCHMARK(BM_CounterWithLabels)->ThreadRange(1, 4);

void BM_HistogramObserve(benchmark::State& state) {
  Histogram& h = Histograms()->WithLabels({"/farm.v1.Scheduler/Submit"});
  double v = 0;
  for (auto _ : state) {
    h.Observe(v);
    v = v > 10 ? 0 : v + 0.013;
  }
}
BENCHMARK(BM_HistogramObserve)->ThreadRange(1, 4);

void BM_TextExposition(benchmark::State& state) {
  Registry r;
  auto f = *r.AddCounter({"bench_series_total", "S.", {"tenant", "outcome"}});
  for (int i = 0; i < 200; ++i) f->WithLabels({"tenant-" + std::to_string(i), "ok"}).Increment();
  auto h = *r.AddHistogram({"bench_exposition_seconds", "H.", {"method"}}, DefaultLatencyBuckets());
  for (int i = 0; i < 20; ++i) h->WithLabels({"/m" + std::to_string(i)}).Observe(0.1);
  for (auto _ : state) benchmark::DoNotOptimize(r.TextExposition());
}
BENCHMARK(BM_TextExposition);

}  // namespace
}  // namespace farm::common::metrics

BENCHMARK_MAIN();
