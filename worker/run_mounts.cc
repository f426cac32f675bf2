#include "worker/run_mounts.h"

#include <functional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fs.h"
#include "common/status_macros.h"
#include "common/status_util.h"
#include "worker/copy/materialize.h"
#include "worker/copy/select.h"
#include "worker/copy/trees.h"
#include "worker/layerstore/stack_view.h"
#include "worker/step_layers.h"

namespace farm::worker {
namespace {

std::string Base(const std::string& path) {
  size_t s = path.rfind('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

// A source path inside a tree: relative and clean ("" = the root); leaving the root is an error.
absl::StatusOr<std::string> CleanSource(const std::string& path) {
  std::string p = common::CleanPath(absl::StrCat("./", path));
  while (absl::StartsWith(p, "/")) p.erase(0, 1);
  if (p == ".") p.clear();
  if (p == ".." || absl::StartsWith(p, "../")) {
    return absl::InvalidArgumentError(
        absl::StrCat("source \"", path, "\" leaves the build context"));
  }
  return p;
}

}  // namespace

absl::Status RunMounts::Add(const farm::v1::Mount& m, int index, const std::string& workdir,
                            const std::string& run_dir, const absl::Notification* cancel,
                            farm::v1::SandboxRequest* req) {
  std::string target = m.target();
  if (!target.empty() && target[0] != '/') target = absl::StrCat(workdir, "/", target);
  const std::string what = absl::StrCat("--mount #", index + 1, " (target ", m.target(), ")");
  auto where = [&](absl::Status s) { return common::Annotate(s, what); };
  switch (m.type()) {
    case farm::v1::Mount::BIND:
      if (target.empty()) return where(absl::InvalidArgumentError("bind mount without a target"));
      return AddBind(m, target, absl::StrCat(run_dir, "/mnt", index), what, req);
    case farm::v1::Mount::CACHE:
      if (target.empty()) return where(absl::InvalidArgumentError("cache mount without a target"));
      return AddCache(m, target, cancel, what, req);
    case farm::v1::Mount::TMPFS: {
      if (target.empty()) return where(absl::InvalidArgumentError("tmpfs mount without a target"));
      farm::v1::SandboxMount* sm = req->add_mounts();
      sm->set_kind(farm::v1::SandboxMount::TMPFS);
      sm->set_target(target);
      sm->set_tmpfs_size_bytes(m.size_bytes());
      return absl::OkStatus();
    }
    case farm::v1::Mount::SECRET:
      return AddSecret(m, target, absl::StrCat(run_dir, "/secret", index), what, req);
    case farm::v1::Mount::SSH:
      return AddSsh(m, target, absl::StrCat(run_dir, "/ssh", index, ".sock"), what, req);
    default:
      return where(absl::InvalidArgumentError("unknown mount type"));
  }
}

// Errors about the source name the mount; errors making the run directory's scratch do not.
absl::Status RunMounts::AddBind(const farm::v1::Mount& m, const std::string& target,
                                const std::string& mdir, const std::string& what,
                                farm::v1::SandboxRequest* req) {
  auto where = [&](absl::Status s) { return common::Annotate(s, what); };
  farm::v1::SandboxMount* sm = req->add_mounts();
  sm->set_target(target);
  sm->set_readonly(m.readonly());
  if (m.from().has_layers()) {
    ASSIGN_OR_RETURN(std::vector<layerstore::LayerDesc> descs,
                     LayerDescs(m.from().layers().layers()));
    auto s = sources_.layers->AcquireStack(descs);
    if (!s.ok()) return where(s.status());
    layerstore::StackView view((*s)->lower_dirs());
    auto r = view.Resolve(m.source(), true);
    if (!r.ok()) return where(r.status());
    if (!r->exists) {
      return where(absl::NotFoundError(
          absl::StrCat("source \"", m.source(), "\" not found in the mounted stage")));
    }
    RETURN_IF_ERROR(common::MakeDirs(mdir, 0755));
    sm->set_kind(farm::v1::SandboxMount::OVERLAY);
    sm->set_source(mdir);
    sm->set_subpath(r->path);
    for (const std::string& l : (*s)->lower_names()) sm->add_lower_dirs(l);
    if (!m.readonly()) {
      RETURN_IF_ERROR(common::MakeDirs(mdir + "-upper", 0755));
      RETURN_IF_ERROR(common::MakeDirs(mdir + "-work", 0755));
      sm->set_upper_dir(mdir + "-upper");
      sm->set_work_dir(mdir + "-work");
    }
    stacks_.push_back(std::move(*s));
    return absl::OkStatus();
  }
  if (m.from().has_context()) {
    auto root = common::Digest::ParseOci(m.from().context().digest(), m.from().context().size());
    if (!root.ok()) return where(root.status());
    copy::CasTree tree(sources_.cas, *root);
    auto clean = CleanSource(m.source());
    if (!clean.ok()) return where(clean.status());
    auto resolved = copy::ResolvePath(tree, *clean, true);
    if (!resolved.ok()) return where(resolved.status());
    RETURN_IF_ERROR(where(copy::Materialize(tree, *resolved, mdir)));
    sm->set_source(mdir);
    return absl::OkStatus();
  }
  return where(absl::InvalidArgumentError("bind mount without a source (context or stage)"));
}

absl::Status RunMounts::AddCache(const farm::v1::Mount& m, const std::string& target,
                                 const absl::Notification* cancel, const std::string& what,
                                 farm::v1::SandboxRequest* req) {
  std::string id = m.id().empty() ? target : m.id();
  copy::Attrs attrs{m.mode() != 0 ? m.mode() : 0755, m.uid(), m.gid(), 0};
  std::function<absl::Status(const std::string&)> seed;
  if (m.has_from() && (m.from().has_context() || m.from().has_layers())) {
    // A new cache starts as a copy of the source's content.
    seed = [this, &m](const std::string& into) -> absl::Status {
      std::unique_ptr<copy::SourceTree> tree;
      std::unique_ptr<layerstore::Stack> hold;
      if (m.from().has_layers()) {
        ASSIGN_OR_RETURN(auto descs, LayerDescs(m.from().layers().layers()));
        ASSIGN_OR_RETURN(hold, sources_.layers->AcquireStack(descs));
        tree = std::make_unique<copy::StackTree>(layerstore::StackView(hold->lower_dirs()));
      } else {
        ASSIGN_OR_RETURN(auto root, common::Digest::ParseOci(m.from().context().digest(),
                                                             m.from().context().size()));
        tree = std::make_unique<copy::CasTree>(sources_.cas, root);
      }
      ASSIGN_OR_RETURN(std::string clean, CleanSource(m.source()));
      ASSIGN_OR_RETURN(std::string path, copy::ResolvePath(*tree, clean, true));
      ASSIGN_OR_RETURN(std::vector<copy::DirEntry> entries, tree->ReadDir(path));
      for (const copy::DirEntry& e : entries) {
        RETURN_IF_ERROR(copy::Materialize(*tree, path.empty() ? e.name : path + "/" + e.name,
                                          into + "/" + e.name));
      }
      return absl::OkStatus();
    };
  }
  auto lease = sources_.caches->Acquire(id, m.sharing(), attrs, seed, cancel);
  if (!lease.ok()) return common::Annotate(lease.status(), what);
  farm::v1::SandboxMount* sm = req->add_mounts();
  sm->set_source((*lease)->path());
  sm->set_target(target);
  sm->set_readonly(m.readonly());
  caches_.push_back(std::move(*lease));
  return absl::OkStatus();
}

absl::Status RunMounts::AddSecret(const farm::v1::Mount& m, std::string target,
                                  const std::string& sdir, const std::string& what,
                                  farm::v1::SandboxRequest* req) {
  auto where = [&](absl::Status s) { return common::Annotate(s, what); };
  std::string id = m.id();
  if (id.empty() && !target.empty()) id = Base(target);
  if (id.empty()) return where(absl::InvalidArgumentError("secret mount without an id"));
  absl::StatusOr<std::string> value = sources_.secrets != nullptr
                                          ? sources_.secrets->GetSecret(id)
                                          : absl::NotFoundError("no secrets were provided");
  if (!value.ok()) {
    if (!absl::IsNotFound(value.status())) return where(value.status());
    if (m.required()) {
      return where(absl::FailedPreconditionError(
          absl::StrCat("secret \"", id, "\" is required but was not provided")));
    }
    return absl::OkStatus();  // an optional secret that is absent: no mount
  }
  if (!m.env().empty()) req->add_env(absl::StrCat(m.env(), "=", *value));
  if (target.empty() && !m.env().empty()) return absl::OkStatus();  // env only
  if (target.empty()) target = "/run/secrets/" + id;
  // The bytes go to the runner in its (memory-backed) request; it writes them into a tmpfs of
  // the sandbox's own mount namespace, on this empty directory.
  RETURN_IF_ERROR(common::MakeDirs(sdir, 0700));
  farm::v1::SandboxMount* sm = req->add_mounts();
  sm->set_kind(farm::v1::SandboxMount::FILE);
  sm->set_source(sdir);
  sm->set_target(target);
  sm->set_readonly(true);
  sm->set_content(*std::move(value));
  sm->set_file_mode(m.mode() != 0 ? m.mode() : 0400);
  sm->set_file_uid(m.uid());
  sm->set_file_gid(m.gid());
  return absl::OkStatus();
}

absl::Status RunMounts::AddSsh(const farm::v1::Mount& m, std::string target,
                               const std::string& socket, const std::string& what,
                               farm::v1::SandboxRequest* req) {
  auto where = [&](absl::Status s) { return common::Annotate(s, what); };
  std::string id = m.id().empty() ? "default" : m.id();
  absl::StatusOr<std::string> agent = sources_.secrets != nullptr
                                          ? sources_.secrets->GetSshAgentSocket(id)
                                          : absl::NotFoundError("no ssh agent was provided");
  if (!agent.ok()) {
    if (!absl::IsNotFound(agent.status())) return where(agent.status());
    if (m.required()) {
      return where(absl::FailedPreconditionError(absl::StrCat(
          "ssh agent \"", id, "\" is required but none was provided (farm build --ssh ", id, ")")));
    }
    return absl::OkStatus();
  }
  if (target.empty()) target = absl::StrCat("/run/buildkit/ssh_agent.", ssh_count_);
  copy::Attrs attrs{m.mode() != 0 ? m.mode() : 0600, m.uid(), m.gid(), 0};
  auto proxy = SshAgentProxy::Start(*agent, socket, attrs);
  if (!proxy.ok()) return where(proxy.status());
  farm::v1::SandboxMount* sm = req->add_mounts();
  sm->set_source((*proxy)->path());
  sm->set_target(target);
  if (ssh_count_ == 0) req->add_env("SSH_AUTH_SOCK=" + target);
  ++ssh_count_;
  proxies_.push_back(std::move(*proxy));
  return absl::OkStatus();
}

}  // namespace farm::worker
