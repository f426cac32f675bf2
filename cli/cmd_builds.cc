// farm builds: the builds this home has run; farm why-miss: why a step of a build was not a
// cache hit (which input changed against the closest earlier run of that step).
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "cli/build_records.h"
#include "cli/commands.h"
#include "cli/image_common.h"
#include "cli/remote.h"
#include "common/farm_home.h"
#include "common/flags.h"
#include "common/fs.h"

namespace farm::cli {

namespace {

absl::StatusOr<std::unique_ptr<cli::FileBuildRecords>> OpenRecords() {
  absl::StatusOr<std::string> home = common::FarmHome();
  if (!home.ok()) return home.status();
  return FileBuildRecords::Create(common::JoinPath(*home, "builds"));
}

std::string Ago(int64_t unix_micros) {
  absl::Duration d = absl::Now() - absl::FromUnixMicros(unix_micros);
  int64_t s = absl::ToInt64Seconds(d);
  if (s < 60) return absl::StrCat(s, " seconds ago");
  if (s < 3600) return absl::StrCat(s / 60, " minutes ago");
  if (s < 86400) return absl::StrCat(s / 3600, " hours ago");
  return absl::StrCat(s / 86400, " days ago");
}

}  // namespace

int RunBuilds(const Args& args) {
  common::FlagSet fs("farm builds [OPTIONS]",
                     "List the builds run in this farm home, or with --scheduler those of a farm.");
  int64_t last = 20;
  std::string scheduler, tenant;
  bool active = false;
  fs.Int("last", 'n', &last, "Show the last N builds (0: all)");
  fs.String("scheduler", 0, &scheduler, "List a farm-scheduler's builds instead", "HOST:PORT");
  fs.Bool("active", 0, &active, "Only queued and running builds (with --scheduler)");
  fs.String("tenant", 0, &tenant, "Only this tenant's builds (with --scheduler)");
  auth::ClientAuthOptions security;
  SecurityFlags(fs, &security);
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "builds", &positional, &exit_code)) return exit_code;
  if (!CheckArgs(positional, 0, 0, "builds", "farm builds [OPTIONS]")) return 2;
  if (!scheduler.empty()) return ListRemoteBuilds(scheduler, security, last, active, tenant);
  if (active || !tenant.empty()) {
    std::cerr << "farm builds: --active and --tenant need --scheduler\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<cli::FileBuildRecords>> records = OpenRecords();
  if (!records.ok()) return Fail(records.status());
  absl::StatusOr<std::vector<farm::v1::BuildRecord>> list =
      (*records)->List(static_cast<int>(last));
  if (!list.ok()) return Fail(list.status());
  std::cout << absl::StrFormat("%-32s %-16s %-8s %-7s %-14s %s\n", "BUILD ID", "STARTED", "STATUS",
                               "CACHED", "IMAGE ID", "DOCKERFILE");
  for (const farm::v1::BuildRecord& r : *list) {
    int cached = 0;
    for (const auto& s : r.steps()) cached += s.cached() ? 1 : 0;
    std::string id = r.image_id().size() > 19 ? r.image_id().substr(7, 12) : "-";
    std::cout << absl::StrFormat("%-32s %-16s %-8s %-7s %-14s %s\n", r.id(),
                                 Ago(r.started_unix_micros()), r.ok() ? "ok" : "failed",
                                 absl::StrCat(cached, "/", r.steps_size()), id, r.dockerfile());
  }
  return 0;
}

int RunWhyMiss(const Args& args) {
  common::FlagSet fs("farm why-miss [BUILD] STEP",
                     "Explain why a step of a build missed the cache: which input changed\n"
                     "against the closest earlier run of the same step. BUILD is a build id\n"
                     "(see 'farm builds'), a prefix of one, or 'latest' (the default). STEP is\n"
                     "a Dockerfile line number, a position such as 3/5, or text of the\n"
                     "instruction (e.g. 'COPY src').");
  std::vector<std::string> positional;
  int exit_code = 0;
  if (!ParseFlags(fs, args, "why-miss", &positional, &exit_code)) return exit_code;
  if (!CheckArgs(positional, 1, 2, "why-miss", "farm why-miss [BUILD] STEP")) return 2;
  std::string build_id = positional.size() == 2 ? positional[0] : "latest";
  std::string step = positional.back();
  absl::StatusOr<std::unique_ptr<cli::FileBuildRecords>> records = OpenRecords();
  if (!records.ok()) return Fail(records.status());
  absl::StatusOr<farm::v1::BuildRecord> b = (*records)->Get(build_id);
  if (!b.ok()) return Fail(b.status());
  absl::StatusOr<std::string> why = cli::ExplainMiss(**records, *b, step);
  if (!why.ok()) return Fail(why.status());
  std::cout << *why;
  return 0;
}

}  // namespace farm::cli
