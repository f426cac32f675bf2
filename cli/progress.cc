#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace farm::cli {

namespace {

constexpr size_t kTtyLogLines = 6;
constexpr size_t kKeepLines = 200;

int64_t NowMicros() { return absl::ToUnixMicros(absl::Now()); }

int TerminalWidth(int fd) {
  struct winsize ws;
  if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 80;
}

std::string Truncate(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  return s.substr(0, width > 3 ? width - 3 : width) + "...";
}

}  // namespace

std::string FormatDuration(int64_t micros) {
  return absl::StrFormat("%.1fs", static_cast<double>(micros) / 1e6);
}

absl::StatusOr<ProgressMode> ParseProgressMode(absl::string_view text) {
  if (text == "auto") return ProgressMode::kAuto;
  if (text == "tty") return ProgressMode::kTty;
  if (text == "plain") return ProgressMode::kPlain;
  if (text == "quiet") return ProgressMode::kQuiet;
  return absl::InvalidArgumentError(
      absl::StrCat("invalid progress mode \"", text, "\" (want auto, tty, plain or quiet)"));
}

std::unique_ptr<ProgressPrinter> ProgressPrinter::Create(ProgressMode mode, int fd,
                                                         std::string dockerfile_text,
                                                         std::string dockerfile_name) {
  if (mode == ProgressMode::kAuto) {
    const char* term = getenv("TERM");
    bool tty = isatty(fd) && term != nullptr && std::string(term) != "dumb";
    mode = tty ? ProgressMode::kTty : ProgressMode::kPlain;
  }
  return std::unique_ptr<ProgressPrinter>(
      new ProgressPrinter(mode, fd, std::move(dockerfile_text), std::move(dockerfile_name)));
}

ProgressPrinter::ProgressPrinter(ProgressMode mode, int fd, std::string dockerfile_text,
                                 std::string dockerfile_name)
    : mode_(mode),
      fd_(fd),
      dockerfile_text_(std::move(dockerfile_text)),
      dockerfile_name_(std::move(dockerfile_name)) {
  start_micros_ = NowMicros();
  if (mode_ == ProgressMode::kTty) ticker_ = std::thread([this] { Ticker(); });
}

ProgressPrinter::~ProgressPrinter() { Finish(); }

void ProgressPrinter::Write(const std::string& text) {
  std::string prefixed;
  if (!prefix_.empty()) {
    for (char c : text) {
      if (at_line_start_) prefixed += prefix_;
      prefixed += c;
      at_line_start_ = c == '\n';
    }
  }
  const std::string& s = prefix_.empty() ? text : prefixed;
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd_, s.data() + off, s.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // nowhere to report a broken progress stream
    }
    off += static_cast<size_t>(n);
  }
}

void ProgressPrinter::Ticker() {
  absl::MutexLock l(&mu_);
  while (!stop_) {
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(100));
    if (!stop_) Redraw(false);
  }
}

void ProgressPrinter::OnEvent(const farm::v1::BuildEvent& e) {
  absl::MutexLock l(&mu_);
  if (finished_) return;
  switch (e.kind_case()) {
    case farm::v1::BuildEvent::kVertex: {
      const farm::v1::VertexUpdate& u = e.vertex();
      Vertex& v = vertices_[u.id()];
      if (v.id == 0) {
        v.id = u.id();
        v.order = vertices_.size();
        v.started_micros = e.time_unix_micros() ? e.time_unix_micros() : NowMicros();
      }
      if (!u.name().empty()) v.name = u.name();
      v.state = u.state();
      v.duration_micros = u.duration_micros();
      v.last = u;
      if (u.state() == farm::v1::VertexUpdate::FAILED) failed_ = true;
      break;
    }
    case farm::v1::BuildEvent::kLog: {
      Vertex& v = vertices_[e.log().id()];
      v.lines.push_back(e.log().data());
      if (v.lines.size() > kKeepLines) v.lines.erase(v.lines.begin());
      break;
    }
    case farm::v1::BuildEvent::kWarning:
      warnings_.push_back(e.warning());
      break;
    case farm::v1::BuildEvent::kOutcome:
      if (!e.outcome().ok()) {
        failed_ = true;
        outcome_error_ = e.outcome().error();
      }
      break;
    default:
      break;
  }
  if (mode_ == ProgressMode::kPlain) PlainEvent(e);
}

void ProgressPrinter::PlainEvent(const farm::v1::BuildEvent& e) {
  std::string out;
  auto header = [&](int id) {
    if (last_plain_vertex_ != id) {
      if (last_plain_vertex_ != -1) out += "\n";
      last_plain_vertex_ = id;
    }
  };
  switch (e.kind_case()) {
    case farm::v1::BuildEvent::kVertex: {
      const farm::v1::VertexUpdate& u = e.vertex();
      const Vertex& v = vertices_[u.id()];
      header(u.id());
      switch (u.state()) {
        case farm::v1::VertexUpdate::STARTED:
          absl::StrAppend(&out, "#", u.id(), " ", v.name, "\n");
          break;
        case farm::v1::VertexUpdate::CACHED:
          absl::StrAppend(&out, "#", u.id(), " ", v.name, "\n#", u.id(), " CACHED\n");
          break;
        case farm::v1::VertexUpdate::DONE:
          absl::StrAppend(&out, "#", u.id(), " DONE ", FormatDuration(u.duration_micros()), "\n");
          break;
        case farm::v1::VertexUpdate::FAILED:
          absl::StrAppend(&out, "#", u.id(), " ERROR: ", u.error(), "\n");
          break;
        case farm::v1::VertexUpdate::CANCELED:
          absl::StrAppend(&out, "#", u.id(), " CANCELED\n");
          break;
        default:
          break;
      }
      break;
    }
    case farm::v1::BuildEvent::kLog:
      header(e.log().id());
      absl::StrAppend(&out, "#", e.log().id(), " ",
                      absl::StrFormat("%.3f", static_cast<double>(e.log().offset_micros()) / 1e6),
                      " ", e.log().data(), "\n");
      break;
    case farm::v1::BuildEvent::kWarning:
      absl::StrAppend(&out, "WARNING: ", e.warning(), "\n");
      break;
    default:
      break;
  }
  if (!out.empty()) Write(out);
}

void ProgressPrinter::Redraw(bool final) {
  if (mode_ != ProgressMode::kTty) return;
  int width = TerminalWidth(fd_);
  int64_t now = NowMicros();
  std::vector<const Vertex*> order;
  for (const auto& [id, v] : vertices_) order.push_back(&v);
  std::sort(order.begin(), order.end(),
            [](const Vertex* a, const Vertex* b) { return a->order < b->order; });
  size_t done = 0;
  for (const Vertex* v : order) {
    if (v->state != farm::v1::VertexUpdate::STARTED) ++done;
  }
  std::vector<std::string> lines;
  lines.push_back(absl::StrFormat(
      "[+] Building %.1fs (%d/%d)%s", static_cast<double>(now - start_micros_) / 1e6, done,
      order.size(), final ? (failed_ ? " FINISHED with errors" : " FINISHED") : ""));
  for (const Vertex* v : order) {
    std::string prefix = " => ";
    std::string name = v->name;
    std::string right;
    switch (v->state) {
      case farm::v1::VertexUpdate::CACHED:
        name = "CACHED " + name;
        right = "0.0s";
        break;
      case farm::v1::VertexUpdate::STARTED:
        right = FormatDuration(now - v->started_micros);
        break;
      case farm::v1::VertexUpdate::FAILED:
        prefix = " => ERROR ";
        right = FormatDuration(v->duration_micros);
        break;
      case farm::v1::VertexUpdate::CANCELED:
        prefix = " => CANCELED ";
        right = FormatDuration(v->duration_micros);
        break;
      default:
        right = FormatDuration(v->duration_micros);
    }
    std::string left = Truncate(prefix + name, static_cast<size_t>(width) - right.size() - 2);
    size_t pad = static_cast<size_t>(width) - left.size() - right.size() - 1;
    lines.push_back(left + std::string(pad, ' ') + right);
    bool show_logs =
        v->state == farm::v1::VertexUpdate::STARTED || v->state == farm::v1::VertexUpdate::FAILED;
    if (show_logs && !v->lines.empty()) {
      size_t from = v->lines.size() > kTtyLogLines ? v->lines.size() - kTtyLogLines : 0;
      for (size_t i = from; i < v->lines.size(); ++i) {
        lines.push_back("\033[2m" + Truncate(" => => # " + v->lines[i], width - 1) + "\033[0m");
      }
    }
  }
  std::string out;
  if (drawn_lines_ > 0) absl::StrAppend(&out, "\033[", drawn_lines_, "A");
  out += "\r\033[J";
  for (const std::string& l : lines) absl::StrAppend(&out, l, "\n");
  drawn_lines_ = lines.size();
  Write(out);
}

std::string ProgressPrinter::ErrorBlock() {
  const Vertex* failed = nullptr;
  for (const auto& [id, v] : vertices_) {
    if (v.state == farm::v1::VertexUpdate::FAILED) {
      failed = &v;
      break;
    }
  }
  std::string out;
  std::string error = outcome_error_;
  if (failed != nullptr) {
    const farm::v1::VertexUpdate& u = failed->last;
    std::vector<std::string> tail(u.output_tail().begin(), u.output_tail().end());
    if (tail.empty()) {
      size_t from = failed->lines.size() > 20 ? failed->lines.size() - 20 : 0;
      tail.assign(failed->lines.begin() + from, failed->lines.end());
    }
    absl::StrAppend(&out, "------\n > ", failed->name, ":\n");
    for (const std::string& l : tail) absl::StrAppend(&out, l, "\n");
    absl::StrAppend(&out, "------\n");
    if (u.line() > 0 && !dockerfile_text_.empty()) {
      std::vector<std::string> src = absl::StrSplit(dockerfile_text_, '\n');
      int first = std::max(1, u.line() - 2);
      int last = std::min(static_cast<int>(src.size()), std::max(u.line(), u.end_line()) + 2);
      absl::StrAppend(&out, u.dockerfile().empty() ? dockerfile_name_ : u.dockerfile(), ":",
                      u.line(), u.end_line() > u.line() ? absl::StrCat("-", u.end_line()) : "",
                      "\n--------------------\n");
      for (int i = first; i <= last; ++i) {
        bool here = i >= u.line() && i <= std::max(u.line(), u.end_line());
        absl::StrAppend(&out, absl::StrFormat("%4d | %s %s\n", i, here ? ">>>" : "   ",
                                              src[static_cast<size_t>(i - 1)]));
      }
      absl::StrAppend(&out, "--------------------\n");
    }
    if (error.empty()) error = u.error();
  }
  absl::StrAppend(&out, "ERROR: ", error.empty() ? "the build failed" : error, "\n");
  return out;
}

void ProgressPrinter::Finish() {
  {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    stop_ = true;
  }
  if (ticker_.joinable()) ticker_.join();
  absl::MutexLock l(&mu_);
  finished_ = true;
  if (mode_ == ProgressMode::kTty) Redraw(true);
  std::string tail;
  if (mode_ != ProgressMode::kPlain) {
    for (const std::string& w : warnings_) absl::StrAppend(&tail, "WARNING: ", w, "\n");
  }
  if (failed_) absl::StrAppend(&tail, mode_ == ProgressMode::kQuiet ? "" : "\n", ErrorBlock());
  if (!tail.empty()) Write(tail);
}

}  // namespace farm::cli
