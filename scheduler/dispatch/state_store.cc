#include "scheduler/dispatch/state_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rocksdb_status.h"
#include "common/status_macros.h"

namespace farm::scheduler::dispatch {
namespace {

using common::FromRocks;

constexpr absl::string_view kFormatKey = "format";
constexpr absl::string_view kFormat = "farm-dispatch-v1";
constexpr absl::string_view kSpecPrefix = "s/";
constexpr absl::string_view kStatePrefix = "r/";

rocksdb::Slice S(absl::string_view v) { return rocksdb::Slice(v.data(), v.size()); }

}  // namespace

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::string& dir, bool sync) {
  if (dir.empty()) return absl::InvalidArgumentError("dispatch state: no directory given");
  rocksdb::Options o;
  o.create_if_missing = true;
  o.keep_log_file_num = 4;
  o.max_log_file_size = 8 << 20;
  o.write_buffer_size = 16 << 20;
  o.max_background_jobs = 2;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, dir, &db);
  if (!s.ok()) {
    if (s.IsIOError() && absl::StrContains(s.ToString(), "lock")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "dispatch state ", dir, " is in use by another process (", s.ToString(), ")"));
    }
    return FromRocks(s, absl::StrCat("opening dispatch state ", dir));
  }
  std::unique_ptr<StateStore> store(new StateStore(dir, sync, db));
  std::string format;
  s = db->Get(rocksdb::ReadOptions(), S(kFormatKey), &format);
  if (s.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    it->SeekToFirst();
    if (it->Valid()) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " is not a dispatcher database (no format marker)"));
    }
    rocksdb::WriteOptions wo;
    wo.sync = true;
    RETURN_IF_ERROR(
        FromRocks(db->Put(wo, S(kFormatKey), S(kFormat)), "writing the dispatch format marker"));
  } else {
    RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading ", dir)));
    if (format != kFormat) {
      return absl::FailedPreconditionError(absl::StrCat(dir, " holds dispatch state of format \"",
                                                        format, "\"; this build reads \"", kFormat,
                                                        "\""));
    }
  }
  return store;
}

StateStore::StateStore(std::string dir, bool sync, rocksdb::DB* db)
    : dir_(std::move(dir)), sync_(sync), db_(db) {
  writer_ = std::thread([this] { WriterLoop(); });
}

StateStore::~StateStore() {
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  writer_.join();
  delete db_;
}

absl::StatusOr<std::vector<StoredTask>> StateStore::LoadAll(std::vector<std::string>* warnings) {
  std::vector<StoredTask> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(S(kSpecPrefix)); it->Valid() && it->key().starts_with(S(kSpecPrefix)); it->Next()) {
    std::string id = it->key().ToString().substr(kSpecPrefix.size());
    StoredTask t;
    if (!t.spec.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        t.spec.task_id() != id) {
      if (warnings != nullptr) {
        warnings->push_back(absl::StrCat("dispatch state ", dir_, ": task ", id,
                                         ": unreadable spec record, skipped"));
      }
      continue;
    }
    std::string state;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), S(absl::StrCat(kStatePrefix, id)), &state);
    if (!s.IsNotFound()) {
      RETURN_IF_ERROR(FromRocks(s, absl::StrCat("reading dispatch state of task ", id)));
      if (!t.state.ParseFromString(state)) {
        if (warnings != nullptr) {
          warnings->push_back(absl::StrCat("dispatch state ", dir_, ": task ", id,
                                           ": unreadable state record, read as queued"));
        }
        t.state.Clear();
      }
    }
    out.push_back(std::move(t));
  }
  RETURN_IF_ERROR(FromRocks(it->status(), absl::StrCat("reading dispatch state ", dir_)));
  return out;
}

void StateStore::PutSpec(const std::string& task_id, const farm::dispatch::TaskSpecRecord& spec) {
  Stage(absl::StrCat(kSpecPrefix, task_id), spec.SerializeAsString());
}

void StateStore::PutState(const std::string& task_id,
                          const farm::dispatch::TaskStateRecord& state) {
  Stage(absl::StrCat(kStatePrefix, task_id), state.SerializeAsString());
}

void StateStore::Delete(const std::string& task_id) {
  absl::MutexLock l(&mu_);
  staged_[absl::StrCat(kSpecPrefix, task_id)] = std::nullopt;
  staged_[absl::StrCat(kStatePrefix, task_id)] = std::nullopt;
  ++staged_gen_;
}

void StateStore::Stage(std::string key, std::optional<std::string> value) {
  absl::MutexLock l(&mu_);
  staged_[std::move(key)] = std::move(value);
  ++staged_gen_;
}

absl::Status StateStore::Flush() {
  absl::MutexLock l(&mu_);
  uint64_t want = staged_gen_;
  auto done = [this, want]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return committed_gen_ >= want || stopping_;
  };
  mu_.Await(absl::Condition(&done));
  absl::Status s = std::move(error_);
  error_ = absl::OkStatus();
  return s;
}

int64_t StateStore::batches() const {
  absl::MutexLock l(&mu_);
  return batches_;
}

int64_t StateStore::write_errors() const {
  absl::MutexLock l(&mu_);
  return write_errors_;
}

void StateStore::WriterLoop() {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  for (;;) {
    absl::flat_hash_map<std::string, std::optional<std::string>> batch_ops;
    uint64_t gen = 0;
    bool stop = false;
    {
      absl::MutexLock l(&mu_);
      auto ready = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !staged_.empty() || stopping_; };
      mu_.Await(absl::Condition(&ready));
      batch_ops.swap(staged_);
      gen = staged_gen_;
      stop = stopping_;
    }
    absl::Status s;
    if (!batch_ops.empty()) {
      rocksdb::WriteBatch batch;
      for (const auto& [key, value] : batch_ops) {
        if (value.has_value()) {
          batch.Put(S(key), S(*value));
        } else {
          batch.Delete(S(key));
        }
      }
      s = FromRocks(db_->Write(wo, &batch), absl::StrCat("writing dispatch state ", dir_));
    }
    {
      absl::MutexLock l(&mu_);
      committed_gen_ = gen;
      if (!batch_ops.empty()) ++batches_;
      if (!s.ok()) {
        ++write_errors_;
        if (error_.ok()) error_ = s;
      }
      if (stop && staged_.empty()) return;
    }
  }
}

}  // namespace farm::scheduler::dispatch
