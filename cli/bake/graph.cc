#include "cli/bake/graph.h"

#include <unistd.h>

#include <algorithm>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "cli/bake/target_builder.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "scheduler/pipeline/pipeline.h"
#include "worker/emulation.h"

namespace farm::cli::bake {

namespace {

std::string Absolute(const std::string& p) {
  if (!p.empty() && p[0] == '/') return common::CleanPath(p);
  char buf[4096];
  if (getcwd(buf, sizeof(buf)) == nullptr) return p;
  return common::CleanPath(common::JoinPath(buf, p));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Graph>> Graph::Create(const Resolved& resolved,
                                                     const Options& options) {
  std::unique_ptr<Graph> graph(new Graph());
  std::map<std::string, const TargetRun*> first_of_context;
  for (const Target& t : resolved.targets) {
    auto run = std::make_unique<TargetRun>();
    run->def = t;
    absl::Status s = graph->Prepare(options, run.get());
    if (!s.ok()) return common::Annotate(s, absl::StrCat("target \"", t.name, "\""));
    auto [it, first] = first_of_context.emplace(run->context_key, run.get());
    if (!first) run->shares_context_with = it->second;
    graph->by_name_[t.name] = run.get();
    graph->runs_.push_back(std::move(run));
  }
  return graph;
}

absl::Status Graph::Prepare(const Options& options, TargetRun* r) {
  const Target& t = r->def;
  r->context_dir = Absolute(t.context.value_or("."));
  if (!common::PathExists(r->context_dir)) {
    return absl::NotFoundError(
        absl::StrCat("context ", t.context.value_or("."), " does not exist"));
  }
  if (t.dockerfile_inline) {
    r->dockerfile_text = *t.dockerfile_inline;
  } else {
    std::string df = t.dockerfile.value_or("Dockerfile");
    r->dockerfile_path = df[0] == '/' ? df : common::JoinPath(r->context_dir, df);
    ASSIGN_OR_RETURN(r->dockerfile_text, common::ReadFile(r->dockerfile_path));
  }
  r->context_key = ContextKey(r->context_dir, r->dockerfile_path);
  for (const auto& [name, value] : t.contexts) {
    ASSIGN_OR_RETURN(ContextSource src, ParseContextSource(value));
    switch (src.kind) {
      case ContextSource::Kind::kImage:
        r->images[name] = src.value;
        break;
      case ContextSource::Kind::kTarget:
        r->targets[name] = src.value;
        break;
      case ContextSource::Kind::kPath: {
        std::string dir = Absolute(src.value);
        if (!common::PathExists(dir)) {
          return absl::NotFoundError(
              absl::StrCat("contexts.", name, ": ", src.value, " does not exist"));
        }
        r->named[name] = ContextKey(dir, "");
        break;
      }
    }
  }
  for (const std::string& tag : t.tags.value_or(std::vector<std::string>{})) {
    ASSIGN_OR_RETURN(oci::Reference ref, oci::Reference::ParseWithDefaultTag(tag));
    r->tags.push_back(std::move(ref));
  }
  for (const std::string& o : t.output.value_or(std::vector<std::string>{})) {
    if (o == "type=registry" || absl::StartsWith(o, "type=registry,")) {
      r->push = true;
      continue;
    }
    ASSIGN_OR_RETURN(OutputSpec spec, ParseOutputSpec(o));
    r->outputs.push_back(spec);
  }
  if (t.platforms && !t.platforms->empty()) {
    absl::StatusOr<std::vector<std::string>> platforms =
        scheduler::pipeline::ParsePlatformList(absl::StrJoin(*t.platforms, ","));
    if (!platforms.ok()) {
      return common::Annotate(platforms.status(), absl::StrCat("target ", t.name, ": platforms"));
    }
    for (const std::string& p : *platforms) {
      if (!options.check_host_platforms) break;
      absl::Status can = worker::CheckCanRun(p);
      if (!can.ok())
        return common::Annotate(can, absl::StrCat("target ", t.name, ": platform ", p));
    }
    r->platforms = *std::move(platforms);
  }
  return absl::OkStatus();
}

std::string Graph::ContextKey(const std::string& dir, const std::string& dockerfile_path) {
  std::string ignore_owner;
  if (!dockerfile_path.empty() && common::PathExists(dockerfile_path + ".dockerignore")) {
    ignore_owner = dockerfile_path;
  }
  std::string key = absl::StrCat(dir, "\n", ignore_owner);
  if (FindContext(key) == nullptr) contexts_.push_back({key, dir, ignore_owner});
  return key;
}

const ContextDir* Graph::FindContext(const std::string& key) const {
  for (const ContextDir& c : contexts_) {
    if (c.key == key) return &c;
  }
  return nullptr;
}

bool Graph::IsContextOfAnother(const std::string& name) const {
  for (const auto& r : runs_) {
    for (const auto& [unused, other] : r->targets) {
      if (other == name) return true;
    }
  }
  return false;
}

oci::Reference Graph::ContextTag(const TargetRun& run) {
  if (!run.tags.empty()) return run.tags[0];
  return *oci::Reference::ParseWithDefaultTag(absl::StrCat("farm-bake/", run.def.name, ":latest"));
}

absl::Status Graph::WaitForContextTargets(const TargetRun& run) const {
  for (const auto& [name, other] : run.targets) {
    const TargetRun& o = this->run(other);
    o.done.WaitForNotification();
    if (!o.status.ok()) {
      return absl::CancelledError(
          absl::StrCat("target \"", other, "\" (context ", name, ") failed"));
    }
  }
  return absl::OkStatus();
}

void Graph::BuildAll(TargetBuilder* builder, absl::Notification* cancel) {
  bool stagger = builder->StaggersSharedContexts();
  std::vector<std::thread> threads;
  for (auto& r : runs_) {
    threads.emplace_back([this, r = r.get(), builder, cancel, stagger] {
      if (stagger && r->shares_context_with != nullptr) {
        r->shares_context_with->context_ready.WaitForNotification();
      }
      absl::Time t0 = absl::Now();
      r->status = WaitForContextTargets(*r);
      if (r->status.ok()) r->status = builder->Build(r);
      r->took = absl::Now() - t0;
      if (!r->status.ok() && cancel != nullptr && !cancel->HasBeenNotified()) cancel->Notify();
      if (!r->context_ready.HasBeenNotified()) r->context_ready.Notify();
      r->done.Notify();
    });
  }
  for (std::thread& t : threads) t.join();
}

std::vector<std::string> ReadScopes(const Target& target, const std::string& write_scope,
                                    std::ostream& warnings) {
  std::vector<std::string> scopes = {write_scope};
  for (const std::string& c : target.cache_from.value_or(std::vector<std::string>{})) {
    std::string scope;
    if (!absl::StrContains(c, '=')) {
      scope = c;
    } else {
      for (absl::string_view kv : absl::StrSplit(c, ',')) {
        if (absl::ConsumePrefix(&kv, "scope=")) scope = std::string(kv);
      }
    }
    if (scope.empty()) {
      warnings << "WARNING: target " << target.name << ": cache-from " << c
               << " ignored (farm reads action-cache scopes: scope=NAME)\n";
    } else if (std::find(scopes.begin(), scopes.end(), scope) == scopes.end()) {
      scopes.push_back(scope);
    }
  }
  return scopes;
}

std::string SummaryTable(const Graph& graph, absl::Duration total) {
  std::string out =
      absl::StrFormat("\n%-20s %-19s %5s %6s %9s\n", "TARGET", "IMAGE ID", "RUN", "CACHED", "TIME");
  for (const auto& r : graph.runs()) {
    std::string id = r->image_id.empty() ? "" : r->image_id.substr(7, 12);
    if (!r->status.ok()) id = absl::IsCancelled(r->status) ? "(canceled)" : "(failed)";
    absl::StrAppend(&out,
                    absl::StrFormat("%-20s %-19s %5d %6d %8.1fs\n", r->def.name, id, r->steps_run,
                                    r->steps_cached, absl::ToDoubleSeconds(r->took)));
  }
  absl::StrAppend(&out, absl::StrFormat("%d target(s) in %.1fs\n", graph.runs().size(),
                                        absl::ToDoubleSeconds(total)));
  return out;
}

int ReportSummary(const Graph& graph, absl::Duration total, bool quiet, std::ostream& out,
                  std::ostream& err) {
  int failed = 0;
  for (const auto& r : graph.runs()) failed += r->status.ok() ? 0 : 1;
  if (!quiet || failed > 0) err << SummaryTable(graph, total);
  for (const auto& r : graph.runs()) {
    if (!r->status.ok() && !absl::IsCancelled(r->status)) {
      err << "ERROR: target \"" << r->def.name << "\": " << r->status.message() << "\n";
    }
  }
  if (quiet) {
    for (const auto& r : graph.runs()) {
      if (r->status.ok()) out << r->def.name << " " << r->image_id << "\n";
    }
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace farm::cli::bake
