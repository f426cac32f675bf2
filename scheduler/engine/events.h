// The progress events of a build, made in one place. A build reports BuildKit's model: vertices
// (a Dockerfile step or an internal phase such as "[internal] load build definition") that
// start, finish, are cached or fail; log lines attached to a vertex; warnings; and one outcome.
// The engine, the pipeline and `farm submit`'s client-side upload vertex all make their events
// through an EventWriter, so every event carries the same fields the same way.
//
//   engine::EventWriter events(sink);                 // sink: farm.v1.BuildEvent consumer
//   engine::EventWriter::Span def = events.Start(1, "[internal] load build definition from
//   Dockerfile"); events.Log(1, "3 stages"); def.Done();                                       //
//   DONE with the elapsed time events.Warn("FROM --platform ... is ignored");
#ifndef FARM_SCHEDULER_ENGINE_EVENTS_H_
#define FARM_SCHEDULER_ENGINE_EVENTS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "farm/v1/build.pb.h"

namespace farm::scheduler::engine {

// Receives a build's progress events. The writer never calls it from two threads at once.
using EventSink = std::function<void(const farm::v1::BuildEvent&)>;

int64_t NowMicros();

// Thread-safe: events may be written from several threads (independent stages); the sink sees
// them one at a time, each stamped with the time it was written (unless already stamped).
class EventWriter {
 public:
  explicit EventWriter(EventSink sink) : sink_(std::move(sink)) {}

  void Emit(farm::v1::BuildEvent e);

  // A vertex's state change. `key` is the step's cache key (steps only: it is how readers
  // count steps); `error` goes with FAILED/CANCELED.
  void Vertex(int id, absl::string_view name, farm::v1::VertexUpdate::State state,
              int64_t duration_micros = 0, absl::string_view key = "",
              absl::string_view error = "");
  // A failed vertex with where it failed (the Dockerfile's lines) and the output's last lines.
  void Emit(farm::v1::VertexUpdate update);
  void Log(int id, absl::string_view line, bool is_stderr = false, int64_t offset_micros = 0);
  void Warn(absl::string_view warning);
  void Outcome(const farm::v1::BuildOutcome& outcome);

  // A vertex with a clock: Start emits STARTED; Done/Fail emit DONE/FAILED with the elapsed
  // time. A Span ended neither way ends nothing (the caller reports through another path).
  class Span {
   public:
    Span(EventWriter* w, int id) : w_(w), id_(id), start_(NowMicros()) {}
    int id() const { return id_; }
    void Log(absl::string_view line) { w_->Log(id_, line); }
    void Done() { w_->Vertex(id_, "", farm::v1::VertexUpdate::DONE, NowMicros() - start_); }
    void Fail(absl::string_view error) {
      w_->Vertex(id_, "", farm::v1::VertexUpdate::FAILED, NowMicros() - start_, "", error);
    }

   private:
    EventWriter* w_;
    int id_;
    int64_t start_;
  };
  Span Start(int id, absl::string_view name);

 private:
  EventSink sink_;
  absl::Mutex mu_;
};

}  // namespace farm::scheduler::engine

#endif  // FARM_SCHEDULER_ENGINE_EVENTS_H_
