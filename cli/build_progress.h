// The progress of a build as `farm build` and `farm submit` show it: events go to a
// ProgressPrinter once there is one (before that, only a fatal error is printed, as a line).
#ifndef FARM_CLI_BUILD_PROGRESS_H_
#define FARM_CLI_BUILD_PROGRESS_H_

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "cli/progress.h"
#include "farm/v1/build.pb.h"
#include "scheduler/engine/events.h"

namespace farm::cli {

class BuildProgress {
 public:
  BuildProgress() : events_([this](const farm::v1::BuildEvent& e) { Event(e); }) {}

  void Start(std::unique_ptr<cli::ProgressPrinter> printer) { printer_ = std::move(printer); }
  void Finish() {
    if (printer_) printer_->Finish();
  }

  // Shows `s` as the build's failed outcome; returns the exit status 1.
  int Fatal(const absl::Status& s) {
    if (printer_) {
      farm::v1::BuildOutcome o;
      o.set_ok(false);
      o.set_error(std::string(s.message()));
      events_.Outcome(o);
      printer_->Finish();
    } else {
      std::cerr << "ERROR: " << s.message() << "\n";
    }
    return 1;
  }

  // Shows an event (the build's, or one of the client's own made through events()).
  void Event(const farm::v1::BuildEvent& e) {
    if (printer_) printer_->OnEvent(e);
  }
  // For the client's own vertices and warnings (e.g. `farm submit` sending the context).
  scheduler::engine::EventWriter& events() { return events_; }

 private:
  std::unique_ptr<cli::ProgressPrinter> printer_;
  scheduler::engine::EventWriter events_;
};

}  // namespace farm::cli

#endif  // FARM_CLI_BUILD_PROGRESS_H_
