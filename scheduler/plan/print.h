// `farm plan` output: a plan as human-readable text, and as the documented, stable JSON of
// `farm plan --format json` (stages, steps with their keys and full preimages, warnings). The
// golden tests in scheduler/testdata pin both forms.
//
//   ASSIGN_OR_RETURN(Plan p, MakePlan(dockerfile, options));
//   std::cout << (json ? PlanToJson(p) : PlanToText(p));
#ifndef FARM_SCHEDULER_PLAN_PRINT_H_
#define FARM_SCHEDULER_PLAN_PRINT_H_

#include <string>

#include "scheduler/plan/planner.h"

namespace farm::scheduler::plan {

// One block per stage in build order ("stage 1 (build) [target]", its base and chain), one
// line per step ("LINE: INSTRUCTION") with its short key, inputs and config changes, then the
// warnings. Keys are shortened to 16 hex digits.
std::string PlanToText(const Plan& plan);

// {"file", "target", "stages": [{"index", "name", "base", "platform", "depends_on", "steps":
// [{"line", "end_line", "name", "kind", "instruction", "created_by", "key", "chain",
// "preimage", "changes", ...}], "final_chain", "config"}], "warnings", "unused_build_args"},
// two-space indented, ending in a newline.
std::string PlanToJson(const Plan& plan);

}  // namespace farm::scheduler::plan

#endif  // FARM_SCHEDULER_PLAN_PRINT_H_
