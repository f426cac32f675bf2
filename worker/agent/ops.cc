#include "worker/agent/ops.h"

#include <algorithm>
#include <utility>

#include "common/status_macros.h"

namespace farm::worker::agent {

namespace metrics = common::metrics;

absl::StatusOr<std::unique_ptr<WorkerMetrics>> WorkerMetrics::Create(metrics::Registry* r) {
  std::unique_ptr<WorkerMetrics> m(new WorkerMetrics(r));
  ASSIGN_OR_RETURN(m->steps_, r->AddCounter({"farm_worker_steps_total",
                                             "Steps this worker ran, by operation (run, copy, "
                                             "mkdir) and outcome (succeeded, failed, canceled, "
                                             "error).",
                                             {"op", "outcome"}}));
  // 10 ms to about 2.9 h.
  ASSIGN_OR_RETURN(m->phases_,
                   r->AddHistogram({"farm_worker_step_phase_seconds",
                                    "Wall time of each phase of the steps this worker ran: "
                                    "parents (fetch and unpack missing parent layers), run, "
                                    "make_layer (archive and compress), upload.",
                                    {"phase"}},
                                   metrics::ExponentialBuckets(0.01, 2, 20)));
  return m;
}

std::string WorkerMetrics::OpLabel(const farm::v1::StepRequest& request) {
  switch (request.op_case()) {
    case farm::v1::StepRequest::kRun:
      return "run";
    case farm::v1::StepRequest::kCopy:
      return "copy";
    case farm::v1::StepRequest::kMkdir:
      return "mkdir";
    default:
      return "none";
  }
}

std::string WorkerMetrics::OutcomeLabel(const absl::StatusOr<farm::v1::StepResult>& result) {
  if (result.ok()) {
    return result->exit_code() == 0 && !result->timed_out() ? "succeeded" : "failed";
  }
  return absl::IsCancelled(result.status()) ? "canceled" : "error";
}

std::function<void(const farm::v1::StepRequest&, const absl::StatusOr<farm::v1::StepResult>&)>
WorkerMetrics::StepObserver() {
  return [this](const farm::v1::StepRequest& request,
                const absl::StatusOr<farm::v1::StepResult>& result) {
    steps_->WithLabels({OpLabel(request), OutcomeLabel(result)}).Increment();
    if (!result.ok()) return;
    auto seconds = [](int64_t micros) { return static_cast<double>(micros) / 1e6; };
    phases_->WithLabels({"parents"}).Observe(seconds(result->parents_micros()));
    if (request.op_case() == farm::v1::StepRequest::kRun) {
      phases_->WithLabels({"run"}).Observe(seconds(result->run_micros()));
    }
    if (result->has_layer()) {
      phases_->WithLabels({"make_layer"})
          .Observe(seconds(std::max<int64_t>(0, result->layer_micros() - result->upload_micros())));
      phases_->WithLabels({"upload"}).Observe(seconds(result->upload_micros()));
    }
  };
}

absl::Status WorkerMetrics::ObserveAgent(Agent* agent, int slots) {
  metrics::Registry* r = registry_;
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_worker_connected", "1 while connected to farm-scheduler (welcomed), else 0."},
      [agent] { return agent->GetStatus().state == Agent::State::kConnected ? 1.0 : 0.0; }));
  RETURN_IF_ERROR(r->AddGaugeCallback({"farm_worker_slots", "Steps this worker runs at once."},
                                      [slots] { return static_cast<double>(slots); }));
  RETURN_IF_ERROR(r->AddGaugeCallback({"farm_worker_slots_busy", "Steps running now."},
                                      [agent] { return 1.0 * agent->GetStatus().running; }));
  RETURN_IF_ERROR(r->AddGaugeCallback(
      {"farm_worker_queued_tasks", "Tasks accepted and waiting for a free slot."},
      [agent] { return 1.0 * agent->GetStatus().queued; }));
  RETURN_IF_ERROR(r->AddCounterCallback(
      {"farm_worker_sessions_total", "Sessions with farm-scheduler (Welcomes received)."},
      [agent] { return 1.0 * agent->GetStatus().sessions; }));
  RETURN_IF_ERROR(
      r->AddCounterCallback({"farm_worker_log_lines_dropped_total",
                             "Step output lines dropped while disconnected (the buffer was full)."},
                            [agent] { return 1.0 * agent->GetStatus().log_lines_dropped; }));
  return absl::OkStatus();
}

void AddSchedulerReadiness(common::http::ReadinessChecks* ready, Agent* agent) {
  ready->Add("scheduler", [agent] {
    return agent->GetStatus().state == Agent::State::kConnected
               ? absl::OkStatus()
               : absl::UnavailableError("not connected to farm-scheduler");
  });
}

}  // namespace farm::worker::agent
