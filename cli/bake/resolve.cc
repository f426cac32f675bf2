#include <algorithm>
#include <functional>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/bake/definition.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace farm::cli::bake {

namespace {

template <typename T>
void Take(const std::optional<T>& over, std::optional<T>* base) {
  if (over) *base = over;
}

void Append(const std::string& v, std::vector<std::string>* to) {
  if (std::find(to->begin(), to->end(), v) == to->end()) to->push_back(v);
}

}  // namespace

void MergeTarget(const Target& over, Target* base) {
  for (const std::string& i : over.inherits) Append(i, &base->inherits);
  Take(over.context, &base->context);
  Take(over.dockerfile, &base->dockerfile);
  Take(over.dockerfile_inline, &base->dockerfile_inline);
  Take(over.target, &base->target);
  for (const auto& [k, v] : over.args) base->args[k] = v;
  for (const auto& [k, v] : over.labels) base->labels[k] = v;
  for (const auto& [k, v] : over.contexts) base->contexts[k] = v;
  Take(over.tags, &base->tags);
  Take(over.platforms, &base->platforms);
  Take(over.cache_from, &base->cache_from);
  Take(over.output, &base->output);
  Take(over.no_cache, &base->no_cache);
  Take(over.pull, &base->pull);
  if (!over.origin.empty()) base->origin = over.origin;
}

absl::StatusOr<ContextSource> ParseContextSource(const std::string& value) {
  ContextSource c;
  if (absl::StartsWith(value, "docker-image://")) {
    c.kind = ContextSource::Kind::kImage;
    c.value = value.substr(15);
    if (c.value.empty()) return absl::InvalidArgumentError("docker-image:// names no image");
    return c;
  }
  if (absl::StartsWith(value, "target:")) {
    c.kind = ContextSource::Kind::kTarget;
    c.value = value.substr(7);
    if (c.value.empty()) return absl::InvalidArgumentError("target: names no target");
    return c;
  }
  if (absl::StrContains(value, "://") || absl::StartsWith(value, "git@")) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", value,
                     "\": farm bake takes a local path, docker-image://REF or target:NAME as a "
                     "named context"));
  }
  if (value.empty()) return absl::InvalidArgumentError("an empty context path");
  c.value = value;
  return c;
}

absl::StatusOr<Resolved> Resolve(const Definition& def, const std::vector<std::string>& names) {
  Resolved r;
  // 1. Names → targets (groups expanded, in order, each once).
  std::vector<std::string> stack;
  std::function<absl::Status(const std::string&)> expand =
      [&](const std::string& name) -> absl::Status {
    auto g = def.groups.find(name);
    if (g != def.groups.end()) {
      if (std::find(stack.begin(), stack.end(), name) != stack.end()) {
        stack.push_back(name);
        return absl::InvalidArgumentError(
            absl::StrCat("group cycle: ", absl::StrJoin(stack, " -> ")));
      }
      stack.push_back(name);
      for (const std::string& t : g->second.targets) RETURN_IF_ERROR(expand(t));
      stack.pop_back();
      return absl::OkStatus();
    }
    if (def.targets.count(name)) {
      Append(name, &r.requested);
      return absl::OkStatus();
    }
    if (name == "default" && !def.targets.empty()) {
      for (const auto& [t, unused] : def.targets) Append(t, &r.requested);
      return absl::OkStatus();
    }
    std::vector<std::string> known;
    for (const auto& [t, unused] : def.targets) known.push_back(t);
    for (const auto& [g2, unused] : def.groups) known.push_back(g2);
    return absl::NotFoundError(
        absl::StrCat("failed to find target \"", name,
                     "\" (known: ", known.empty() ? "none" : absl::StrJoin(known, ", "), ")"));
  };
  std::vector<std::string> asked = names;
  if (asked.empty()) asked = {"default"};
  for (const std::string& n : asked) RETURN_IF_ERROR(expand(n));

  // 2. Each target with its inherits applied (parents first, own fields last).
  std::map<std::string, Target> effective;
  std::vector<std::string> chain;
  std::function<absl::StatusOr<Target>(const std::string&)> effective_of =
      [&](const std::string& name) -> absl::StatusOr<Target> {
    auto done = effective.find(name);
    if (done != effective.end()) return done->second;
    auto it = def.targets.find(name);
    if (it == def.targets.end()) {
      return absl::NotFoundError(absl::StrCat("target \"", chain.empty() ? name : chain.back(),
                                              "\" inherits \"", name, "\", which is not defined"));
    }
    if (std::find(chain.begin(), chain.end(), name) != chain.end()) {
      chain.push_back(name);
      return absl::InvalidArgumentError(
          absl::StrCat("inherits cycle: ", absl::StrJoin(chain, " -> ")));
    }
    chain.push_back(name);
    Target t;
    for (const std::string& parent : it->second.inherits) {
      ASSIGN_OR_RETURN(Target p, effective_of(parent));
      p.inherits.clear();
      MergeTarget(p, &t);
    }
    Target own = it->second;
    own.inherits.clear();
    MergeTarget(own, &t);
    t.name = name;
    t.inherits.clear();
    chain.pop_back();
    effective[name] = t;
    return t;
  };

  // 3. Targets used as contexts join the build, before their users.
  std::map<std::string, int> state;  // 1 visiting, 2 done
  std::vector<std::string> path;
  std::function<absl::Status(const std::string&)> visit =
      [&](const std::string& name) -> absl::Status {
    if (state[name] == 2) return absl::OkStatus();
    if (state[name] == 1) {
      path.push_back(name);
      return absl::InvalidArgumentError(
          absl::StrCat("context cycle between targets: ", absl::StrJoin(path, " -> ")));
    }
    state[name] = 1;
    path.push_back(name);
    ASSIGN_OR_RETURN(Target t, effective_of(name));
    if (!t.context) t.context = ".";
    if (!t.dockerfile && !t.dockerfile_inline) t.dockerfile = "Dockerfile";
    std::vector<std::string>& needs = r.needs[name];
    for (const auto& [cname, value] : t.contexts) {
      absl::StatusOr<ContextSource> src = ParseContextSource(value);
      if (!src.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("target \"", name, "\": contexts.", cname, ": ", src.status().message()));
      }
      if (src->kind != ContextSource::Kind::kTarget) continue;
      if (!def.targets.count(src->value)) {
        return absl::NotFoundError(absl::StrCat("target \"", name, "\": contexts.", cname,
                                                ": target \"", src->value, "\" is not defined"));
      }
      RETURN_IF_ERROR(visit(src->value));
      Append(src->value, &needs);
    }
    path.pop_back();
    state[name] = 2;
    r.targets.push_back(std::move(t));
    return absl::OkStatus();
  };
  for (const std::string& n : r.requested) RETURN_IF_ERROR(visit(n));
  return r;
}

std::string PrintJson(const Resolved& r) {
  using ojson = nlohmann::ordered_json;
  ojson out;
  out["group"]["default"]["targets"] = r.requested;
  ojson targets = ojson::object();
  for (const Target& t : r.targets) {
    ojson j = ojson::object();
    if (t.context) j["context"] = *t.context;
    if (!t.contexts.empty()) j["contexts"] = t.contexts;
    if (t.dockerfile) j["dockerfile"] = *t.dockerfile;
    if (t.dockerfile_inline) j["dockerfile-inline"] = *t.dockerfile_inline;
    if (!t.args.empty()) j["args"] = t.args;
    if (!t.labels.empty()) j["labels"] = t.labels;
    if (t.tags) j["tags"] = *t.tags;
    if (t.cache_from) j["cache-from"] = *t.cache_from;
    if (t.target) j["target"] = *t.target;
    if (t.platforms) j["platforms"] = *t.platforms;
    if (t.output) j["output"] = *t.output;
    if (t.pull) j["pull"] = *t.pull;
    if (t.no_cache) j["no-cache"] = *t.no_cache;
    targets[t.name] = std::move(j);
  }
  out["target"] = std::move(targets);
  return out.dump(2);
}

}  // namespace farm::cli::bake
