// The progress of a build as `farm build` and `farm submit` show it: events go to a
// ProgressPrinter once there is one (before that, only a fatal error is printed, as a line).
#ifndef FARM_CLI_BUILD_PROGRESS_H_
#define FARM_CLI_BUILD_PROGRESS_H_

#include <iostream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "cli/progress.h"
#include "farm/v1/build.pb.h"

namespace farm::cli {

class BuildProgress {
 public:
  void Start(std::unique_ptr<cli::ProgressPrinter> printer) { printer_ = std::move(printer); }
  void Finish() {
    if (printer_) printer_->Finish();
  }

  // Shows `s` as the build's failed outcome; returns the exit status 1.
  int Fatal(const absl::Status& s) {
    if (printer_) {
      farm::v1::BuildEvent e;
      e.mutable_outcome()->set_ok(false);
      e.mutable_outcome()->set_error(std::string(s.message()));
      printer_->OnEvent(e);
      printer_->Finish();
    } else {
      std::cerr << "ERROR: " << s.message() << "\n";
    }
    return 1;
  }

  void Event(const farm::v1::BuildEvent& e) {
    if (printer_) printer_->OnEvent(e);
  }
  void Vertex(int id, const std::string& name, farm::v1::VertexUpdate::State state,
              int64_t micros = 0, const std::string& error = "") {
    farm::v1::BuildEvent e;
    e.set_time_unix_micros(absl::ToUnixMicros(absl::Now()));
    e.mutable_vertex()->set_id(id);
    e.mutable_vertex()->set_name(name);
    e.mutable_vertex()->set_state(state);
    e.mutable_vertex()->set_duration_micros(micros);
    e.mutable_vertex()->set_error(error);
    Event(e);
  }
  void Log(int id, const std::string& line) {
    farm::v1::BuildEvent e;
    e.mutable_log()->set_id(id);
    e.mutable_log()->set_data(line);
    Event(e);
  }
  void Warn(const std::string& warning) {
    farm::v1::BuildEvent e;
    e.set_warning(warning);
    Event(e);
  }

 private:
  std::unique_ptr<cli::ProgressPrinter> printer_;
};

}  // namespace farm::cli

#endif  // FARM_CLI_BUILD_PROGRESS_H_
