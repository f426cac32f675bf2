// BuildLog: farm-scheduler's durable record of its builds, in RocksDB (<state_dir>/builds), so
// that builds and their progress survive a restart:
//   b/<build id>                 StoredBuild: the request (secrets cleared), BuildInfo, order
//   e/<build id>/<seq, 20 digits>  BuildEvent: one progress event (its EventLog side)
//   r/<client request id>        the build id that request made (idempotent submits)
// Build records are written synced at each state change; events are written without a sync
// each (safe against a process crash) and flushed at shutdown. Only the events of the last
// `keep_events_of_builds` finished builds are kept; older builds keep their record.
//
//   BuildLog::Options o;
//   o.dir = "/var/lib/farm-scheduler/builds";
//   ASSIGN_OR_RETURN(std::unique_ptr<BuildLog> log, BuildLog::Open(std::move(o)));
//   ASSIGN_OR_RETURN(std::vector<BuildLog::LoadedBuild> builds, log->Load());
//   RETURN_IF_ERROR(log->Add(stored, request.client_request_id()));
//   log->Append(event);                     // as EventFanout's EventLog
//   log->AddFinished(id); log->TrimEvents();
//
// Thread-safe.
#ifndef FARM_SCHEDULER_SERVER_BUILD_LOG_H_
#define FARM_SCHEDULER_SERVER_BUILD_LOG_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "farm/v1/scheduler.pb.h"
#include "farm/v1/scheduler_state.pb.h"
#include "scheduler/server/event_fanout.h"

namespace rocksdb {
class DB;
}  // namespace rocksdb

namespace farm::scheduler::server {

// A build in one of these states is over: its record no longer changes, its events may be
// trimmed.
bool IsFinished(farm::v1::BuildInfo::State state);

class BuildLog : public EventLog {
 public:
  struct Options {
    std::string dir;  // the RocksDB directory; created if missing
    // Finished builds whose events are kept (see TrimEvents).
    int keep_events_of_builds = 1000;
  };
  // FAILED_PRECONDITION when another process has `dir` open.
  static absl::StatusOr<std::unique_ptr<BuildLog>> Open(Options options);
  ~BuildLog() override;

  struct LoadedBuild {
    farm::v1::StoredBuild stored;
    // The highest seq the build used: its last kept event's, or its record's last_seq when its
    // events were trimmed. Its next event continues after it.
    int64_t last_seq = 0;
  };
  // Every saved build, in build id order. Also notes the finished ones, oldest finish first,
  // as AddFinished would. DATA_LOSS for a record that does not parse. Call once, after Open.
  absl::StatusOr<std::vector<LoadedBuild>> Load();

  // Saves a new build and, when `client_request_id` is not empty, that this request made it,
  // in one synced write.
  absl::Status Add(const farm::v1::StoredBuild& build, const std::string& client_request_id);
  // Saves a build's record again (its state or counters changed); `sync`: fsync first.
  absl::Status Save(const farm::v1::StoredBuild& build, bool sync);
  // The id of the build `client_request_id` made, if any.
  std::optional<std::string> FindRequest(const std::string& client_request_id);

  // EventLog: one build's events, kept under e/ (writes are not synced one by one).
  void Append(const farm::v1::BuildStreamEvent& event) override;
  void Replay(const std::string& build_id, int64_t after_seq,
              const std::function<void(const farm::v1::BuildStreamEvent&)>& fn) override;

  // Notes that a build finished, after those noted before (its events are now candidates for
  // trimming).
  void AddFinished(const std::string& build_id);
  // Deletes the events of the builds noted first while more than keep_events_of_builds are
  // noted.
  void TrimEvents();

  // Makes every write so far durable (events are not synced one by one).
  void Flush();

 private:
  BuildLog(Options options, std::unique_ptr<rocksdb::DB> db);

  const Options options_;
  const std::unique_ptr<rocksdb::DB> db_;
  absl::Mutex mu_;
  std::deque<std::string> finished_ ABSL_GUARDED_BY(mu_);  // build ids, oldest first
};

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_BUILD_LOG_H_
