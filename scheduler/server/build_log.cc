#include "scheduler/server/build_log.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/rocksdb_status.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/write_batch.h"

namespace farm::scheduler::server {

namespace {

using common::FromRocks;

constexpr char kBuildPrefix[] = "b/";
constexpr char kEventPrefix[] = "e/";
constexpr char kRequestPrefix[] = "r/";

std::string EventKey(const std::string& id, int64_t seq) {
  return absl::StrFormat("%s%s/%020d", kEventPrefix, id, seq);
}

// The seq at the end of an event key.
int64_t SeqOf(const rocksdb::Slice& key) {
  std::string k = key.ToString();
  return std::stoll(k.substr(k.rfind('/') + 1));
}

}  // namespace

bool IsFinished(farm::v1::BuildInfo::State s) {
  return s == farm::v1::BuildInfo::SUCCEEDED || s == farm::v1::BuildInfo::FAILED ||
         s == farm::v1::BuildInfo::CANCELED;
}

BuildLog::BuildLog(Options options, std::unique_ptr<rocksdb::DB> db)
    : options_(std::move(options)), db_(std::move(db)) {}

BuildLog::~BuildLog() = default;

absl::StatusOr<std::unique_ptr<BuildLog>> BuildLog::Open(Options options) {
  rocksdb::Options ro;
  ro.create_if_missing = true;
  ro.keep_log_file_num = 2;
  ro.max_manifest_file_size = 4 << 20;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(ro, options.dir, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(
          absl::StrCat(options.dir, " is in use by another farm-scheduler"));
    }
    return FromRocks(s, absl::StrCat("opening ", options.dir));
  }
  return std::unique_ptr<BuildLog>(
      new BuildLog(std::move(options), std::unique_ptr<rocksdb::DB>(raw)));
}

absl::StatusOr<std::vector<BuildLog::LoadedBuild>> BuildLog::Load() {
  std::vector<LoadedBuild> builds;
  std::vector<std::pair<int64_t, std::string>> done;  // (finished at, id)
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kBuildPrefix); it->Valid() && it->key().starts_with(kBuildPrefix); it->Next()) {
    LoadedBuild b;
    if (!b.stored.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("corrupt build record ", it->key().ToString()));
    }
    const std::string& id = b.stored.info().build_id();
    std::unique_ptr<rocksdb::Iterator> ev(db_->NewIterator(rocksdb::ReadOptions()));
    ev->SeekForPrev(EventKey(id, INT64_MAX));
    if (ev->Valid() && ev->key().starts_with(absl::StrCat(kEventPrefix, id, "/"))) {
      b.last_seq = SeqOf(ev->key());
    }
    b.last_seq = std::max(b.last_seq, b.stored.info().last_seq());
    if (IsFinished(b.stored.info().state())) {
      done.push_back({b.stored.info().finished_unix_micros(), id});
    }
    builds.push_back(std::move(b));
  }
  std::sort(done.begin(), done.end());
  absl::MutexLock l(&mu_);
  for (auto& [t, id] : done) finished_.push_back(id);
  return builds;
}

absl::Status BuildLog::Add(const farm::v1::StoredBuild& build,
                           const std::string& client_request_id) {
  const std::string& id = build.info().build_id();
  rocksdb::WriteBatch batch;
  batch.Put(kBuildPrefix + id, build.SerializeAsString());
  if (!client_request_id.empty()) batch.Put(kRequestPrefix + client_request_id, id);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Write(wo, &batch), "saving the build");
}

absl::Status BuildLog::Save(const farm::v1::StoredBuild& build, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocks(db_->Put(wo, kBuildPrefix + build.info().build_id(), build.SerializeAsString()),
                   "saving a build");
}

std::optional<std::string> BuildLog::FindRequest(const std::string& client_request_id) {
  std::string id;
  if (!db_->Get(rocksdb::ReadOptions(), kRequestPrefix + client_request_id, &id).ok()) {
    return std::nullopt;
  }
  return id;
}

void BuildLog::Append(const farm::v1::BuildStreamEvent& event) {
  rocksdb::WriteOptions wo;  // process-crash safe, not fsynced each
  db_->Put(wo, EventKey(event.build_id(), event.seq()), event.event().SerializeAsString())
      .PermitUncheckedError();
}

void BuildLog::Replay(const std::string& build_id, int64_t after_seq,
                      const std::function<void(const farm::v1::BuildStreamEvent&)>& fn) {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  std::string prefix = absl::StrCat(kEventPrefix, build_id, "/");
  for (it->Seek(EventKey(build_id, after_seq + 1)); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    farm::v1::BuildStreamEvent se;
    se.set_build_id(build_id);
    se.set_seq(SeqOf(it->key()));
    if (!se.mutable_event()->ParseFromArray(it->value().data(),
                                            static_cast<int>(it->value().size()))) {
      continue;
    }
    fn(se);
  }
}

void BuildLog::AddFinished(const std::string& build_id) {
  absl::MutexLock l(&mu_);
  finished_.push_back(build_id);
}

void BuildLog::TrimEvents() {
  absl::MutexLock l(&mu_);
  while (static_cast<int>(finished_.size()) > options_.keep_events_of_builds) {
    std::string id = finished_.front();
    finished_.pop_front();
    db_->DeleteRange(rocksdb::WriteOptions(), db_->DefaultColumnFamily(), EventKey(id, 0),
                     EventKey(id, INT64_MAX))
        .PermitUncheckedError();
  }
}

void BuildLog::Flush() { db_->FlushWAL(/*sync=*/true).PermitUncheckedError(); }

}  // namespace farm::scheduler::server
