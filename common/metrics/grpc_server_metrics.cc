#include "common/metrics/grpc_server_metrics.h"

#include <google/protobuf/descriptor.h>
#include <grpcpp/support/interceptor.h>
#include <grpcpp/support/status.h>

#include <array>
#include <atomic>
#include <chrono>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace farm::common::metrics {

namespace {

constexpr int kCodes = 17;  // grpc::StatusCode OK (0) .. UNAUTHENTICATED (16)

constexpr absl::string_view kCodeNames[kCodes] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

// The series of one method label value. Counters are looked up on first use of each code and
// cached, so an RPC costs no map lookup or lock once its method has seen its code.
class MethodSeries {
 public:
  MethodSeries(std::string label, Family<Counter>* handled, Histogram* latency)
      : label_(std::move(label)), handled_(handled), latency_(latency) {
    for (auto& c : by_code_) c.store(nullptr, std::memory_order_relaxed);
  }

  void Record(int code, std::chrono::steady_clock::duration elapsed) {
    if (code < 0 || code >= kCodes) code = grpc::StatusCode::UNKNOWN;
    Counter* c = by_code_[code].load(std::memory_order_acquire);
    if (c == nullptr) {
      c = &handled_->WithLabels({label_, kCodeNames[code]});
      by_code_[code].store(c, std::memory_order_release);
    }
    c->Increment();
    latency_->Observe(std::chrono::duration<double>(elapsed).count());
  }

 private:
  const std::string label_;
  Family<Counter>* const handled_;
  Histogram* const latency_;
  std::array<std::atomic<Counter*>, kCodes> by_code_;
};

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(MethodSeries* series)
      : series_(series), start_(std::chrono::steady_clock::now()) {}

  // A call that ends without a status passing through (its client went away first) still
  // counts, as CANCELLED.
  ~MetricsInterceptor() override {
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(int code) {
    if (recorded_) return;
    recorded_ = true;
    series_->Record(code, std::chrono::steady_clock::now() - start_);
  }

  MethodSeries* const series_;
  const std::chrono::steady_clock::time_point start_;
  bool recorded_ = false;  // hooks of one call never run concurrently
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  MetricsInterceptorFactory(absl::flat_hash_map<std::string, std::unique_ptr<MethodSeries>> known,
                            std::unique_ptr<MethodSeries> unknown)
      : known_(std::move(known)), unknown_(std::move(unknown)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    auto it = info->method() ? known_.find(absl::string_view(info->method())) : known_.end();
    return new MetricsInterceptor(it != known_.end() ? it->second.get() : unknown_.get());
  }

 private:
  // Immutable after construction: lookups take no lock.
  const absl::flat_hash_map<std::string, std::unique_ptr<MethodSeries>> known_;
  const std::unique_ptr<MethodSeries> unknown_;
};

// The methods of the default health service, which has upb descriptors only.
constexpr absl::string_view kHealthService = "grpc.health.v1.Health";
constexpr absl::string_view kHealthMethods[] = {"Check", "Watch"};

}  // namespace

absl::string_view GrpcServerMetrics::CodeName(int code) {
  return code >= 0 && code < kCodes ? kCodeNames[code] : "UNKNOWN";
}

absl::StatusOr<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
GrpcServerMetrics::Create(Registry* registry, const Options& options) {
  std::vector<std::string> methods;
  for (const std::string& service : options.services) {
    const google::protobuf::ServiceDescriptor* d =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    if (d != nullptr) {
      for (int i = 0; i < d->method_count(); ++i) {
        methods.push_back(absl::StrCat("/", service, "/", d->method(i)->name()));
      }
    } else if (service == kHealthService) {
      for (absl::string_view m : kHealthMethods)
        methods.push_back(absl::StrCat("/", service, "/", m));
    } else {
      return absl::NotFoundError(
          absl::StrCat("gRPC service ", service,
                       " is not in the generated descriptor pool (is its code linked?)"));
    }
  }

  // Every label set is known: room for all of them, so nothing lands in the overflow series.
  MetricDesc handled_desc{"farm_grpc_server_handled_total",
                          "gRPC calls completed by the server, by method and status code.",
                          {"method", "code"}};
  handled_desc.max_series = static_cast<int>(methods.size() + 1) * kCodes;
  MetricDesc latency_desc{"farm_grpc_server_handling_seconds",
                          "Time from the start of a gRPC call to its status, by method.",
                          {"method"}};
  latency_desc.max_series = static_cast<int>(methods.size() + 1);
  // The histogram first: its buckets are what a caller can get wrong, and a failure then
  // leaves nothing registered.
  ASSIGN_OR_RETURN(Family<Histogram> * latency,
                   registry->AddHistogram(std::move(latency_desc), options.buckets));
  ASSIGN_OR_RETURN(Family<Counter> * handled, registry->AddCounter(std::move(handled_desc)));

  absl::flat_hash_map<std::string, std::unique_ptr<MethodSeries>> known;
  for (const std::string& m : methods) {
    // The histogram series exists from the start, so every method shows with a zero count.
    known[m] = std::make_unique<MethodSeries>(m, handled, &latency->WithLabels({m}));
  }
  auto unknown = std::make_unique<MethodSeries>(std::string(kUnknownMethod), handled,
                                                &latency->WithLabels({kUnknownMethod}));
  return std::make_unique<MetricsInterceptorFactory>(std::move(known), std::move(unknown));
}

absl::Status GrpcServerMetrics::Install(grpc::ServerBuilder& builder, Registry* registry,
                                        const Options& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> factory,
                   Create(registry, options));
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
  creators.push_back(std::move(factory));
  builder.experimental().SetInterceptorCreators(std::move(creators));
  return absl::OkStatus();
}

}  // namespace farm::common::metrics
