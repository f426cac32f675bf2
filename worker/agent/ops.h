// farm-worker's operational side (issue 16): its Prometheus metrics and its readiness
// (connected to farm-scheduler). Step phase durations are pushed once per step from the
// StepResult the executor fills (Agent::Options::on_step_done); the rest is read from
// Agent::GetStatus() at scrape time.
//
//   metrics::Registry registry;
//   ASSIGN_OR_RETURN(auto m, WorkerMetrics::Create(&registry));
//   agent_options.on_step_done = m->StepObserver();
//   ASSIGN_OR_RETURN(auto agent, Agent::Create(std::move(agent_options)));
//   RETURN_IF_ERROR(m->ObserveAgent(agent.get(), slots));
//   http::ReadinessChecks ready;
//   AddSchedulerReadiness(&ready, agent.get());
#ifndef FARM_WORKER_AGENT_OPS_H_
#define FARM_WORKER_AGENT_OPS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/http/observability.h"
#include "common/metrics/metrics.h"
#include "farm/v1/step.pb.h"
#include "worker/agent/agent.h"

namespace farm::worker::agent {

class WorkerMetrics {
 public:
  // Registers farm_worker_steps_total and farm_worker_step_phase_seconds. `registry` must
  // outlive the returned object.
  static absl::StatusOr<std::unique_ptr<WorkerMetrics>> Create(common::metrics::Registry* r);

  // For Agent::Options::on_step_done: counts the step by operation and outcome and observes
  // its phases: "parents" (fetch and unpack the parent layers it lacked; one streamed pass),
  // "run" (the command, RUN only), "make_layer" (archive and compress the changes), "upload"
  // (store the layer in farm-cache). A phase the step did not go through is not observed.
  std::function<void(const farm::v1::StepRequest&, const absl::StatusOr<farm::v1::StepResult>&)>
  StepObserver();

  // Registers the families read from `agent` at every scrape (connection state, slots, tasks).
  // `agent` must outlive the scrapes (stop the HTTP server first).
  absl::Status ObserveAgent(Agent* agent, int slots);

  // The label values of a step: "run", "copy", "mkdir"; "succeeded", "failed" (the command
  // exited non-zero or timed out), "canceled", "error" (anything else).
  static std::string OpLabel(const farm::v1::StepRequest& request);
  static std::string OutcomeLabel(const absl::StatusOr<farm::v1::StepResult>& result);

 private:
  explicit WorkerMetrics(common::metrics::Registry* r) : registry_(r) {}
  common::metrics::Registry* const registry_;
  common::metrics::Family<common::metrics::Counter>* steps_ = nullptr;
  common::metrics::Family<common::metrics::Histogram>* phases_ = nullptr;
};

// Readiness "scheduler": the agent is connected to farm-scheduler (welcomed).
void AddSchedulerReadiness(common::http::ReadinessChecks* ready, Agent* agent);

}  // namespace farm::worker::agent

#endif  // FARM_WORKER_AGENT_OPS_H_
