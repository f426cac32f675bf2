#include "scheduler/plan/planner.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/fs.h"
#include "common/patternmatcher.h"
#include "executor/entitlements.h"
#include "scheduler/dockerfile/shell_lex.h"
#include "scheduler/plan/history.h"
#include "scheduler/plan/keys.h"
#include "scheduler/plan/mounts.h"
#include "worker/copy/select.h"

namespace farm::scheduler::plan {

namespace {

using dockerfile::Position;

const char* const kProxyArgs[] = {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy",
                                  "FTP_PROXY",  "ftp_proxy",  "NO_PROXY",    "no_proxy",
                                  "ALL_PROXY",  "all_proxy"};

bool IsProxyArg(absl::string_view name) {
  for (const char* p : kProxyArgs) {
    if (name == p) return true;
  }
  return false;
}

// Linux signal names for STOPSIGNAL validation.
bool ValidSignal(absl::string_view sig) {
  static const char* const kNames[] = {
      "ABRT",   "ALRM",   "BUS",  "CHLD", "CLD",    "CONT",  "FPE",  "HUP",  "ILL",
      "INT",    "IO",     "IOT",  "KILL", "PIPE",   "POLL",  "PROF", "PWR",  "QUIT",
      "SEGV",   "STKFLT", "STOP", "SYS",  "TERM",   "TRAP",  "TSTP", "TTIN", "TTOU",
      "UNUSED", "URG",    "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ"};
  std::string s = absl::AsciiStrToUpper(sig);
  int64_t n;
  if (absl::SimpleAtoi(s, &n)) return n >= 1 && n <= 64;
  if (absl::StartsWith(s, "SIG")) s = s.substr(3);
  if (absl::StartsWith(s, "RTMIN") || absl::StartsWith(s, "RTMAX")) return true;
  for (const char* k : kNames) {
    if (s == k) return true;
  }
  return false;
}

// Resolves `path` against `workdir` like BuildKit's pathRelativeToWorkingDir, keeping a
// trailing slash ("dir semantics") and treating "." as a directory.
std::string AbsDest(const std::string& workdir, const std::string& dest) {
  bool dir = dest.empty() || dest == "." || dest == ".." || dest.back() == '/' ||
             absl::EndsWith(dest, "/.") || absl::EndsWith(dest, "/..");
  std::string joined = (!dest.empty() && dest[0] == '/')
                           ? common::CleanPath(dest)
                           : common::CleanPath(absl::StrCat("/", workdir, "/", dest));
  if (dir && joined != "/") joined += "/";
  return joined;
}

// EXPOSE port specs: "80", "80/tcp", "53/udp", "8000-8002/tcp".
absl::StatusOr<std::vector<std::string>> ParsePorts(absl::string_view spec) {
  std::string s(spec);
  std::string proto = "tcp";
  size_t slash = s.find('/');
  if (slash != std::string::npos) {
    proto = absl::AsciiStrToLower(s.substr(slash + 1));
    s = s.substr(0, slash);
    if (proto != "tcp" && proto != "udp" && proto != "sctp") {
      return absl::InvalidArgumentError(absl::StrCat("invalid proto: ", proto));
    }
  }
  if (s.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid port \"", spec, "\": EXPOSE takes no host address"));
  }
  uint32_t lo, hi;
  size_t dash = s.find('-');
  bool ok = dash == std::string::npos ? (absl::SimpleAtoi(s, &lo) && (hi = lo, true))
                                      : (absl::SimpleAtoi(s.substr(0, dash), &lo) &&
                                         absl::SimpleAtoi(s.substr(dash + 1), &hi));
  if (!ok || lo > 65535 || hi > 65535 || hi < lo) {
    return absl::InvalidArgumentError(absl::StrCat("invalid containerPort: ", s));
  }
  std::vector<std::string> out;
  for (uint32_t p = lo; p <= hi; ++p) out.push_back(absl::StrCat(p, "/", proto));
  return out;
}

bool IsHttpUrl(absl::string_view s) {
  return absl::StartsWith(s, "http://") || absl::StartsWith(s, "https://");
}
bool IsGitUrl(absl::string_view s) {
  return absl::StartsWith(s, "git@") || absl::StartsWith(s, "git://") ||
         (IsHttpUrl(s) && (absl::EndsWith(s, ".git") || absl::StrContains(s, ".git#")));
}

// Lists how a config changed, for `farm plan`.
std::vector<std::string> DiffConfig(const oci::ContainerConfig& a, const oci::ContainerConfig& b) {
  std::vector<std::string> out;
  for (const std::string& e : b.env) {
    if (std::find(a.env.begin(), a.env.end(), e) == a.env.end()) out.push_back("Env: " + e);
  }
  if (a.user != b.user) out.push_back("User: " + b.user);
  if (a.working_dir != b.working_dir) out.push_back("WorkingDir: " + b.working_dir);
  if (a.entrypoint != b.entrypoint) {
    out.push_back("Entrypoint: " + (b.entrypoint ? JsonStringArray(*b.entrypoint) : "null"));
  }
  if (a.cmd != b.cmd) out.push_back("Cmd: " + (b.cmd ? JsonStringArray(*b.cmd) : "null"));
  for (const std::string& p : b.exposed_ports) {
    if (!a.exposed_ports.count(p)) out.push_back("ExposedPorts: " + p);
  }
  for (const std::string& v : b.volumes) {
    if (!a.volumes.count(v)) out.push_back("Volumes: " + v);
  }
  for (const auto& [k, v] : b.labels) {
    auto it = a.labels.find(k);
    if (it == a.labels.end() || it->second != v) out.push_back("Labels: " + k + "=" + v);
  }
  if (a.stop_signal != b.stop_signal) out.push_back("StopSignal: " + b.stop_signal);
  if (!(a.healthcheck == b.healthcheck)) {
    out.push_back("Healthcheck: " +
                  (b.healthcheck ? JsonStringArray(b.healthcheck->test) : "null"));
  }
  if (a.on_build != b.on_build) {
    for (size_t i = a.on_build.size(); i < b.on_build.size(); ++i) {
      out.push_back("OnBuild: " + b.on_build[i]);
    }
  }
  if (a.shell != b.shell) out.push_back("Shell: " + (b.shell ? JsonStringArray(*b.shell) : "null"));
  return out;
}

struct StageState {
  Stage* st = nullptr;
  // Declared ARGs, each once, where it was first declared (RUN's history lists them so).
  std::vector<std::pair<std::string, std::optional<std::string>>> args;
  // The environment as BuildKit's build state holds it: the image's Env, then each ENV and each
  // ARG with a value in Dockerfile order, the latest of a name winning (`ARG X` after `ENV X=`
  // overrides it for expansion and RUN, though not in the image config). Only .env is used.
  oci::ContainerConfig state;
  std::string chain;
  bool cmd_set = false;
  std::string layer_opts;
};

class Planner {
 public:
  Planner(const dockerfile::Dockerfile& df, const PlanOptions& opts) : df_(df), opts_(opts) {}

  absl::StatusOr<Plan> Run() {
    absl::StatusOr<oci::Platform> platform = oci::Platform::Parse(opts_.platform);
    if (!platform.ok()) return platform.status();
    platform_ = platform->String();
    absl::StatusOr<oci::Platform> build_platform = oci::Platform::Parse(opts_.build_platform);
    if (!build_platform.ok()) return build_platform.status();
    layer_opts_ = LayerOptionsLine(opts_.layer_options);

    // Predefined platform ARGs live in the global scope.
    auto add_platform = [&](const std::string& prefix, const std::string& p) {
      std::vector<std::string> parts = absl::StrSplit(p, '/');
      meta_.push_back({prefix + "PLATFORM", p});
      meta_.push_back({prefix + "OS", parts[0]});
      meta_.push_back({prefix + "ARCH", parts[1]});
      meta_.push_back({prefix + "VARIANT", parts.size() > 2 ? parts[2] : ""});
    };
    add_platform("TARGET", platform_);
    add_platform("BUILD", build_platform->String());
    predefined_count_ = meta_.size();
    dockerfile::ShellLex lex(df_.escape);
    for (size_t i = 0; i < df_.meta_args.size(); ++i) {
      const dockerfile::ArgDef& a = df_.meta_args[i];
      Position pos = df_.meta_arg_positions[i];
      absl::StatusOr<std::string> name = lex.ProcessWord(a.key, MetaEnv());
      if (!name.ok()) return Err(pos, name.status().message());
      std::optional<std::string> value;
      auto ba = opts_.build_args.find(*name);
      if (ba != opts_.build_args.end()) {
        value = ba->second;
        used_args_.insert(*name);
      } else if (a.value) {
        absl::StatusOr<std::string> v = lex.ProcessWord(*a.value, MetaEnv());
        if (!v.ok()) return Err(pos, v.status().message());
        value = *v;
      } else if (auto pre = MetaValue(*name)) {
        value = pre;
      }
      meta_.push_back({*name, value});
      used_args_.insert(*name);
    }

    // The target stage.
    int target = static_cast<int>(df_.stages.size()) - 1;
    if (!opts_.target.empty()) {
      target = FindStageByName(absl::AsciiStrToLower(opts_.target), df_.stages.size());
      if (target < 0) {
        return absl::NotFoundError(absl::StrCat(df_.filename, ": target stage \"", opts_.target,
                                                "\" could not be found (stages: ", StageNames(),
                                                ")"));
      }
    }
    planned_.resize(df_.stages.size());
    state_.assign(df_.stages.size(), 0);
    absl::Status s = PlanStage(target, df_.stages[target].pos);
    if (!s.ok()) return s;

    Plan plan;
    plan.filename = df_.filename;
    std::map<int, int> remap;
    for (int idx : order_) {
      remap[idx] = static_cast<int>(plan.stages.size());
      plan.stages.push_back(std::move(*planned_[idx]));
    }
    plan.target = remap[target];
    plan.warnings = std::move(warnings_);
    for (const auto& w : df_.warnings) {
      plan.warnings.push_back(absl::StrCat(df_.filename, ":", w.line, ": ", w.message));
    }
    for (const auto& [k, v] : opts_.build_args) {
      if (!used_args_.count(k) && !IsProxyArg(k)) plan.unused_build_args.push_back(k);
    }
    if (!plan.unused_build_args.empty()) {
      plan.warnings.push_back(absl::StrCat("One or more build-args [",
                                           absl::StrJoin(plan.unused_build_args, " "),
                                           "] were not consumed"));
    }
    return plan;
  }

 private:
  absl::Status Err(Position pos, absl::string_view msg) const {
    return dockerfile::ErrorAt(df_.filename, pos, msg);
  }
  absl::Status ErrCode(absl::StatusCode code, Position pos, absl::string_view msg) const {
    return absl::Status(code,
                        absl::StrCat(df_.filename, ":", pos.line, ":", pos.column, ": ", msg));
  }

  std::optional<std::string> MetaValue(absl::string_view name) const {
    for (auto it = meta_.rbegin(); it != meta_.rend(); ++it) {
      if (it->first == name) return it->second;
    }
    return std::nullopt;
  }

  dockerfile::EnvLookup MetaEnv() const {
    return [this](absl::string_view name) { return MetaValue(name); };
  }

  std::string StageNames() const {
    std::vector<std::string> names;
    for (const auto& s : df_.stages) {
      if (!s.from.stage_name.empty()) names.push_back(s.from.stage_name);
    }
    return names.empty() ? "none named" : absl::StrJoin(names, ", ");
  }

  // The last stage named `name` among the first `limit` (BuildKit's statesByName keeps the
  // latest of duplicate names).
  int FindStageByName(const std::string& name, size_t limit) const {
    for (size_t i = std::min(limit, df_.stages.size()); i-- > 0;) {
      if (df_.stages[i].from.stage_name == name) return static_cast<int>(i);
    }
    return -1;
  }

  // The named context `name` refers to, unless a stage among the first `limit` has that name
  // (a stage wins, as the Dockerfile reads).
  const NamedContext* Named(const std::string& name, size_t limit) const {
    auto it = opts_.named_contexts.find(name);
    if (it == opts_.named_contexts.end()) return nullptr;
    if (FindStageByName(absl::AsciiStrToLower(name), limit) >= 0) return nullptr;
    return &it->second;
  }

  // Resolves a COPY --from / --mount from= value: a stage (by name or index), a named context
  // that is an image, or an image. (A named directory context is handled by the callers.)
  absl::StatusOr<SourceRef> ResolveSource(const std::string& from_name, int current, Position pos,
                                          const std::string& platform) {
    SourceRef ref;
    std::string from = from_name;
    if (const NamedContext* nc = Named(from_name, df_.stages.size())) from = nc->image;
    std::string lower = absl::AsciiStrToLower(from);
    int idx = FindStageByName(lower, df_.stages.size());
    int64_t n;
    if (idx < 0 && absl::SimpleAtoi(from, &n)) {
      if (n < 0 || n >= static_cast<int64_t>(df_.stages.size())) {
        return Err(pos, absl::StrCat("invalid stage index ", from, ": the Dockerfile has ",
                                     df_.stages.size(), " stage(s)"));
      }
      idx = static_cast<int>(n);
    }
    if (idx >= 0) {
      if (idx == current) {
        return Err(pos, absl::StrCat("stage \"", from, "\" refers to itself"));
      }
      absl::Status s = PlanStage(idx, pos);
      if (!s.ok()) return s;
      ref.stage = idx;
      ref.chain = planned_[idx]->final_chain;
      return ref;
    }
    if (opts_.resolver == nullptr) {
      ref.chain = UnresolvedImageChain(from, platform);
      warnings_.push_back(absl::StrCat(df_.filename, ":", pos.line, ":", pos.column, ": image \"",
                                       from, "\" not resolved: its key is a placeholder"));
      ResolvedImageStub(&ref, from);
      return ref;
    }
    absl::StatusOr<image::ResolvedImage> img = opts_.resolver->Resolve(from, platform);
    if (!img.ok() && absl::IsNotFound(img.status()) && opts_.allow_unresolved) {
      ref.chain = UnresolvedImageChain(from, platform);
      Warn(absl::StrCat(df_.filename, ":", pos.line, ":", pos.column, ": image \"", from,
                        "\" is not in the local image store: its key is a placeholder"));
      ResolvedImageStub(&ref, from);
      return ref;
    }
    if (!img.ok()) {
      return ErrCode(img.status().code(), pos,
                     absl::StrCat("\"", from, "\" is neither a stage of this Dockerfile nor an ",
                                  "image that could be resolved: ", img.status().message()));
    }
    ref.chain = ImageChain(platform, img->config.diff_ids);
    ref.image = *std::move(img);
    return ref;
  }

  static void ResolvedImageStub(SourceRef* ref, const std::string& from) {
    image::ResolvedImage stub;
    stub.reference = from;
    ref->image = std::move(stub);
  }

  absl::Status PlanStage(int idx, Position ref_pos) {
    if (state_[idx] == 2) return absl::OkStatus();
    if (state_[idx] == 1) {
      std::vector<std::string> cycle;
      auto it = std::find(stack_.begin(), stack_.end(), idx);
      for (; it != stack_.end(); ++it) cycle.push_back(StageLabel(*it));
      cycle.push_back(StageLabel(idx));
      return Err(ref_pos, absl::StrCat("stage cycle: ", absl::StrJoin(cycle, " -> ")));
    }
    state_[idx] = 1;
    stack_.push_back(idx);
    const dockerfile::Stage& ds = df_.stages[idx];
    Stage st;
    st.index = idx;
    st.name = ds.from.stage_name;
    st.pos = ds.pos;
    dockerfile::ShellLex lex(df_.escape);
    absl::StatusOr<dockerfile::ShellLex::Result> base = lex.Process(ds.from.image, MetaEnv());
    if (!base.ok()) return Err(ds.pos, base.status().message());
    NoteUndefined(*base, ds.pos);
    st.base_ref = base->word;
    if (st.base_ref.empty()) {
      return Err(ds.pos, absl::StrCat("base name (", ds.from.image, ") should not be blank"));
    }
    st.platform = platform_;
    if (!ds.from.platform.empty()) {
      absl::StatusOr<std::string> p = lex.ProcessWord(ds.from.platform, MetaEnv());
      if (!p.ok()) return Err(ds.pos, p.status().message());
      absl::StatusOr<oci::Platform> np = oci::Platform::Parse(*p);
      if (!np.ok()) return Err(ds.pos, np.status().message());
      st.platform = np->String();
    }

    int base_stage = FindStageByName(absl::AsciiStrToLower(st.base_ref), idx);
    if (base_stage >= 0) {
      absl::Status s = PlanStage(base_stage, ds.pos);
      if (!s.ok()) return s;
      const Stage& b = *planned_[base_stage];
      st.base_kind = Stage::BaseKind::kStage;
      st.base_stage = base_stage;
      st.config = b.config;
      st.base_chain = b.final_chain;
      st.platform = b.platform;
      st.depends_on.insert(base_stage);
    } else if (absl::AsciiStrToLower(st.base_ref) == "scratch") {
      st.base_kind = Stage::BaseKind::kScratch;
      st.config = oci::ImageConfig();
      st.config.config.env = {absl::StrCat("PATH=", kDefaultPath)};
      st.config.config.working_dir = "/";  // BuildKit's emptyImage
      st.base_chain = ScratchChain(st.platform);
    } else {
      st.base_kind = Stage::BaseKind::kImage;
      if (const NamedContext* nc = Named(st.base_ref, idx)) {
        if (nc->image.empty()) {
          return Err(ds.pos, absl::StrCat("FROM ", st.base_ref,
                                          ": a named context that is a directory can not be a "
                                          "base (use it with COPY --from=",
                                          st.base_ref, ")"));
        }
        st.base_ref = nc->image;
      }
      if (opts_.resolver != nullptr) {
        absl::StatusOr<image::ResolvedImage> img =
            opts_.resolver->Resolve(st.base_ref, st.platform);
        if (!img.ok() && absl::IsNotFound(img.status()) && opts_.allow_unresolved) {
          st.base_resolved = false;
          st.config = oci::ImageConfig();
          st.base_chain = UnresolvedImageChain(st.base_ref, st.platform);
          Warn(absl::StrCat(df_.filename, ":", ds.pos.line, ":", ds.pos.column, ": base image \"",
                            st.base_ref,
                            "\" is not in the local image store: keys below it are "
                            "placeholders and its config is not applied"));
        } else if (!img.ok()) {
          return ErrCode(img.status().code(), ds.pos,
                         absl::StrCat("FROM ", st.base_ref, ": ", img.status().message()));
        } else {
          st.config = img->config;
          st.base_chain = ImageChain(st.platform, img->config.diff_ids);
          st.base_image = *std::move(img);
        }
      } else {
        st.base_resolved = false;
        st.config = oci::ImageConfig();
        st.base_chain = UnresolvedImageChain(st.base_ref, st.platform);
        warnings_.push_back(absl::StrCat(
            df_.filename, ":", ds.pos.line, ":", ds.pos.column, ": base image \"", st.base_ref,
            "\" not resolved: keys below it are placeholders and its config (ENV, WORKDIR, ",
            "USER, ONBUILD) is not applied"));
      }
    }
    std::vector<std::string> parts = absl::StrSplit(st.platform, '/');
    st.config.os = parts[0];
    st.config.architecture = parts[1];
    st.config.variant = parts.size() > 2 ? parts[2] : "";

    // BuildKit makes sure PATH is set, in the config too (a base image may have none).
    if (st.base_resolved && !st.config.config.GetEnv("PATH")) {
      st.config.config.env.push_back(absl::StrCat("PATH=", kDefaultPath));
    }
    StageState ss;
    ss.st = &st;
    ss.state.env = st.config.config.env;
    ss.chain = st.base_chain;

    // ONBUILD triggers of the base run first, then are dropped from the new image.
    std::vector<std::string> triggers = st.config.config.on_build;
    st.config.config.on_build.clear();
    for (const std::string& t : triggers) {
      std::string where = absl::StrCat("ONBUILD trigger of ", st.base_ref);
      absl::StatusOr<dockerfile::SyntaxTree> tree = dockerfile::Parse(t, where);
      if (!tree.ok()) {
        return Err(ds.pos, absl::StrCat("ONBUILD trigger \"", t, "\" of ", st.base_ref, ": ",
                                        tree.status().message()));
      }
      for (const dockerfile::Node& n : tree->nodes) {
        absl::StatusOr<dockerfile::Instruction> ins = dockerfile::ParseInstruction(n, where);
        if (!ins.ok()) {
          return Err(ds.pos, absl::StrCat("ONBUILD trigger of ", st.base_ref, ": ",
                                          ins.status().message()));
        }
        ins->pos = ds.pos;
        ins->end_line = ds.pos.line;
        absl::Status s = Process(&ss, *ins, /*from_onbuild=*/true);
        if (!s.ok()) return s;
      }
    }
    for (const dockerfile::Instruction& ins : ds.instructions) {
      absl::Status s = Process(&ss, ins, false);
      if (!s.ok()) return s;
    }
    st.final_chain = ss.chain;
    planned_[idx] = std::move(st);
    state_[idx] = 2;
    stack_.pop_back();
    order_.push_back(idx);
    return absl::OkStatus();
  }

  std::string StageLabel(int idx) const {
    const std::string& n = df_.stages[idx].from.stage_name;
    return n.empty() ? absl::StrCat(idx) : absl::StrCat("\"", n, "\"");
  }

  void NoteUndefined(const dockerfile::ShellLex::Result& r, Position pos) {
    for (const std::string& v : r.unmatched) {
      Warn(absl::StrCat(df_.filename, ":", pos.line, ":", pos.column,
                        ": UndefinedVar: usage of undefined variable '$", v, "'"));
    }
  }

  void Warn(std::string w) {
    if (std::find(warnings_.begin(), warnings_.end(), w) == warnings_.end()) {
      warnings_.push_back(std::move(w));
    }
  }

  // Variables visible to expansion: the build state's environment (ENV and ARG, the latest
  // declaration of a name winning, as in BuildKit).
  dockerfile::EnvLookup StageEnv(const StageState& ss) const {
    return [&ss](absl::string_view name) -> std::optional<std::string> {
      return ss.state.GetEnv(name);
    };
  }

  absl::StatusOr<std::string> Expand(StageState& ss, const std::string& word, Position pos) {
    dockerfile::ShellLex lex(df_.escape);
    absl::StatusOr<dockerfile::ShellLex::Result> r = lex.Process(word, StageEnv(ss));
    if (!r.ok()) return Err(pos, r.status().message());
    NoteUndefined(*r, pos);
    return r->word;
  }

  std::vector<std::string> Shell(const StageState& ss) const {
    const auto& sh = ss.st->config.config.shell;
    if (sh && !sh->empty()) return *sh;
    return {"/bin/sh", "-c"};
  }

  // The environment a RUN sees: the build state's (the image Env, PATH always set, and the
  // ARGs with values), plus the proxy variables when asked.
  std::vector<std::string> RunEnv(const StageState& ss, bool with_proxies) const {
    std::vector<std::string> env = ss.state.env;
    if (!ss.state.GetEnv("PATH")) env.push_back(absl::StrCat("PATH=", kDefaultPath));
    if (with_proxies) {
      for (const char* p : kProxyArgs) {
        auto it = opts_.build_args.find(p);
        if (it != opts_.build_args.end()) env.push_back(absl::StrCat(p, "=", it->second));
      }
    }
    return env;
  }

  Step NewStep(const StageState& ss, const dockerfile::Instruction& ins, bool from_onbuild) {
    Step step;
    step.name = ins.name;
    step.pos = ins.pos;
    step.end_line = ins.end_line;
    step.from_onbuild = from_onbuild;
    step.config = ss.st->config.config;
    return step;
  }

  void Finish(StageState& ss, Step step, const oci::ContainerConfig& before) {
    step.config = ss.st->config.config;
    for (std::string& c : DiffConfig(before, step.config)) step.changes.push_back(std::move(c));
    if (step.kind == StepKind::kMetadata) {
      step.chain = ss.chain;
      if (step.instruction.empty()) step.instruction = step.created_by;
    }
    ss.st->steps.push_back(std::move(step));
  }

  void FillExecEnv(const StageState& ss, farm::v1::ExecEnv* env, bool run) const {
    const oci::ContainerConfig& c = ss.st->config.config;
    for (const std::string& e : run ? RunEnv(ss, true) : c.env) env->add_env(e);
    env->set_user(c.user);
    env->set_workdir(c.working_dir.empty() ? "/" : c.working_dir);
    for (const std::string& s : Shell(ss)) env->add_shell(s);
    env->set_platform(ss.st->platform);
    env->set_hostname("farm");
  }

  // Key material for the files a source selects in the context (or an error naming them).
  absl::Status ContextInputs(StageState& ss, const std::vector<std::string>& paths, bool parents,
                             const std::vector<std::string>& excludes, Position pos,
                             std::vector<std::pair<std::string, std::string>>* pre,
                             std::vector<std::string>* listing = nullptr,
                             const NamedContext* named = nullptr) {
    const worker::copy::SourceTree* tree = named != nullptr ? named->tree : opts_.context;
    if (tree == nullptr) {
      pre->push_back({"inputs", "context not hashed"});
      if (!context_warned_) {
        warnings_.push_back("build context not given: COPY/ADD keys from it are placeholders");
        context_warned_ = true;
      }
      return absl::OkStatus();
    }
    absl::StatusOr<common::PatternMatcher> ex = common::PatternMatcher::Create(excludes);
    if (!ex.ok()) return Err(pos, absl::StrCat("--exclude: ", ex.status().message()));
    worker::copy::SelectOptions so;
    so.parents = parents;
    so.excludes = ex->empty() ? nullptr : &*ex;
    absl::StatusOr<std::vector<worker::copy::Match>> matches =
        worker::copy::ResolveSources(*tree, paths, so);
    if (!matches.ok()) {
      std::string msg(matches.status().message());
      if (absl::IsNotFound(matches.status())) {
        absl::StrAppend(&msg, named != nullptr ? " in the named context" : " in the build context",
                        " (or excluded by .dockerignore)");
      }
      return ErrCode(matches.status().code(), pos, msg);
    }
    common::Sha256 h;
    int64_t files = 0, bytes = 0;
    bool exact_modes = !opts_.layer_options.normalize_permissions();
    for (const worker::copy::Match& m : *matches) {
      h.Update(absl::StrCat("match\t", m.src, "\t", m.path, "\t", m.resolved, "\t", m.base, "\n"));
      absl::Status s = worker::copy::WalkMatch(
          *tree, m, so.excludes, [&](const std::string& rel, const worker::copy::FileInfo& fi) {
            if (fi.type == worker::copy::FileType::kRegular) {
              if (!fi.digest) {
                return absl::InternalError(
                    absl::StrCat("context file ", m.path, "/", rel, " was not hashed"));
              }
              ++files;
              bytes += fi.size;
            }
            std::string line = ContextEntryLine(rel, fi, exact_modes);
            h.Update(line);
            h.Update("\n");
            if (listing != nullptr) {
              listing->push_back(absl::StrCat(m.path.empty() ? "." : m.path, rel.empty() ? "" : "/",
                                              rel, "\t", line.substr(line.find('\t') + 1)));
            }
            return absl::OkStatus();
          });
      if (!s.ok()) return Err(pos, s.message());
    }
    pre->push_back({"inputs", absl::StrCat("context sha256:", h.Finish().hash, " (", files,
                                           " files, ", bytes, " bytes)")});
    return absl::OkStatus();
  }

  absl::Status Process(StageState* ssp, const dockerfile::Instruction& ins, bool from_onbuild) {
    StageState& ss = *ssp;
    oci::ContainerConfig before = ss.st->config.config;
    oci::ContainerConfig& cfg = ss.st->config.config;
    Step step = NewStep(ss, ins, from_onbuild);
    const Position pos = ins.pos;

    if (auto* c = std::get_if<dockerfile::EnvCmd>(&ins.command)) {
      std::vector<std::pair<std::string, std::string>> kvs;
      for (const auto& kv : c->env) {
        absl::StatusOr<std::string> k = Expand(ss, kv.key, pos);
        if (!k.ok()) return k.status();
        absl::StatusOr<std::string> v = Expand(ss, kv.value, pos);
        if (!v.ok()) return v.status();
        if (k->empty()) return Err(pos, "ENV names can not be blank");
        kvs.push_back({*k, *v});
      }
      std::vector<std::string> parts;
      for (const auto& [k, v] : kvs) {
        cfg.SetEnv(k, v);
        ss.state.SetEnv(k, v);
        parts.push_back(absl::StrCat(k, "=", v));
      }
      step.created_by = absl::StrCat("ENV ", absl::StrJoin(parts, " "));
    } else if (auto* c = std::get_if<dockerfile::ArgCmd>(&ins.command)) {
      std::vector<std::string> parts;
      for (const dockerfile::ArgDef& a : c->args) {
        absl::StatusOr<std::string> k = Expand(ss, a.key, pos);
        if (!k.ok()) return k.status();
        std::optional<std::string> value;
        auto ba = opts_.build_args.find(*k);
        if (ba != opts_.build_args.end()) {
          value = ba->second;
        } else if (a.value) {
          absl::StatusOr<std::string> v = Expand(ss, *a.value, pos);
          if (!v.ok()) return v.status();
          value = *v;
        } else if (auto m = MetaValue(*k)) {
          value = m;
        }
        used_args_.insert(*k);
        auto declared = std::find_if(ss.args.begin(), ss.args.end(),
                                     [&](const auto& p) { return p.first == *k; });
        if (declared == ss.args.end()) {
          ss.args.push_back({*k, value});
        } else {
          declared->second = value;
        }
        if (value) ss.state.SetEnv(*k, *value);
        parts.push_back(value ? absl::StrCat(*k, "=", *value) : *k);
      }
      step.created_by = absl::StrCat("ARG ", absl::StrJoin(parts, " "));
    } else if (auto* c = std::get_if<dockerfile::LabelCmd>(&ins.command)) {
      std::vector<std::string> parts;
      for (const auto& kv : c->labels) {
        absl::StatusOr<std::string> k = Expand(ss, kv.key, pos);
        if (!k.ok()) return k.status();
        absl::StatusOr<std::string> v = Expand(ss, kv.value, pos);
        if (!v.ok()) return v.status();
        if (k->empty()) return Err(pos, "LABEL names can not be blank");
        cfg.labels[*k] = *v;
        parts.push_back(absl::StrCat(*k, "=", *v));
      }
      step.created_by = absl::StrCat("LABEL ", absl::StrJoin(parts, " "));
    } else if (auto* c = std::get_if<dockerfile::MaintainerCmd>(&ins.command)) {
      ss.st->config.author = c->maintainer;
      ss.st->author = c->maintainer;
      step.created_by = absl::StrCat("MAINTAINER ", c->maintainer);
      step.changes.push_back("Author: " + c->maintainer);
    } else if (auto* c = std::get_if<dockerfile::ExposeCmd>(&ins.command)) {
      std::set<std::string> ports;
      for (const std::string& p : c->ports) {
        absl::StatusOr<std::string> e = Expand(ss, p, pos);
        if (!e.ok()) return e.status();
        for (absl::string_view one : absl::StrSplit(*e, ' ', absl::SkipEmpty())) {
          absl::StatusOr<std::vector<std::string>> specs = ParsePorts(one);
          if (!specs.ok()) return Err(pos, specs.status().message());
          ports.insert(specs->begin(), specs->end());
        }
      }
      cfg.exposed_ports.insert(ports.begin(), ports.end());
      step.created_by = ExposeCreatedBy(ports);
    } else if (auto* c = std::get_if<dockerfile::UserCmd>(&ins.command)) {
      absl::StatusOr<std::string> u = Expand(ss, c->user, pos);
      if (!u.ok()) return u.status();
      cfg.user = *u;
      step.created_by = absl::StrCat("USER ", *u);
    } else if (auto* c = std::get_if<dockerfile::VolumeCmd>(&ins.command)) {
      std::vector<std::string> vols;
      for (const std::string& v : c->volumes) {
        absl::StatusOr<std::string> e = Expand(ss, v, pos);
        if (!e.ok()) return e.status();
        if (e->empty()) return Err(pos, "VOLUME specified can not be an empty string");
        cfg.volumes.insert(*e);
        vols.push_back(*e);
      }
      step.created_by = VolumeCreatedBy(vols);
    } else if (auto* c = std::get_if<dockerfile::StopSignalCmd>(&ins.command)) {
      absl::StatusOr<std::string> sig = Expand(ss, c->signal, pos);
      if (!sig.ok()) return sig.status();
      if (!ValidSignal(*sig)) return Err(pos, absl::StrCat("Invalid signal: ", *sig));
      cfg.stop_signal = *sig;
      step.created_by = absl::StrCat("STOPSIGNAL ", *sig);
    } else if (auto* c = std::get_if<dockerfile::HealthcheckCmd>(&ins.command)) {
      oci::HealthConfig h;
      h.test = c->test.args;
      h.interval_ns = c->interval_ns;
      h.timeout_ns = c->timeout_ns;
      h.start_period_ns = c->start_period_ns;
      h.start_interval_ns = c->start_interval_ns;
      h.retries = c->retries;
      // A new HEALTHCHECK replaces the whole configuration: nothing of the base's is kept.
      // HEALTHCHECK NONE is the test ["NONE"] with zero timings.
      cfg.healthcheck = h;
      step.created_by = HealthcheckCreatedBy(h);
    } else if (auto* c = std::get_if<dockerfile::ShellCmd>(&ins.command)) {
      cfg.shell = c->shell;
      step.created_by = ShellCreatedBy(c->shell);
    } else if (auto* c = std::get_if<dockerfile::OnbuildCmd>(&ins.command)) {
      cfg.on_build.push_back(c->expression);
      step.created_by = absl::StrCat("ONBUILD ", c->expression);
      step.in_history = false;  // BuildKit records ONBUILD in the config only
    } else if (auto* c = std::get_if<dockerfile::CmdCmd>(&ins.command)) {
      std::vector<std::string> args = c->command.args;
      if (c->command.prepend_shell) {
        std::vector<std::string> sh = Shell(ss);
        sh.insert(sh.end(), args.begin(), args.end());
        args = std::move(sh);
      }
      cfg.cmd = args;
      cfg.args_escaped = true;  // BuildKit sets it for every CMD (Docker reads it on Windows)
      ss.cmd_set = true;
      step.created_by = CmdCreatedBy(args);
    } else if (auto* c = std::get_if<dockerfile::EntrypointCmd>(&ins.command)) {
      std::vector<std::string> args = c->command.args;
      if (c->command.prepend_shell && !args.empty()) {
        std::vector<std::string> sh = Shell(ss);
        sh.insert(sh.end(), args.begin(), args.end());
        args = std::move(sh);
      }
      if (args.empty()) {
        cfg.entrypoint.reset();
      } else {
        cfg.entrypoint = args;
      }
      // Docker: ENTRYPOINT resets a CMD inherited from the base (not one set in this stage).
      if (!ss.cmd_set) cfg.cmd.reset();
      step.created_by = EntrypointCreatedBy(args);
    } else if (auto* c = std::get_if<dockerfile::WorkdirCmd>(&ins.command)) {
      absl::StatusOr<std::string> w = Expand(ss, c->path, pos);
      if (!w.ok()) return w.status();
      if (w->empty()) return Err(pos, "WORKDIR path can not be empty");
      std::string abs = (*w)[0] == '/'
                            ? common::CleanPath(*w)
                            : common::CleanPath(absl::StrCat(
                                  "/", cfg.working_dir.empty() ? "/" : cfg.working_dir, "/", *w));
      cfg.working_dir = abs;
      step.instruction = absl::StrCat("WORKDIR ", abs);
      step.created_by = step.instruction;
      if (abs == "/") {  // BuildKit makes no directory (and no layer) for the root
        Finish(ss, std::move(step), before);
        return absl::OkStatus();
      }
      step.kind = StepKind::kWorkdir;
      step.preimage = {{"version", kKeyVersion},      {"parent", ss.chain},
                       {"op", step.instruction},      {"user", cfg.user},
                       {"platform", ss.st->platform}, {"layer", layer_opts_}};
      step.key = KeyOf(step.preimage);
      step.chain = step.key;
      ss.chain = step.chain;
      step.request.set_key(step.key);
      step.request.set_description(step.instruction);
      FillExecEnv(ss, step.request.mutable_env(), false);
      step.request.mutable_mkdir()->set_path(abs);
      *step.request.mutable_output() = opts_.layer_options;
    } else if (auto* c = std::get_if<dockerfile::RunCmd>(&ins.command)) {
      absl::Status s = PlanRun(ss, *c, pos, &step);
      if (!s.ok()) return s;
    } else if (auto* c = std::get_if<dockerfile::CopyCmd>(&ins.command)) {
      absl::Status s = PlanCopy(ss, *c, pos, &step);
      if (!s.ok()) return s;
    }
    Finish(ss, std::move(step), before);
    return absl::OkStatus();
  }

  absl::Status PlanRun(StageState& ss, const dockerfile::RunCmd& c, Position pos, Step* step) {
    farm::v1::RunOp* run = step->request.mutable_run();
    std::vector<std::pair<std::string, std::string>> pre = {{"version", kKeyVersion},
                                                            {"parent", ss.chain}};
    // Mounts.
    std::vector<std::string> mount_canon;
    MountContext mount_ctx;
    mount_ctx.filename = df_.filename;
    mount_ctx.pos = pos;
    mount_ctx.escape = df_.escape;
    mount_ctx.env = StageEnv(ss);
    mount_ctx.workdir = ss.st->config.config.working_dir;
    for (const std::string& mv : c.mounts) {
      absl::StatusOr<RunMount> m = ParseRunMount(mv, mount_ctx);
      if (!m.ok()) return m.status();
      if (m->proto.type() == farm::v1::Mount::SSH) ++mount_ctx.ssh_index;
      int index = run->mounts_size();
      *run->add_mounts() = m->proto;
      std::string canon = m->canonical;
      const NamedContext* named_dir = nullptr;
      if (m->has_from && !m->from.empty()) {
        const NamedContext* nc = Named(m->from, df_.stages.size());
        if (nc != nullptr && nc->image.empty()) named_dir = nc;
      }
      if (named_dir != nullptr) {
        // A bind mount of a named directory context: keyed by the content it exposes.
        std::vector<std::pair<std::string, std::string>> inputs;
        std::string src = m->proto.source().empty() ? "/" : m->proto.source();
        absl::Status s = ContextInputs(ss, {src}, false, {}, pos, &inputs, nullptr, named_dir);
        if (!s.ok()) return s;
        for (auto& kv : inputs) absl::StrAppend(&canon, " ", kv.second);
        *run->mutable_mounts(index)->mutable_from()->mutable_context() = named_dir->root;
      } else if (m->has_from && !m->from.empty()) {
        absl::StatusOr<SourceRef> ref = ResolveSource(m->from, ss.st->index, pos, ss.st->platform);
        if (!ref.ok()) return ref.status();
        if (ref->stage >= 0) ss.st->depends_on.insert(ref->stage);
        absl::StrAppend(&canon, " from-chain=", ref->chain);
        step->mount_from[index] = *std::move(ref);
      } else if (m->proto.type() == farm::v1::Mount::BIND) {
        // A bind mount of the context: keyed by the content it exposes.
        std::vector<std::pair<std::string, std::string>> inputs;
        std::string src = m->proto.source().empty() ? "/" : m->proto.source();
        absl::Status s = ContextInputs(ss, {src}, false, {}, pos, &inputs);
        if (!s.ok()) return s;
        for (auto& kv : inputs) absl::StrAppend(&canon, " ", kv.second);
        *run->mutable_mounts(index)->mutable_from()->mutable_context() = opts_.context_root;
      }
      if (m->proto.type() == farm::v1::Mount::SECRET) {
        const std::string& id = m->proto.id().empty() ? m->proto.target() : m->proto.id();
        auto d = opts_.secret_digests.find(id);
        pre.push_back({"secret", absl::StrCat(id, " ",
                                              d == opts_.secret_digests.end() ? "(not provided)"
                                                                              : d->second)});
      }
      mount_canon.push_back(canon);
    }
    if (!c.network.empty() && c.network != "default" && c.network != "none" &&
        c.network != "host") {
      return Err(pos, absl::StrCat("unsupported network mode \"", c.network,
                                   "\" (want default, none or host)"));
    }
    if (!c.security.empty() && c.security != "sandbox" && c.security != "insecure") {
      return Err(pos, absl::StrCat("unsupported security mode \"", c.security,
                                   "\" (want sandbox or insecure)"));
    }
    run->set_network(c.network.empty() ? opts_.default_network : c.network);
    run->set_security(c.security.empty() ? "sandbox" : c.security);
    if (opts_.check_entitlements) {
      for (const std::string& e : executor::RequiredEntitlements(*run)) {
        std::string flag = executor::EntitlementFlag(e);
        if (c.network.empty() && e == executor::kNetworkHost) flag += " (the build's --network)";
        if (opts_.allowed_entitlements.count(e) == 0) {
          return ErrCode(absl::StatusCode::kPermissionDenied, pos,
                         absl::StrCat("RUN ", flag, " needs the ", e,
                                      " entitlement, which the build did not ask for "
                                      "(add --allow ",
                                      e, ")"));
        }
        if (opts_.permitted_entitlements.count(e) == 0) {
          return ErrCode(absl::StatusCode::kPermissionDenied, pos,
                         absl::StrCat("RUN ", flag, " needs the ", e, " entitlement, which ",
                                      opts_.permitted_by, " does not permit"));
        }
      }
    }

    // The command.
    std::vector<std::string> args = c.command.args;
    std::vector<std::string> key_args;
    if (c.command.prepend_shell) {
      std::string cmd = args.empty() ? "" : args[0];
      std::vector<std::string> shell = Shell(ss);
      bool lone_heredoc = false;
      if (c.heredocs.size() == 1) {
        absl::StatusOr<dockerfile::Heredoc> h =
            dockerfile::ParseHeredocWord(std::string(absl::StripAsciiWhitespace(cmd)));
        lone_heredoc = h.ok() && !h->name.empty();
      }
      if (lone_heredoc) {
        const dockerfile::Heredoc& h = c.heredocs[0];
        std::string content = h.chomp ? dockerfile::ChompHeredocContent(h.content) : h.content;
        if (absl::StartsWith(content, "#!")) {
          std::string path = absl::StrCat("/dev/pipes/", h.name);
          farm::v1::InlineFile* f = run->add_files();
          f->set_name(path);
          f->set_content(content);
          f->set_mode(0755);
          args = {path};
          key_args = {path};
          pre.push_back({"file", absl::StrCat(path, " sha256:", common::Sha256Hex(content))});
        } else {
          args = shell;
          args.push_back(content);
          key_args = args;
        }
      } else {
        for (const dockerfile::Heredoc& h : c.heredocs) {
          absl::StrAppend(&cmd, "\n", h.content, h.name);
        }
        args = shell;
        args.push_back(cmd);
        key_args = shell;
        key_args.push_back(c.heredocs.empty() ? NormalizeShellWhitespace(cmd) : cmd);
      }
    } else {
      key_args = args;
    }
    for (const std::string& a : args) run->add_args(a);
    std::string op = absl::StrCat("RUN ", JsonStringArray(key_args));
    for (const std::string& m : mount_canon) absl::StrAppend(&op, " --mount=", m);
    absl::StrAppend(&op, " --network=", run->network(), " --security=", run->security());
    pre.push_back({"op", op});
    std::vector<std::string> env_key = RunEnv(ss, false);
    pre.push_back({"env", absl::StrJoin(env_key, "\n     ")});
    const oci::ContainerConfig& cfg = ss.st->config.config;
    pre.push_back({"user", cfg.user});
    pre.push_back({"workdir", cfg.working_dir.empty() ? "/" : cfg.working_dir});
    pre.push_back({"shell", JsonStringArray(Shell(ss))});
    pre.push_back({"platform", ss.st->platform});
    pre.push_back({"layer", layer_opts_});

    step->kind = StepKind::kRun;
    step->preimage = std::move(pre);
    step->key = KeyOf(step->preimage);
    step->chain = step->key;
    ss.chain = step->chain;
    std::string flags;
    for (int i = 0; i < run->mounts_size(); ++i) {
      absl::StrAppend(&flags, "--mount=", mount_canon[i].substr(0, mount_canon[i].find(' ')), " ");
    }
    if (run->network() != "default") absl::StrAppend(&flags, "--network=", run->network(), " ");
    if (run->security() != "sandbox") {
      absl::StrAppend(&flags, "--security=", run->security(), " ");
    }
    step->instruction =
        absl::StrCat("RUN ", flags,
                     c.command.prepend_shell ? (c.command.args.empty() ? "" : c.command.args[0])
                                             : JsonStringArray(args));
    // Each ARG declared so far once (where first declared), with its value in the build state
    // ("" without one), as BuildKit's runCommandString.
    std::vector<std::string> declared;
    for (const auto& [k, v] : ss.args) {
      declared.push_back(absl::StrCat(k, "=", ss.state.GetEnv(k).value_or("")));
    }
    step->created_by = RunCreatedBy(declared, args);
    step->request.set_key(step->key);
    step->request.set_description(step->instruction);
    FillExecEnv(ss, step->request.mutable_env(), true);
    *step->request.mutable_output() = opts_.layer_options;
    return absl::OkStatus();
  }

  absl::Status PlanCopy(StageState& ss, const dockerfile::CopyCmd& c, Position pos, Step* step) {
    const char* name = c.add ? "ADD" : "COPY";
    std::vector<std::string> paths, urls;
    std::vector<std::string> all_srcs;
    for (const std::string& s : c.sources) {
      if (absl::StartsWith(s, "<<")) continue;
      absl::StatusOr<std::string> e = Expand(ss, s, pos);
      if (!e.ok()) return e.status();
      if (e->empty()) return Err(pos, absl::StrCat(name, ": a source can not be empty"));
      if (c.add && IsGitUrl(*e)) {
        return ErrCode(
            absl::StatusCode::kUnimplemented, pos,
            absl::StrCat("ADD of a git repository (", *e, ") is not supported by farm yet"));
      }
      if (c.add && IsHttpUrl(*e)) {
        urls.push_back(*e);
      } else {
        if (!c.add && IsHttpUrl(*e)) {
          return Err(pos, absl::StrCat("COPY does not fetch URLs (\"", *e, "\"): use ADD"));
        }
        paths.push_back(*e);
      }
      all_srcs.push_back(*e);
    }
    absl::StatusOr<std::string> dest = Expand(ss, c.dest, pos);
    if (!dest.ok()) return dest.status();
    std::string workdir = ss.st->config.config.working_dir;
    std::string abs_dest = AbsDest(workdir.empty() ? "/" : workdir, *dest);
    std::string chown, chmod, from, checksum;
    const std::pair<const std::string*, std::string*> flag_values[] = {
        {&c.chown, &chown}, {&c.chmod, &chmod}, {&c.from, &from}, {&c.checksum, &checksum}};
    for (auto [in, out] : flag_values) {
      if (in->empty()) continue;
      absl::StatusOr<std::string> e = Expand(ss, *in, pos);
      if (!e.ok()) return e.status();
      *out = *e;
    }
    if (!chmod.empty()) {
      uint32_t m;
      bool octal = !chmod.empty() && chmod.find_first_not_of("01234567") == std::string::npos;
      if (!octal || !absl::numbers_internal::safe_strtou32_base(chmod, &m, 8) || m > 07777) {
        return Err(pos,
                   absl::StrCat("--chmod=", chmod, ": only octal modes (e.g. 0755) are supported"));
      }
    }
    if (!checksum.empty()) {
      if (urls.empty()) {
        return Err(pos, "--checksum can only be used with an http(s) source");
      }
      if (!absl::StartsWith(checksum, "sha256:") || !common::IsValidSha256Hex(checksum.substr(7))) {
        return Err(pos, absl::StrCat("--checksum=", checksum,
                                     ": expected sha256:<64 lowercase hex digits>"));
      }
    }
    std::vector<std::string> excludes;
    for (const std::string& x : c.excludes) {
      absl::StatusOr<std::string> e = Expand(ss, x, pos);
      if (!e.ok()) return e.status();
      excludes.push_back(*e);
    }

    std::vector<std::pair<std::string, std::string>> pre = {{"version", kKeyVersion}};
    if (!c.link) pre.push_back({"parent", ss.chain});
    std::vector<std::string> opflags;
    if (!from.empty()) opflags.push_back("--from=" + from);
    if (!chown.empty()) opflags.push_back("--chown=" + chown);
    if (!chmod.empty()) opflags.push_back("--chmod=" + chmod);
    if (c.link) opflags.push_back("--link");
    if (c.parents) opflags.push_back("--parents");
    for (const std::string& x : excludes) opflags.push_back("--exclude=" + x);
    if (!checksum.empty()) opflags.push_back("--checksum=" + checksum);
    if (c.keep_git_dir) opflags.push_back("--keep-git-dir");
    if (c.unpack) opflags.push_back(absl::StrCat("--unpack=", *c.unpack ? "true" : "false"));
    std::vector<std::string> shown = all_srcs;
    for (const dockerfile::Heredoc& h : c.heredocs) shown.push_back("<<" + h.name);
    std::string op = absl::StrCat(name, opflags.empty() ? "" : " ", absl::StrJoin(opflags, " "),
                                  " ", JsonStringArray(shown), " ", abs_dest);
    pre.push_back({"op", op});
    pre.push_back({"platform", ss.st->platform});

    farm::v1::CopyOp* cp = step->request.mutable_copy();
    // Inputs.
    const NamedContext* named_dir = nullptr;
    if (!from.empty()) {
      const NamedContext* nc = Named(from, df_.stages.size());
      if (nc != nullptr && nc->image.empty()) named_dir = nc;
    }
    if (named_dir != nullptr) {
      // A named directory context: read like the main context, from its own tree and root.
      if (!urls.empty()) return Err(pos, "COPY --from cannot copy URLs");
      if (!paths.empty()) {
        absl::Status s =
            ContextInputs(ss, paths, c.parents, excludes, pos, &pre, &step->inputs, named_dir);
        if (!s.ok()) return s;
      }
      *cp->mutable_source()->mutable_context() = named_dir->root;
    } else if (!from.empty()) {
      if (!urls.empty()) return Err(pos, "COPY --from cannot copy URLs");
      absl::StatusOr<SourceRef> ref = ResolveSource(from, ss.st->index, pos, ss.st->platform);
      if (!ref.ok()) return ref.status();
      if (ref->stage >= 0) ss.st->depends_on.insert(ref->stage);
      pre.push_back({"inputs", absl::StrCat("from ", from, " chain ", ref->chain)});
      step->copy_from = *std::move(ref);
      cp->mutable_source()->mutable_layers();
    } else {
      if (!paths.empty()) {
        absl::Status s = ContextInputs(ss, paths, c.parents, excludes, pos, &pre, &step->inputs);
        if (!s.ok()) return s;
      }
      *cp->mutable_source()->mutable_context() = opts_.context_root;
    }
    for (const std::string& u : urls) {
      pre.push_back({"url", absl::StrCat(u, checksum.empty() ? " (content checked at build time)"
                                                             : " " + checksum)});
    }
    for (const dockerfile::Heredoc& h : c.heredocs) {
      std::string content = h.content;
      if (h.expand) {
        dockerfile::ShellLex raw('\\');
        raw.skip_process_quotes = true;
        absl::StatusOr<std::string> e = raw.ProcessWord(content, StageEnv(ss));
        if (!e.ok()) return Err(pos, e.status().message());
        content = *e;
      }
      farm::v1::InlineFile* f = cp->add_inline_files();
      f->set_name(h.name);
      f->set_content(content);
      pre.push_back({"heredoc", absl::StrCat(h.name, " sha256:", common::Sha256Hex(content))});
    }
    pre.push_back({"layer", layer_opts_});

    // Sources in the order written, then the heredocs (BuildKit copies its SourceContents after
    // its SourcePaths); a heredoc is "<<NAME" in srcs, so a context file named NAME stays one.
    for (const std::string& src : all_srcs) cp->add_srcs(src);
    for (const dockerfile::Heredoc& h : c.heredocs) cp->add_srcs("<<" + h.name);
    cp->set_dest(abs_dest);
    cp->set_chown(chown);
    cp->set_chmod(chmod);
    cp->set_link(c.link);
    cp->set_parents(c.parents);
    for (const std::string& x : excludes) cp->add_excludes(x);
    cp->set_add(c.add);
    cp->set_checksum(checksum);
    cp->set_keep_git_dir(c.keep_git_dir);
    if (c.unpack) cp->set_unpack(*c.unpack);

    step->kind = StepKind::kCopy;
    step->preimage = std::move(pre);
    step->key = KeyOf(step->preimage);
    step->chain = c.link ? LinkChain(ss.chain, step->key) : step->key;
    ss.chain = step->chain;
    step->instruction = op;
    step->created_by = CopyCreatedBy(name, shown, *dest);
    step->request.set_key(step->key);
    step->request.set_description(step->instruction);
    FillExecEnv(ss, step->request.mutable_env(), false);
    *step->request.mutable_output() = opts_.layer_options;
    return absl::OkStatus();
  }

  const dockerfile::Dockerfile& df_;
  const PlanOptions& opts_;
  std::string platform_;
  std::string layer_opts_;
  std::vector<std::pair<std::string, std::optional<std::string>>> meta_;
  size_t predefined_count_ = 0;
  std::set<std::string> used_args_;
  std::vector<std::optional<Stage>> planned_;
  std::vector<int> state_;
  std::vector<int> order_;
  std::vector<int> stack_;  // stages being planned, outermost first
  std::vector<std::string> warnings_;
  bool context_warned_ = false;
};

}  // namespace

absl::StatusOr<Plan> MakePlan(const dockerfile::Dockerfile& df, const PlanOptions& options) {
  return Planner(df, options).Run();
}

std::map<std::string, std::string> SecretDigests(const auth::SecretKey& key,
                                                 const std::map<std::string, std::string>& values) {
  std::map<std::string, std::string> out;
  for (const auto& [id, value] : values) out[id] = key.Hash("farm.secret.v1", value);
  return out;
}

}  // namespace farm::scheduler::plan
