#include "scheduler/engine/events.h"

#include "absl/time/clock.h"

namespace farm::scheduler::engine {

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

void EventWriter::Emit(farm::v1::BuildEvent e) {
  if (!sink_) return;
  if (e.time_unix_micros() == 0) e.set_time_unix_micros(NowMicros());
  absl::MutexLock l(&mu_);
  sink_(e);
}

void EventWriter::Vertex(int id, absl::string_view name, farm::v1::VertexUpdate::State state,
                         int64_t duration_micros, absl::string_view key, absl::string_view error) {
  farm::v1::VertexUpdate u;
  u.set_id(id);
  u.set_name(std::string(name));
  u.set_state(state);
  u.set_duration_micros(duration_micros);
  u.set_key(std::string(key));
  u.set_error(std::string(error));
  Emit(std::move(u));
}

void EventWriter::Emit(farm::v1::VertexUpdate update) {
  farm::v1::BuildEvent e;
  *e.mutable_vertex() = std::move(update);
  Emit(std::move(e));
}

void EventWriter::Log(int id, absl::string_view line, bool is_stderr, int64_t offset_micros) {
  farm::v1::BuildEvent e;
  e.mutable_log()->set_id(id);
  e.mutable_log()->set_stderr(is_stderr);
  e.mutable_log()->set_data(std::string(line));
  e.mutable_log()->set_offset_micros(offset_micros);
  Emit(std::move(e));
}

void EventWriter::Warn(absl::string_view warning) {
  farm::v1::BuildEvent e;
  e.set_warning(std::string(warning));
  Emit(std::move(e));
}

void EventWriter::Outcome(const farm::v1::BuildOutcome& outcome) {
  farm::v1::BuildEvent e;
  *e.mutable_outcome() = outcome;
  Emit(std::move(e));
}

EventWriter::Span EventWriter::Start(int id, absl::string_view name) {
  Vertex(id, name, farm::v1::VertexUpdate::STARTED);
  return Span(this, id);
}

}  // namespace farm::scheduler::engine
