// Stage 3 of the Dockerfile front end: typed instructions → a DAG of stages and content-keyed
// steps, with the image configuration each instruction leaves behind.
//
// The cache-key rule, in one place (every machine computes the same key for the same inputs):
//
//   key(step) = sha256 of the lines, in this order,
//     version    "farm-key-v1"
//     parent     the chain key of the filesystem the step starts from (omitted for COPY --link)
//     op         the canonical instruction after variable expansion (RUN: the final argv
//                with unquoted whitespace runs collapsed, mounts, network, security; COPY/ADD:
//                sources, absolute destination, --chown/--chmod/--parents/--exclude/--link)
//     env        RUN only: every variable of the step's environment, i.e. the image's Env
//                plus the stage's ARGs that have a value (proxy ARGs excluded)
//     user, workdir, shell, platform
//     inputs     COPY/ADD from the context: for each match, each file's relative path, type,
//                permission bits (only the executable bit with normalize_permissions), SHA-256 and
//                symlink target, never mtimes or host paths; COPY --from / mounts from a stage:
//                that stage's chain key; from an image: its diff_id chain; heredoc bodies
//     layer      compression, level, SOURCE_DATE_EPOCH, normalize_permissions
//   chain(step) = key(step), except COPY --link: sha256(version, parent chain, key(step))
//   chain(FROM scratch) = sha256(version, "FROM scratch", platform)
//   chain(FROM image)   = sha256(version, "FROM", platform, the image's diff_ids)
//   chain(FROM stage)   = that stage's final chain
// Metadata-only instructions (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, USER, VOLUME, STOPSIGNAL,
// HEALTHCHECK, SHELL, ONBUILD, MAINTAINER, ARG) change the config and have no key; they affect
// later keys only through the fields above (env, user, workdir, shell).
//
// Every key keeps its preimage (the lines above), so a cache miss can be explained field by
// field (`farm why-miss`).
//
// Beside the planner: keys.h makes each preimage line canonical and hashes it, mounts.h parses
// RUN --mount, history.h writes each step's created_by, print.h prints a plan (`farm plan`).
//
//   scheduler::plan::PlanOptions opts;
//   opts.build_args = {{"VERSION", "1.2"}};
//   opts.resolver = resolver;          // may be null: FROM images get placeholder keys
//   opts.context = &context_tree;      // may be null: COPY from the context gets a placeholder
//   ASSIGN_OR_RETURN(scheduler::plan::Plan p, scheduler::plan::MakePlan(dockerfile, opts));
#ifndef FARM_SCHEDULER_PLAN_PLANNER_H_
#define FARM_SCHEDULER_PLAN_PLANNER_H_

#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "auth/secret_key.h"
#include "farm/v1/step.pb.h"
#include "oci/config.h"
#include "oci/platform.h"
#include "scheduler/dockerfile/instructions.h"
#include "scheduler/image/resolver.h"
#include "worker/copy/source_tree.h"

namespace farm::scheduler::plan {

// PATH for FROM scratch, and for a RUN whose environment sets none.
inline constexpr char kDefaultPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// A named build context (buildx --build-context NAME=..., bake's `contexts`): what a FROM, a
// COPY --from= or a RUN --mount from= naming it reads, when no stage of the Dockerfile has
// that name. One of:
struct NamedContext {
  // An image reference ("docker-image://REF" without the scheme): resolved and keyed like a
  // FROM image (by its diff_ids); FROM NAME builds on it.
  std::string image;
  // A local directory, hashed (.dockerignore applied), and its REAPI root: COPY --from=NAME
  // and RUN --mount=from=NAME read its files, keyed by their content like the main context.
  // FROM NAME of a directory is refused.
  const worker::copy::SourceTree* tree = nullptr;
  farm::v1::ContextRoot root;
};

struct PlanOptions {
  std::map<std::string, std::string> build_args;  // --build-arg NAME=VALUE
  std::string target;                             // --target; "" = the last stage
  std::string platform = "linux/amd64";           // the target platform
  std::string build_platform = "linux/amd64";     // the platform farm runs on
  image::BaseImageResolver* resolver = nullptr;
  // When the resolver answers NOT_FOUND, plan with a placeholder key (as with no resolver)
  // instead of failing: `farm plan` with only the local image store.
  bool allow_unresolved = false;
  // The build context, hashed (files carry digests), .dockerignore already applied.
  const worker::copy::SourceTree* context = nullptr;
  farm::v1::ContextRoot context_root;                  // its REAPI root Directory, for StepRequests
  std::map<std::string, NamedContext> named_contexts;  // by name
  farm::v1::LayerOptions layer_options;
  // The network of RUN steps without --network (`farm build --network`): default|none|host.
  std::string default_network = "default";
  // Entitlements (executor/entitlements.h). With `check_entitlements`, a RUN that needs one
  // (--network=host, --security=insecure) must find it both in `allowed_entitlements` (the
  // build asked: --allow) and in `permitted_entitlements` (the host permits it), else planning
  // fails with PERMISSION_DENIED at the RUN's position, saying which is missing.
  // `permitted_by` names the host's side in that message and how to change it, e.g.
  // "farm-scheduler (--allow-entitlement)".
  bool check_entitlements = false;
  std::set<std::string> allowed_entitlements;
  std::set<std::string> permitted_entitlements;
  std::string permitted_by = "this host";
  // Secret id → a keyed digest of its value (SecretDigests below):
  // a RUN that mounts a secret is keyed by it, so a different secret value never hits
  // another's layer and the value itself is never in a key. Absent: "(not provided)".
  std::map<std::string, std::string> secret_digests;
};

enum class StepKind { kRun, kCopy, kWorkdir, kMetadata };

// Where a COPY --from / RUN --mount from= reads: another stage or an image.
struct SourceRef {
  int stage = -1;                             // a stage index, or -1
  std::optional<image::ResolvedImage> image;  // an image, when stage == -1
  std::string chain;                          // the key material it contributes
};

struct Step {
  StepKind kind = StepKind::kMetadata;
  std::string name;         // "RUN", "COPY", ... (ONBUILD triggers carry the trigger's name)
  std::string instruction;  // canonical, after expansion, e.g. "COPY --chown=app a.txt /app/"
  std::string created_by;   // the history entry's created_by, BuildKit's form
  dockerfile::Position pos;
  int end_line = 0;
  bool from_onbuild = false;  // a trigger inherited from the base image
  bool in_history = true;     // false for ONBUILD, which BuildKit records in the config only
  std::string key;            // hex; empty for metadata-only steps
  std::string chain;          // hex: the filesystem after this step
  std::vector<std::pair<std::string, std::string>> preimage;
  // COPY/ADD from the context: one line per selected entry, "path\ttype\tmode\tdigest" (what
  // the "inputs" preimage line hashes), so a miss can name the file that changed.
  std::vector<std::string> inputs;
  // For layer-producing steps: the request to execute, complete except for `parents` and the
  // Source.layers of sources named in `copy_from` / `mount_from` (known only after those
  // stages are built).
  farm::v1::StepRequest request;
  std::optional<SourceRef> copy_from;
  std::map<int, SourceRef> mount_from;  // RunOp.mounts index → source
  // The container config after this instruction, and what the instruction changed.
  oci::ContainerConfig config;
  std::vector<std::string> changes;
};

struct Stage {
  int index = 0;
  std::string name;  // lowercased AS name, "" if none
  enum class BaseKind { kScratch, kImage, kStage } base_kind = BaseKind::kScratch;
  std::string base_ref;  // after expansion
  int base_stage = -1;
  std::optional<image::ResolvedImage> base_image;
  bool base_resolved = true;  // false: an image the resolver could not be asked about
  std::string platform;
  std::string base_chain;
  std::vector<Step> steps;
  // The final config: base config + the instructions' changes (diff_ids and history are
  // filled by image assembly).
  oci::ImageConfig config;
  std::string author;  // MAINTAINER
  std::string final_chain;
  std::set<int> depends_on;  // stages that must be built first
  dockerfile::Position pos;
};

struct Plan {
  std::string filename;
  std::vector<Stage> stages;  // only the stages the target needs, in build order
  int target = -1;            // index into `stages`
  std::vector<std::string> warnings;
  std::vector<std::string> unused_build_args;
};

// Plans `df` for `options.target`. Errors are INVALID_ARGUMENT/NOT_FOUND with the Dockerfile
// position ("Dockerfile:12:3: ..."): unknown --target, stage cycles, COPY --from an unknown
// stage that is no image, expansion errors, COPY sources missing from the context, bad
// --mount/--chmod/EXPOSE/STOPSIGNAL values, unsupported platforms of FROM lines; and
// PERMISSION_DENIED for a RUN needing an entitlement the build or the host lacks.
absl::StatusOr<Plan> MakePlan(const dockerfile::Dockerfile& df, const PlanOptions& options);

// PlanOptions::secret_digests for secret values (id → value): each value's HMAC under `key`
// with the purpose "farm.secret.v1". farm build and farm-scheduler both key secrets this way.
std::map<std::string, std::string> SecretDigests(const auth::SecretKey& key,
                                                 const std::map<std::string, std::string>& values);

}  // namespace farm::scheduler::plan

#endif  // FARM_SCHEDULER_PLAN_PLANNER_H_
