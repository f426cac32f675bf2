// ProgressPrinter: shows a build's farm.v1.BuildEvent stream the way BuildKit does.
//
//   plain  "#3 [build 2/4] RUN make" / "#3 0.512 compiling..." / "#3 DONE 1.2s" / "#2 CACHED"
//   tty    "[+] Building 3.4s (6/9)" and one line per step, live output of running steps
//          under them (the last lines), collapsed once a step succeeds, redrawn in place
//   quiet  nothing but the error block
// On failure every mode ends with BuildKit's error block: the failed step's last output lines,
// the Dockerfile lines around it with ">>>" at the failing one, and "ERROR: ...".
//
// The same printer serves `farm build` (events produced in process) and `farm submit`
// (events streamed from a scheduler).
//
//   auto p = cli::ProgressPrinter::Create(cli::ProgressMode::kAuto, 2, dockerfile_text);
//   p->OnEvent(event);   // from any thread
//   p->Finish();
#ifndef FARM_CLI_PROGRESS_H_
#define FARM_CLI_PROGRESS_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "farm/v1/build.pb.h"

namespace farm::cli {

enum class ProgressMode { kAuto, kTty, kPlain, kQuiet };

// "auto" | "tty" | "plain" | "quiet" (and "rawjson" is not offered).
absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view text);

class ProgressPrinter {
 public:
  // `fd` is where output goes (2 normally). kAuto picks tty when `fd` is a terminal and TERM
  // is not "dumb", else plain. `dockerfile_text` (may be empty) is used for the error block.
  static std::unique_ptr<ProgressPrinter> Create(ProgressMode mode, int fd,
                                                 std::string dockerfile_text,
                                                 std::string dockerfile_name = "Dockerfile");
  ~ProgressPrinter();

  // Thread-safe.
  void OnEvent(const farm::v1::BuildEvent& event);
  // Stops redrawing and prints the final state (and the error block after a failure).
  // Idempotent.
  void Finish();

  ProgressMode mode() const { return mode_; }

  // Starts every line written with `prefix` (farm bake: "[api] " before each target's lines
  // in plain mode). Call before the first event.
  void SetLinePrefix(std::string prefix) { prefix_ = std::move(prefix); }

 private:
  struct Vertex {
    int id = 0;
    std::string name;
    farm::v1::VertexUpdate::State state = farm::v1::VertexUpdate::STARTED;
    int64_t started_micros = 0;
    int64_t duration_micros = 0;
    std::vector<std::string> lines;  // recent output (tty keeps the last few)
    farm::v1::VertexUpdate last;
    size_t order = 0;
  };

  ProgressPrinter(ProgressMode mode, int fd, std::string dockerfile_text,
                  std::string dockerfile_name);
  void Write(const std::string& s);
  void PlainEvent(const farm::v1::BuildEvent& e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Redraw(bool final) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string ErrorBlock() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Ticker();

  const ProgressMode mode_;
  const int fd_;
  const std::string dockerfile_text_;
  const std::string dockerfile_name_;
  std::string prefix_;
  bool at_line_start_ = true;  // Write's position (for prefix_); Write runs under mu_ or alone
  absl::Mutex mu_;
  std::map<int, Vertex> vertices_ ABSL_GUARDED_BY(mu_);
  int last_plain_vertex_ ABSL_GUARDED_BY(mu_) = -1;
  size_t drawn_lines_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t start_micros_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string outcome_error_ ABSL_GUARDED_BY(mu_);
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> warnings_ ABSL_GUARDED_BY(mu_);
  std::thread ticker_;
};

// Formats seconds the way BuildKit does in plain mode ("0.0s", "12.3s").
std::string FormatDuration(int64_t micros);

}  // namespace farm::cli

#endif  // FARM_CLI_PROGRESS_H_
