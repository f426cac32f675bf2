// The farm's client commands besides submit: farm workers, farm logs, farm cancel, and
// farm builds --scheduler (the scheduler's builds rather than this home's).
#include <algorithm>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/progress.h"
#include "cli/remote.h"
#include "common/flags.h"
#include "common/grpc_status.h"

namespace farm::cli {

namespace {

std::string Ago(int64_t unix_micros) {
  if (unix_micros == 0) return "-";
  int64_t s = absl::ToInt64Seconds(absl::Now() - absl::FromUnixMicros(unix_micros));
  if (s < 0) s = 0;
  if (s < 60) return absl::StrCat(s, "s ago");
  if (s < 3600) return absl::StrCat(s / 60, "m ago");
  if (s < 86400) return absl::StrCat(s / 3600, "h ago");
  return absl::StrCat(s / 86400, "d ago");
}

std::string StateName(farm::v1::BuildInfo::State s) {
  switch (s) {
    case farm::v1::BuildInfo::QUEUED:
      return "queued";
    case farm::v1::BuildInfo::RUNNING:
      return "running";
    case farm::v1::BuildInfo::SUCCEEDED:
      return "ok";
    case farm::v1::BuildInfo::FAILED:
      return "failed";
    case farm::v1::BuildInfo::CANCELED:
      return "canceled";
    default:
      return "?";
  }
}

// --scheduler and the security flags.
struct SchedulerFlags {
  std::string address;
  auth::ClientAuthOptions security;
};

absl::StatusOr<SchedulerConnection> Connect(const SchedulerFlags& f) {
  absl::StatusOr<std::string> address = SchedulerAddress(f.address);
  if (!address.ok()) return address.status();
  return ConnectScheduler(*address, f.security);
}

void SchedulerFlag(common::FlagSet& fs, SchedulerFlags* out) {
  fs.String("scheduler", 0, &out->address, "farm-scheduler address (default: $FARM_SCHEDULER)",
            "HOST:PORT");
  SecurityFlags(fs, &out->security);
}

}  // namespace

// "linux/amd64", or "linux/amd64 (+linux/arm64 emulated)" for a worker that also runs other
// platforms under QEMU.
std::string WorkerPlatforms(const farm::v1::WorkerInfo& w) {
  if (w.emulated_platforms().empty()) return w.platform();
  return absl::StrCat(w.platform(), " (+", absl::StrJoin(w.emulated_platforms(), ", +"),
                      " emulated)");
}

int RunWorkers(const Args& args) {
  common::FlagSet fs("farm workers [OPTIONS]", "List the workers known to a farm-scheduler.");
  SchedulerFlags scheduler;
  SchedulerFlag(fs, &scheduler);
  bool all = false;
  fs.Bool("all", 'a', &all, "Also show workers that are not connected");
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "workers", &positional, &exit_code)) return exit_code;
  if (!CheckArgs(positional, 0, 0, "workers", "farm workers [OPTIONS]")) return 2;
  absl::StatusOr<SchedulerConnection> conn = Connect(scheduler);
  if (!conn.ok()) return Fail(conn.status());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  farm::v1::ListWorkersResponse resp;
  grpc::Status st = conn->stub->ListWorkers(&ctx, {}, &resp);
  if (!st.ok()) return Fail(common::FromGrpcStatus(st));
  // The PLATFORM column is as wide as its widest entry (emulated platforms make it long).
  int platform_width = 12;
  for (const farm::v1::WorkerInfo& w : resp.workers()) {
    if (!all && !w.connected()) continue;
    platform_width = std::max(platform_width, static_cast<int>(WorkerPlatforms(w).size()));
  }
  std::cout << absl::StrFormat("%-24s %-*s %-9s %-7s %-7s %-10s %-22s %s\n", "WORKER",
                               platform_width, "PLATFORM", "SLOTS", "LAYERS", "TASKS", "SEEN",
                               "ADDRESS", "LABELS");
  for (const farm::v1::WorkerInfo& w : resp.workers()) {
    if (!all && !w.connected()) continue;
    std::vector<std::string> labels;
    for (const auto& [k, v] : w.labels()) labels.push_back(absl::StrCat(k, "=", v));
    std::sort(labels.begin(), labels.end());
    std::cout << absl::StrFormat("%-24s %-*s %-9s %-7d %-7d %-10s %-22s %s\n", w.id(),
                                 platform_width, WorkerPlatforms(w),
                                 absl::StrCat(w.busy(), "/", w.slots()), w.layers(), w.tasks_done(),
                                 w.connected() ? Ago(w.last_heartbeat_unix_micros()) : "offline",
                                 w.address(), labels.empty() ? "-" : absl::StrJoin(labels, ","));
  }
  return 0;
}

int RunLogs(const Args& args) {
  common::FlagSet fs("farm logs [OPTIONS] BUILD",
                     "Show a farm build's progress and output, as farm submit showed it. With\n"
                     "--follow, keep following a running build until it ends.");
  SchedulerFlags scheduler;
  std::string progress = "plain";
  bool follow = false;
  SchedulerFlag(fs, &scheduler);
  fs.Bool("follow", 'f', &follow, "Follow a running build until it ends");
  fs.String("progress", 0, &progress, "Output: plain or tty");
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "logs", &positional, &exit_code)) return exit_code;
  if (!CheckArgs(positional, 1, 1, "logs", "farm logs [OPTIONS] BUILD")) return 2;
  absl::StatusOr<cli::ProgressMode> mode = cli::ParseProgressMode(progress);
  if (!mode.ok()) return Fail(mode.status());
  absl::StatusOr<SchedulerConnection> conn = Connect(scheduler);
  if (!conn.ok()) return Fail(conn.status());
  std::string build_id = positional[0];
  int64_t until = 0;  // without --follow: what was there when we asked
  farm::v1::BuildInfo info;
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    farm::v1::GetBuildRequest r;
    r.set_build_id(build_id);
    grpc::Status st = conn->stub->GetBuild(&ctx, r, &info);
    if (!st.ok()) return Fail(common::FromGrpcStatus(st));
    until = info.last_seq();
  }
  // The Dockerfile is not kept by the client: the error block shows without source lines.
  std::unique_ptr<cli::ProgressPrinter> printer =
      ProgressPrinter::Create(*mode, 1, "", info.dockerfile_name());
  std::atomic<bool> stop{false};
  int64_t last_seq = 0;
  FollowOptions fo;
  fo.stop = &stop;
  fo.on_reconnect = [&](const std::string& w) {
    farm::v1::BuildEvent e;
    e.set_warning(w);
    printer->OnEvent(e);
  };
  bool ended = info.state() == farm::v1::BuildInfo::SUCCEEDED ||
               info.state() == farm::v1::BuildInfo::FAILED ||
               info.state() == farm::v1::BuildInfo::CANCELED;
  if (!follow && until == 0) {
    std::cout << "build " << build_id << " is " << StateName(info.state())
              << " and has no events yet\n";
    return 0;
  }
  absl::StatusOr<farm::v1::BuildOutcome> outcome = FollowBuild(
      *conn, &build_id, &last_seq,
      [&](const farm::v1::BuildStreamEvent& e) {
        if (e.has_event()) printer->OnEvent(e.event());
        if (!follow && !ended && e.seq() >= until) stop = true;
      },
      fo);
  printer->Finish();
  if (!outcome.ok() && !(absl::IsCancelled(outcome.status()) && !follow)) {
    return Fail(outcome.status());
  }
  if (!outcome.ok()) {
    std::cout << "(build " << build_id << " is still " << StateName(info.state())
              << "; farm logs -f " << build_id << " follows it)\n";
  }
  return 0;
}

int RunCancel(const Args& args) {
  common::FlagSet fs("farm cancel [OPTIONS] BUILD...",
                     "Cancel farm builds: a queued build leaves the queue, a running one has its\n"
                     "running steps killed on their workers.");
  SchedulerFlags scheduler;
  SchedulerFlag(fs, &scheduler);
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "cancel", &positional, &exit_code)) return exit_code;
  if (!CheckArgs(positional, 1, 1000, "cancel", "farm cancel [OPTIONS] BUILD...")) return 2;
  absl::StatusOr<SchedulerConnection> conn = Connect(scheduler);
  if (!conn.ok()) return Fail(conn.status());
  int rc = 0;
  for (const std::string& id : positional) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    farm::v1::CancelBuildRequest r;
    r.set_build_id(id);
    farm::v1::BuildInfo info;
    grpc::Status st = conn->stub->CancelBuild(&ctx, r, &info);
    if (!st.ok()) {
      std::cerr << "Error: " << id << ": " << st.error_message() << "\n";
      rc = 1;
      continue;
    }
    std::cout << id << " " << StateName(info.state()) << "\n";
  }
  return rc;
}

int ListRemoteBuilds(const std::string& scheduler, const auth::ClientAuthOptions& security,
                     int64_t last, bool active, const std::string& tenant) {
  absl::StatusOr<SchedulerConnection> conn = Connect(SchedulerFlags{scheduler, security});
  if (!conn.ok()) return Fail(conn.status());
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  farm::v1::ListBuildsRequest r;
  r.set_limit(static_cast<int32_t>(last));
  r.set_active_only(active);
  r.set_tenant(tenant);
  farm::v1::ListBuildsResponse resp;
  grpc::Status st = conn->stub->ListBuilds(&ctx, r, &resp);
  if (!st.ok()) return Fail(common::FromGrpcStatus(st));
  std::cout << absl::StrFormat("%-28s %-10s %-9s %-12s %-7s %-14s %-18s %s\n", "BUILD ID",
                               "SUBMITTED", "STATUS", "TENANT", "CACHED", "IMAGE ID", "CLIENT",
                               "TAGS");
  for (const farm::v1::BuildInfo& b : resp.builds()) {
    std::string image =
        b.outcome().image_id().size() > 19 ? b.outcome().image_id().substr(7, 12) : "-";
    std::cout << absl::StrFormat("%-28s %-10s %-9s %-12s %-7s %-14s %-18s %s\n", b.build_id(),
                                 Ago(b.submitted_unix_micros()), StateName(b.state()),
                                 b.tenant().empty() ? "-" : b.tenant(),
                                 absl::StrCat(b.steps_cached(), "/", b.steps_total()), image,
                                 b.client().empty() ? "-" : b.client(),
                                 b.tags().empty() ? "-" : absl::StrJoin(b.tags(), ","));
  }
  return 0;
}

}  // namespace farm::cli
