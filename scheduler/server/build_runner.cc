#include "scheduler/server/build_runner.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "oci/reference.h"
#include "scheduler/image/store_resolver.h"
#include "scheduler/pipeline/contexts.h"
#include "scheduler/plan/planner.h"
#include "scheduler/registry/auth.h"

namespace farm::scheduler::server {

BuildSpec BuildRunner::SpecFor(const std::string& build_id,
                               const farm::v1::SubmitBuildRequest& request,
                               const std::map<std::string, std::string>& secrets) {
  BuildSpec spec;
  spec.build_id = build_id;
  spec.tenant = request.tenant();
  spec.priority = request.priority();
  spec.cache_instance = request.cache_write_scope().empty() ? "main" : request.cache_write_scope();
  spec.secrets = secrets;
  return spec;
}

BuildRunner::Options BuildRunner::WithDefaults(Options options) {
  if (options.secret_key == nullptr) {
    options.secret_key = auth::SecretKey::FromBytes(common::RandomHex(32)).value();
  }
  return options;
}

absl::StatusOr<pipeline::Request> BuildRunner::PipelineRequest(
    const farm::v1::SubmitBuildRequest& req, const BuildSpec& spec) const {
  pipeline::Request pr;
  pr.dockerfile = req.dockerfile();
  pr.dockerfile_name = req.dockerfile_name().empty() ? "Dockerfile" : req.dockerfile_name();
  for (const auto& [k, v] : req.build_args()) pr.plan.build_args[k] = v;
  pr.plan.target = req.target();
  if (!req.platform().empty()) {
    // "linux/amd64,linux/arm64": a multi-platform build (an index).
    absl::StatusOr<std::vector<std::string>> platforms =
        pipeline::ParsePlatformList(req.platform());
    if (!platforms.ok()) return common::Annotate(platforms.status(), "platform");
    if (platforms->empty()) return absl::InvalidArgumentError("platform: empty list");
    pr.plan.platform = (*platforms)[0];
    if (platforms->size() > 1) pr.platforms = *std::move(platforms);
  }
  pr.plan.layer_options = req.layer_options();
  if (!req.network().empty()) pr.plan.default_network = req.network();
  pr.plan.check_entitlements = true;
  pr.plan.allowed_entitlements = {req.allow_entitlements().begin(), req.allow_entitlements().end()};
  pr.plan.permitted_entitlements = options_.permitted_entitlements;
  pr.plan.permitted_by = "farm-scheduler (--allow-entitlement NAME)";
  pr.plan.secret_digests = plan::SecretDigests(*options_.secret_key, spec.secrets);
  pr.resolve.pull_policy = req.pull() ? image::PullPolicy::kAlways : image::PullPolicy::kMissing;
  pr.resolve.registry.insecure_registries = options_.insecure_registries;
  for (const std::string& r : req.insecure_registries()) {
    pr.resolve.registry.insecure_registries.push_back(r);
  }
  auto own = options_.tenant_docker_config_dirs.find(spec.tenant);
  bool has_own = own != options_.tenant_docker_config_dirs.end();
  pr.resolve.registry.docker_config_dir = has_own ? own->second : options_.docker_config_dir;
  pr.engine.cache_write_scope = spec.cache_instance;
  pr.engine.cache_read_scopes = {spec.cache_instance};
  for (const std::string& sc : req.cache_read_scopes()) {
    if (sc != spec.cache_instance) pr.engine.cache_read_scopes.push_back(sc);
  }
  pr.engine.no_cache = req.no_cache();
  pr.engine.max_step_log_bytes = options_.max_step_log_bytes;
  pr.engine.default_step_timeout_seconds = options_.default_step_timeout_seconds;
  if (req.layer_options().has_source_date_epoch()) {
    pr.engine.source_date_epoch = req.layer_options().source_date_epoch();
  }
  pr.engine.format = req.manifest_format() == "docker" ? image::ManifestFormat::kDocker
                                                       : image::ManifestFormat::kOci;
  for (const auto& [k, v] : req.labels()) pr.engine.labels[k] = v;
  pr.engine.max_parallel = 64;  // the dispatcher and the workers' slots limit what runs
  for (const std::string& t : req.tags()) {
    ASSIGN_OR_RETURN(oci::Reference r, oci::Reference::ParseWithDefaultTag(t));
    pr.tags.push_back(std::move(r));
  }
  pr.push = req.push();
  pr.push_registry = pr.resolve.registry;
  if (!has_own && !options_.shared_registry_push) {
    // The farm's shared credentials are not for pushing to whatever repository a tenant
    // names: push anonymously (a registry that needs credentials refuses, naming the repo).
    pr.push_registry.credentials = registry::Credentials{};
  }
  pr.first_vertex_id = std::max(1, req.first_vertex_id());
  return pr;
}

absl::Status BuildRunner::Run(const std::string& build_id,
                              const farm::v1::SubmitBuildRequest& request,
                              const std::map<std::string, std::string>& secrets,
                              const std::function<void(int steps_total)>& on_planned,
                              const engine::EventSink& sink,
                              const absl::Notification* cancel) const {
  BuildSpec spec = SpecFor(build_id, request, secrets);
  ASSIGN_OR_RETURN(pipeline::Request pr, PipelineRequest(request, spec));
  pipeline::CasContext context(options_.cas, request.context());
  pr.context = &context;
  // Named contexts: directories the client uploaded (loaded with the main context), images.
  std::vector<std::unique_ptr<pipeline::CasContext>> named;
  for (const auto& [name, nc] : request.named_contexts()) {
    if (nc.has_context()) {
      named.push_back(std::make_unique<pipeline::CasContext>(options_.cas, nc.context()));
      pr.named_contexts[name] = named.back().get();
    } else if (!nc.image().empty()) {
      pr.plan.named_contexts[name].image = nc.image();
    } else {
      return absl::InvalidArgumentError(absl::StrCat("named context ", name, ": no source"));
    }
  }
  // Every platform's plan adds its steps (a multi-platform build plans each).
  int total = 0;
  pr.on_planned = [&on_planned, &total](const plan::Plan& p) {
    if (!on_planned) return;
    for (const plan::Stage& st : p.stages) {
      for (const plan::Step& step : st.steps) total += step.key.empty() ? 0 : 1;
    }
    on_planned(total);
  };
  pipeline::Deps deps;
  deps.cas = options_.cas;
  deps.ac = options_.ac;
  deps.images = options_.images;
  if (options_.tenant_images) {
    ASSIGN_OR_RETURN(deps.images, options_.tenant_images->For(spec.tenant));
  }
  deps.executor = [this, &spec]() -> absl::StatusOr<std::shared_ptr<executor::StepExecutor>> {
    return options_.executors(spec);
  };
  return pipeline::Run(deps, pr, sink, cancel).status;
}

}  // namespace farm::scheduler::server
