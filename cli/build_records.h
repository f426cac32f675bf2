// Build records: what each build did, step by step (keys, key preimages, the files a COPY
// read, hit or miss), kept so that `farm builds` can list builds and `farm why-miss` can say
// which input of a step changed against the closest earlier run of that step.
//
// FileBuildRecords keeps one file per build (DIR/<id>.pb, written atomically), newest ids
// sorting last; it keeps the newest `max_records` and deletes older ones.
//
//   ASSIGN_OR_RETURN(auto records, cli::FileBuildRecords::Create(home + "/builds"));
//   RETURN_IF_ERROR(records->Put(record));
//   ASSIGN_OR_RETURN(farm::v1::BuildRecord last, records->Get("latest"));
//   ASSIGN_OR_RETURN(std::string why, cli::ExplainMiss(*records, last, "COPY"));
#ifndef FARM_CLI_BUILD_RECORDS_H_
#define FARM_CLI_BUILD_RECORDS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "farm/v1/build.pb.h"
#include "scheduler/engine/engine.h"

namespace farm::cli {

class BuildRecords {
 public:
  virtual ~BuildRecords() = default;
  virtual absl::Status Put(const farm::v1::BuildRecord& record) = 0;
  // `id` is a build id, a unique prefix of one, or "latest". NOT_FOUND otherwise.
  virtual absl::StatusOr<farm::v1::BuildRecord> Get(const std::string& id) = 0;
  // Newest first, at most `limit` (0: all).
  virtual absl::StatusOr<std::vector<farm::v1::BuildRecord>> List(int limit) = 0;
};

class FileBuildRecords : public BuildRecords {
 public:
  static absl::StatusOr<std::unique_ptr<FileBuildRecords>> Create(const std::string& dir,
                                                                  int max_records = 500);
  absl::Status Put(const farm::v1::BuildRecord& record) override;
  absl::StatusOr<farm::v1::BuildRecord> Get(const std::string& id) override;
  absl::StatusOr<std::vector<farm::v1::BuildRecord>> List(int limit) override;

 private:
  FileBuildRecords(std::string dir, int max) : dir_(std::move(dir)), max_(max) {}
  absl::StatusOr<std::vector<std::string>> Ids();
  std::string dir_;
  int max_;
};

// A new build id: "b" + UTC time (sortable) + 6 random hex digits.
std::string NewBuildId();

// Fills `record.steps` from a finished (or failed) build.
void RecordSteps(const scheduler::plan::Plan& plan,
                 const std::vector<scheduler::engine::StepOutcome>& outcomes,
                 farm::v1::BuildRecord* record);

// Explains why a step of `build` missed the cache. `step` selects it: a Dockerfile line
// number, a vertex position such as "2/5" or "build 2/5", or text the instruction contains
// (the first match). The explanation names the closest earlier run of the same step (same
// Dockerfile, stage and instruction position) and each key field that differs; for COPY/ADD it
// lists the files that changed, appeared or disappeared. NOT_FOUND if nothing matches `step`.
absl::StatusOr<std::string> ExplainMiss(BuildRecords& records, const farm::v1::BuildRecord& build,
                                        const std::string& step);

}  // namespace farm::cli

#endif  // FARM_CLI_BUILD_RECORDS_H_
