#include "worker/run_request.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace farm::worker {

absl::StatusOr<RunDirs> RunDirs::Create(const std::string& run_dir) {
  RunDirs dirs{run_dir + "/upper", run_dir + "/work", run_dir + "/rootfs"};
  for (const std::string* d : {&dirs.upper, &dirs.work, &dirs.rootfs}) {
    RETURN_IF_ERROR(common::MakeDirs(*d, 0755));
  }
  return dirs;
}

std::optional<farm::v1::SandboxRequest::Network> ParseNetwork(const std::string& mode) {
  if (mode == "none") return farm::v1::SandboxRequest::NONE;
  if (mode.empty() || mode == "default" || mode == "host") return farm::v1::SandboxRequest::HOST;
  return std::nullopt;
}

farm::v1::SandboxRequest BaseSandboxRequest(const std::string& layer_dir,
                                            const std::vector<std::string>& lower_names,
                                            const RunDirs& dirs, const farm::v1::ExecEnv& env,
                                            const SandboxHost& host,
                                            const std::string& cgroup_name) {
  farm::v1::SandboxRequest req;
  req.set_layer_dir(layer_dir);
  for (const std::string& l : lower_names) req.add_lower_dirs(l);
  req.set_upper_dir(dirs.upper);
  req.set_work_dir(dirs.work);
  req.set_rootfs_dir(dirs.rootfs);
  for (const std::string& e : env.env()) req.add_env(e);
  req.set_user(env.user());
  req.set_cwd(env.workdir().empty() ? "/" : env.workdir());
  req.set_hostname(env.hostname().empty() ? "farm" : env.hostname());
  for (const auto& cg : host.cgroups) *req.add_cgroups() = cg;
  req.set_cgroup_name(cgroup_name);
  if (!host.resolv_conf.empty() && common::PathExists(host.resolv_conf)) {
    req.set_resolv_conf(host.resolv_conf);
  }
  if (!host.hosts.empty() && common::PathExists(host.hosts)) req.set_hosts(host.hosts);
  return req;
}

absl::StatusOr<farm::v1::SandboxRequest> RunSandboxRequest(
    const farm::v1::RunOp& run, const farm::v1::ExecEnv& env, const std::string& layer_dir,
    const std::vector<std::string>& lower_names, const RunDirs& dirs, const SandboxHost& host,
    const std::string& cgroup_name) {
  farm::v1::SandboxRequest req =
      BaseSandboxRequest(layer_dir, lower_names, dirs, env, host, cgroup_name);
  for (const std::string& a : run.args()) req.add_args(a);
  std::optional<farm::v1::SandboxRequest::Network> network = ParseNetwork(run.network());
  if (!network.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RUN --network=", run.network(), ": want default, none or host"));
  }
  req.set_network(*network);
  if (run.security() == "insecure") {
    req.set_insecure(true);
  } else if (!run.security().empty() && run.security() != "sandbox") {
    return absl::InvalidArgumentError(
        absl::StrCat("RUN --security=", run.security(), ": want sandbox or insecure"));
  }
  if (run.timeout_seconds() > 0) req.set_timeout_ms(run.timeout_seconds() * 1000);
  return req;
}

absl::Status AddInlineFiles(const farm::v1::RunOp& run, const std::string& run_dir,
                            farm::v1::SandboxRequest* req) {
  for (int i = 0; i < run.files_size(); ++i) {
    const farm::v1::InlineFile& f = run.files(i);
    if (f.name().empty() || f.name()[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("inline file \"", f.name(), "\" is not absolute"));
    }
    std::string fdir = run_dir + "/files";
    RETURN_IF_ERROR(common::MakeDirs(fdir, 0755));
    std::string file = absl::StrCat(fdir, "/", i);
    RETURN_IF_ERROR(common::WriteFileAtomic(file, f.content(), f.mode() != 0 ? f.mode() : 0755));
    chmod(file.c_str(), f.mode() != 0 ? f.mode() : 0755);
    farm::v1::SandboxMount* sm = req->add_mounts();
    sm->set_source(file);
    sm->set_target(f.name());
    sm->set_readonly(true);
  }
  return absl::OkStatus();
}

}  // namespace farm::worker
