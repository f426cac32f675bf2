// RUN --mount: one --mount value → the farm.v1.Mount a worker sets up, plus the canonical text
// of the mount that goes into the RUN step's key ("op" line, see planner.h). Follows
// BuildKit's parseMount: comma-separated fields (quotes allowed, as Go's csv reader), each
// value variable-expanded, types bind|cache|tmpfs|secret|ssh with their defaults (read-only
// unless cache/tmpfs, cache id = target, secret target /run/secrets/<id>, ssh id "default").
//
//   MountContext ctx;
//   ctx.filename = "Dockerfile";
//   ctx.pos = run.pos;  // errors are "Dockerfile:LINE:COL: --mount=VALUE: what"
//   ctx.escape = df.escape;
//   ctx.env = lookup;   // the variables visible to the RUN
//   ctx.workdir = "/src";
//   ASSIGN_OR_RETURN(RunMount m, ParseRunMount("type=cache,target=.cache", ctx));
//   // m.proto.target() == "/src/.cache", m.canonical == "type=cache,target=/src/.cache,..."
#ifndef FARM_SCHEDULER_PLAN_MOUNTS_H_
#define FARM_SCHEDULER_PLAN_MOUNTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "farm/v1/step.pb.h"
#include "scheduler/dockerfile/parser.h"
#include "scheduler/dockerfile/shell_lex.h"

namespace farm::scheduler::plan {

// Where a --mount value is parsed: the RUN it belongs to and what expansion sees.
struct MountContext {
  std::string filename;       // for errors
  dockerfile::Position pos;   // the RUN instruction, for errors
  char escape = '\\';         // the Dockerfile's escape token
  dockerfile::EnvLookup env;  // variables visible to the RUN; null = none set
  std::string workdir;        // relative targets resolve against it ("" = "/")
  int ssh_index = 0;          // SSH mounts before this one in the same RUN
};

struct RunMount {
  farm::v1::Mount proto;  // everything but `from` (set by the planner once it is resolved)
  std::string from;       // the from= value (a stage or an image); "" = the build context
  bool has_from = false;  // from= was given (even empty)
  // "type=T,target=/abs[,from=F][,source=S][,id=I][,sharing=S],ro|rw[,mode=0NNN][,uid=N]
  // [,gid=N][,size=N][,env=E][,required]": every field that changes what the RUN sees.
  std::string canonical;
};

// Parses one --mount value. Errors are INVALID_ARGUMENT "FILE:LINE:COL: --mount=VALUE: what"
// (an unknown type or key, a key the type does not take, a bad bool/size/mode, a missing
// target, an unterminated quote, an expansion error).
absl::StatusOr<RunMount> ParseRunMount(absl::string_view value, const MountContext& ctx);

}  // namespace farm::scheduler::plan

#endif  // FARM_SCHEDULER_PLAN_MOUNTS_H_
