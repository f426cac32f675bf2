#include "cli/build_records.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"

namespace farm::cli {

namespace {

constexpr char kSuffix[] = ".pb";

std::string FieldName(const std::string& line) { return line.substr(0, line.find(": ")); }
std::string FieldValue(const std::string& line) {
  size_t p = line.find(": ");
  return p == std::string::npos ? "" : line.substr(p + 2);
}

}  // namespace

std::string NewBuildId() {
  std::random_device rd;
  absl::Time now = absl::Now();
  return absl::StrCat("b", absl::FormatTime("%Y%m%dT%H%M%E3S", now, absl::UTCTimeZone()),
                      absl::StrFormat("%06x", rd() & 0xffffff));
}

absl::StatusOr<std::unique_ptr<FileBuildRecords>> FileBuildRecords::Create(const std::string& dir,
                                                                           int max_records) {
  RETURN_IF_ERROR(common::MakeDirs(dir, 0700));
  return std::unique_ptr<FileBuildRecords>(new FileBuildRecords(dir, max_records));
}

absl::StatusOr<std::vector<std::string>> FileBuildRecords::Ids() {
  DIR* d = opendir(dir_.c_str());
  if (d == nullptr) return common::ErrnoToStatus(errno, absl::StrCat("opendir ", dir_));
  std::vector<std::string> ids;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (absl::EndsWith(n, kSuffix) && n[0] == 'b') ids.push_back(n.substr(0, n.size() - 3));
  }
  closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

absl::Status FileBuildRecords::Put(const farm::v1::BuildRecord& record) {
  if (record.id().empty() || record.id().find('/') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("bad build id \"", record.id(), "\""));
  }
  // A build record lost to a power failure costs only a why-miss explanation: no fsync.
  RETURN_IF_ERROR(common::WriteFileAtomic(common::JoinPath(dir_, record.id() + kSuffix),
                                          record.SerializeAsString(), 0600, /*sync=*/false));
  ASSIGN_OR_RETURN(std::vector<std::string> ids, Ids());
  for (size_t i = 0; i + max_ < ids.size(); ++i) {
    unlink(common::JoinPath(dir_, ids[i] + kSuffix).c_str());
  }
  return absl::OkStatus();
}

absl::StatusOr<farm::v1::BuildRecord> FileBuildRecords::Get(const std::string& id) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, Ids());
  std::string found;
  if (id == "latest") {
    if (!ids.empty()) found = ids.back();
  } else {
    for (const std::string& x : ids) {
      if (absl::StartsWith(x, id)) {
        if (!found.empty() && x != id) {
          return absl::InvalidArgumentError(
              absl::StrCat("build id prefix \"", id, "\" is ambiguous"));
        }
        found = x;
        if (x == id) break;
      }
    }
  }
  if (found.empty()) return absl::NotFoundError(absl::StrCat("no such build: ", id));
  ASSIGN_OR_RETURN(std::string bytes, common::ReadFile(common::JoinPath(dir_, found + kSuffix)));
  farm::v1::BuildRecord r;
  if (!r.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("build record ", found, " is corrupt"));
  }
  return r;
}

absl::StatusOr<std::vector<farm::v1::BuildRecord>> FileBuildRecords::List(int limit) {
  ASSIGN_OR_RETURN(std::vector<std::string> ids, Ids());
  std::vector<farm::v1::BuildRecord> out;
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) {
    if (limit > 0 && static_cast<int>(out.size()) >= limit) break;
    absl::StatusOr<farm::v1::BuildRecord> r = Get(*it);
    if (r.ok()) out.push_back(*std::move(r));
  }
  return out;
}

void RecordSteps(const scheduler::plan::Plan& plan,
                 const std::vector<scheduler::engine::StepOutcome>& outcomes,
                 farm::v1::BuildRecord* record) {
  std::map<const scheduler::plan::Step*, const scheduler::engine::StepOutcome*> by_step;
  for (const scheduler::engine::StepOutcome& o : outcomes) by_step[o.step] = &o;
  for (const scheduler::plan::Stage& s : plan.stages) {
    for (size_t k = 0; k < s.steps.size(); ++k) {
      const scheduler::plan::Step& st = s.steps[k];
      if (st.key.empty()) continue;
      farm::v1::StepRecord* r = record->add_steps();
      r->set_stage(s.index);
      r->set_stage_name(s.name);
      r->set_index(static_cast<int>(k));
      r->set_line(st.pos.line);
      r->set_instruction(st.instruction);
      r->set_key(st.key);
      for (const auto& [f, v] : st.preimage) r->add_preimage(absl::StrCat(f, ": ", v));
      for (const std::string& in : st.inputs) r->add_inputs(in);
      auto it = by_step.find(&st);
      if (it != by_step.end()) {
        r->set_cached(it->second->cached);
        r->set_duration_micros(it->second->duration_micros);
      }
    }
  }
}

namespace {

const farm::v1::StepRecord* SelectStep(const farm::v1::BuildRecord& b, const std::string& sel) {
  int line;
  if (absl::SimpleAtoi(sel, &line)) {
    for (const auto& s : b.steps()) {
      if (s.line() == line) return &s;
    }
    return nullptr;
  }
  // "2/5", "build 2/5", "[build 2/5]": the position among the stage's keyed steps.
  std::string x(absl::StripPrefix(absl::StripSuffix(sel, "]"), "["));
  std::vector<std::string> parts = absl::StrSplit(x, ' ');
  std::string pos = parts.back();
  std::string stage = parts.size() > 1 ? parts[0] : "";
  size_t slash = pos.find('/');
  int n;
  if (slash != std::string::npos && absl::SimpleAtoi(pos.substr(0, slash), &n)) {
    std::map<int, int> seen;  // stage → keyed steps seen
    for (const auto& s : b.steps()) {
      bool stage_ok =
          stage.empty() || s.stage_name() == stage || absl::StrCat("stage-", s.stage()) == stage;
      int k = ++seen[s.stage()];
      // Positions count the FROM of an image as 1; accept both conventions.
      if (stage_ok && (k == n || k + 1 == n)) return &s;
    }
  }
  for (const auto& s : b.steps()) {
    if (absl::StrContains(s.instruction(), sel)) return &s;
  }
  return nullptr;
}

bool SameSlot(const farm::v1::StepRecord& a, const farm::v1::StepRecord& b) {
  bool same_stage =
      !a.stage_name().empty() ? a.stage_name() == b.stage_name() : a.stage() == b.stage();
  return same_stage && (a.index() == b.index() || a.instruction() == b.instruction());
}

}  // namespace

absl::StatusOr<std::string> ExplainMiss(BuildRecords& records, const farm::v1::BuildRecord& build,
                                        const std::string& selector) {
  const farm::v1::StepRecord* step = SelectStep(build, selector);
  if (step == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("build ", build.id(), " has no step matching \"", selector, "\""));
  }
  std::string out = absl::StrCat("step ", step->instruction(), " (line ", step->line(),
                                 ") of build ", build.id(), "\n  key ", step->key(), "\n");
  if (step->cached()) {
    absl::StrAppend(&out, "  it was a cache hit: nothing to explain\n");
    return out;
  }
  ASSIGN_OR_RETURN(std::vector<farm::v1::BuildRecord> all, records.List(0));
  const farm::v1::BuildRecord* prev_build = nullptr;
  const farm::v1::StepRecord* prev = nullptr;
  for (const farm::v1::BuildRecord& b : all) {
    if (b.id() >= build.id() || b.dockerfile() != build.dockerfile()) continue;
    for (const auto& s : b.steps()) {
      if (SameSlot(*step, s) && s.key() != step->key()) {
        prev = &s;
        prev_build = &b;
        break;
      }
    }
    if (prev != nullptr) break;
  }
  if (prev == nullptr) {
    absl::StrAppend(&out, "  no earlier build of ", build.dockerfile(),
                    " ran this step: it has never been cached here\n");
    return out;
  }
  absl::StrAppend(&out, "  closest earlier run: build ", prev_build->id(), ", key ", prev->key(),
                  "\n  what changed:\n");
  std::map<std::string, std::string> now, then;
  for (const std::string& l : step->preimage()) now[FieldName(l)] = FieldValue(l);
  for (const std::string& l : prev->preimage()) then[FieldName(l)] = FieldValue(l);
  for (const auto& [field, value] : now) {
    auto it = then.find(field);
    std::string old = it == then.end() ? "(absent)" : it->second;
    if (old == value) continue;
    if (field == "parent") {
      // Name the earliest step of this build that missed before this one.
      const farm::v1::StepRecord* first = nullptr;
      for (const auto& s : build.steps()) {
        if (&s == step) break;
        if (!s.cached() && s.stage() == step->stage()) {
          first = &s;
          break;
        }
      }
      absl::StrAppend(&out, "    parent: the filesystem below it changed",
                      first ? absl::StrCat(" (an earlier step missed too: ", first->instruction(),
                                           ", line ", first->line(), ")")
                            : " (a different base image or an earlier stage changed)",
                      "\n");
      continue;
    }
    if (field == "inputs") {
      std::map<std::string, std::string> a, b;
      for (const std::string& l : prev->inputs()) a[l.substr(0, l.find('\t'))] = l;
      for (const std::string& l : step->inputs()) b[l.substr(0, l.find('\t'))] = l;
      int shown = 0;
      for (const auto& [path, line] : b) {
        auto x = a.find(path);
        if (x == a.end()) {
          if (shown++ < 20) absl::StrAppend(&out, "    file added: ", path, "\n");
        } else if (x->second != line) {
          if (shown++ < 20) absl::StrAppend(&out, "    file changed: ", path, "\n");
        }
      }
      for (const auto& [path, line] : a) {
        if (!b.count(path) && shown++ < 20) absl::StrAppend(&out, "    file removed: ", path, "\n");
      }
      if (shown > 20) absl::StrAppend(&out, "    ... and ", shown - 20, " more files\n");
      if (shown == 0) absl::StrAppend(&out, "    inputs: ", old, " -> ", value, "\n");
      continue;
    }
    if (field == "env") {
      std::vector<std::string> av = absl::StrSplit(old, "\n     ");
      std::vector<std::string> bv = absl::StrSplit(value, "\n     ");
      for (const std::string& e : bv) {
        if (std::find(av.begin(), av.end(), e) == av.end()) {
          absl::StrAppend(
              &out, "    env: ", e, " (was ",
              [&]() -> std::string {
                std::string k = e.substr(0, e.find('='));
                for (const std::string& o : av) {
                  if (o.substr(0, o.find('=')) == k) return o;
                }
                return "unset";
              }(),
              ")\n");
        }
      }
      continue;
    }
    absl::StrAppend(&out, "    ", field, ": ", old, " -> ", value, "\n");
  }
  for (const auto& [field, value] : then) {
    if (!now.count(field)) absl::StrAppend(&out, "    ", field, ": removed (was ", value, ")\n");
  }
  return out;
}

}  // namespace farm::cli
