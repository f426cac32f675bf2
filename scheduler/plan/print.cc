#include "scheduler/plan/print.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace farm::scheduler::plan {

namespace {

const char* KindName(StepKind k) {
  switch (k) {
    case StepKind::kRun:
      return "run";
    case StepKind::kCopy:
      return "copy";
    case StepKind::kWorkdir:
      return "workdir";
    case StepKind::kMetadata:
      return "metadata";
  }
  return "?";
}

std::string BaseText(const Stage& s, const Plan& plan) {
  switch (s.base_kind) {
    case Stage::BaseKind::kScratch:
      return "scratch";
    case Stage::BaseKind::kStage:
      return absl::StrCat("stage ", s.base_ref);
    case Stage::BaseKind::kImage:
      if (!s.base_resolved) return absl::StrCat("image ", s.base_ref, " (not resolved)");
      return absl::StrCat("image ", s.base_image->reference, "@", s.base_image->manifest_digest);
  }
  return "";
}

}  // namespace

std::string PlanToText(const Plan& plan) {
  std::string out;
  for (size_t i = 0; i < plan.stages.size(); ++i) {
    const Stage& s = plan.stages[i];
    absl::StrAppend(&out, "stage ", s.index, s.name.empty() ? "" : " (" + s.name + ")",
                    static_cast<int>(i) == plan.target ? " [target]" : "", "\n");
    absl::StrAppend(&out, "  from ", BaseText(s, plan), "  platform ", s.platform, "\n");
    absl::StrAppend(&out, "  base chain ", s.base_chain.substr(0, 16), "\n");
    if (!s.depends_on.empty()) {
      std::vector<std::string> deps;
      for (int d : s.depends_on) deps.push_back(absl::StrCat(d));
      absl::StrAppend(&out, "  depends on stages ", absl::StrJoin(deps, ", "), "\n");
    }
    for (const Step& st : s.steps) {
      absl::StrAppend(&out, "  ", st.pos.line, ": ", st.from_onbuild ? "(ONBUILD) " : "",
                      st.instruction, "\n");
      if (!st.key.empty()) absl::StrAppend(&out, "      key ", st.key.substr(0, 16), "\n");
      for (const auto& [k, v] : st.preimage) {
        if (k == "inputs" || k == "url" || k == "heredoc" || k == "file") {
          absl::StrAppend(&out, "      ", k, " ", v, "\n");
        }
      }
      for (const std::string& c : st.changes) absl::StrAppend(&out, "      config ", c, "\n");
    }
  }
  for (const std::string& w : plan.warnings) absl::StrAppend(&out, "warning: ", w, "\n");
  return out;
}

std::string PlanToJson(const Plan& plan) {
  using oj = nlohmann::ordered_json;
  oj j = oj::object();
  j["file"] = plan.filename;
  j["target"] = plan.stages.empty() ? -1 : plan.stages[plan.target].index;
  oj stages = oj::array();
  for (const Stage& s : plan.stages) {
    oj sj = oj::object();
    sj["index"] = s.index;
    sj["name"] = s.name;
    oj base = oj::object();
    base["kind"] = s.base_kind == Stage::BaseKind::kScratch ? "scratch"
                   : s.base_kind == Stage::BaseKind::kStage ? "stage"
                                                            : "image";
    base["ref"] = s.base_ref;
    if (s.base_kind == Stage::BaseKind::kStage) base["stage"] = s.base_stage;
    if (s.base_kind == Stage::BaseKind::kImage) {
      base["resolved"] = s.base_resolved;
      if (s.base_image) {
        base["reference"] = s.base_image->reference;
        base["manifest_digest"] = s.base_image->manifest_digest;
        base["config_digest"] = s.base_image->config_digest;
      }
    }
    base["chain"] = s.base_chain;
    sj["base"] = std::move(base);
    sj["platform"] = s.platform;
    sj["depends_on"] = std::vector<int>(s.depends_on.begin(), s.depends_on.end());
    oj steps = oj::array();
    for (const Step& st : s.steps) {
      oj x = oj::object();
      x["line"] = st.pos.line;
      x["end_line"] = st.end_line;
      x["name"] = st.name;
      x["kind"] = KindName(st.kind);
      if (st.from_onbuild) x["from_onbuild"] = true;
      x["instruction"] = st.instruction;
      x["created_by"] = st.created_by;
      if (!st.key.empty()) {
        x["key"] = st.key;
        x["chain"] = st.chain;
        oj pre = oj::array();
        for (const auto& [k, v] : st.preimage) pre.push_back(oj::array({k, v}));
        x["preimage"] = std::move(pre);
      }
      if (st.copy_from && st.copy_from->stage >= 0) x["copy_from_stage"] = st.copy_from->stage;
      if (st.copy_from && st.copy_from->image) {
        x["copy_from_image"] = st.copy_from->image->reference;
      }
      x["changes"] = st.changes;
      steps.push_back(std::move(x));
    }
    sj["steps"] = std::move(steps);
    sj["final_chain"] = s.final_chain;
    oj cfg = oj::parse(s.config.ToJson(), nullptr, false);
    if (!cfg.is_discarded()) sj["config"] = cfg.contains("config") ? cfg["config"] : oj::object();
    stages.push_back(std::move(sj));
  }
  j["stages"] = std::move(stages);
  j["warnings"] = plan.warnings;
  j["unused_build_args"] = plan.unused_build_args;
  return j.dump(2, ' ', false, oj::error_handler_t::replace) + "\n";
}

}  // namespace farm::scheduler::plan
