#include "cli/bake/farm_submit_builder.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fs.h"
#include "common/status_macros.h"

namespace farm::cli::bake {

void StepCounter::OnLine(const std::string& line) {
  if (line.empty() || line[0] != '#') return;
  size_t sp = line.find(' ');
  if (sp == std::string::npos) return;
  std::string id = line.substr(0, sp), rest = line.substr(sp + 1);
  if (!names_.count(id)) {
    names_[id] = rest;
    return;
  }
  // "[2/5] RUN make", "[linux/arm64 build 2/5] ...", not "[internal] ..." nor a
  // multi-platform build's "[linux/arm64 internal] ...".
  const std::string& name = names_[id];
  bool step = absl::StartsWith(name, "[") &&
              !absl::StrContains(name.substr(0, name.find(']') + 1), "internal]");
  if (step && rest == "CACHED") ++steps_cached_;
  if (step && absl::StartsWith(rest, "DONE")) ++steps_run_;
}

std::vector<std::string> FarmSubmitBuilder::SecurityArgs(
    const std::vector<std::string>& command_line) {
  static const char* kFlags[] = {"--tls-ca", "--tls-cert", "--tls-key", "--token-file"};
  const std::vector<std::string>& args = command_line;
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    for (const char* fl : kFlags) {
      if (args[i] == fl && i + 1 < args.size()) {
        out.insert(out.end(), {args[i], args[i + 1]});
      } else if (absl::StartsWith(args[i], std::string(fl) + "=")) {
        out.push_back(args[i]);
      }
    }
    if (args[i] == "--tls" || args[i] == "--insecure") out.push_back(args[i]);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> FarmSubmitBuilder::SubmitArgs(
    const TargetRun& r, const std::string& iidfile, const std::string& dockerfile) const {
  const BuildDefaults& d = options_.defaults;
  std::vector<std::string> args = {"farm",  "submit",      "--progress",       "plain", "--iidfile",
                                   iidfile, "--scheduler", options_.scheduler, "-f",    dockerfile};
  for (const auto& [k, v] : r.def.args) args.insert(args.end(), {"--build-arg", k + "=" + v});
  for (const auto& [k, v] : r.def.labels) args.insert(args.end(), {"--label", k + "=" + v});
  for (const oci::Reference& t : r.tags) args.insert(args.end(), {"-t", t.String()});
  if (graph_->IsContextOfAnother(r.def.name) && r.tags.empty()) {
    args.insert(args.end(), {"-t", Graph::ContextTag(r).String()});
  }
  for (const auto& [name, key] : r.named) {
    const ContextDir* e = graph_->FindContext(key);
    if (e == nullptr) return absl::InternalError(absl::StrCat("context ", name, " was not listed"));
    args.insert(args.end(), {"--build-context", absl::StrCat(name, "=", e->dir)});
  }
  for (const auto& [name, ref] : r.images) {
    args.insert(args.end(), {"--build-context", absl::StrCat(name, "=docker-image://", ref)});
  }
  for (const auto& [name, other] : r.targets) {
    args.insert(args.end(),
                {"--build-context", absl::StrCat(name, "=docker-image://",
                                                 Graph::ContextTag(graph_->run(other)).String())});
  }
  if (r.def.target) args.insert(args.end(), {"--target", *r.def.target});
  if (!r.platforms.empty())
    args.insert(args.end(), {"--platform", absl::StrJoin(r.platforms, ",")});
  if (r.def.no_cache.value_or(d.no_cache)) args.push_back("--no-cache");
  if (r.def.pull.value_or(d.pull)) args.push_back("--pull");
  if (r.push || d.push) args.push_back("--push");
  bool loads = false;
  for (const OutputSpec& o : r.outputs) loads |= o.type == "image";
  if (options_.load && !loads) args.push_back("--load");
  for (const OutputSpec& o : r.outputs) {
    args.insert(
        args.end(),
        {"-o", o.type == "image" ? "type=image" : absl::StrCat("type=", o.type, ",dest=", o.dest)});
  }
  for (const std::string& s : ReadScopes(r.def, d.cache_scope, std::cerr)) {
    if (s != d.cache_scope) args.insert(args.end(), {"--cache-from-scope", s});
  }
  args.insert(args.end(), {"--cache-scope", d.cache_scope});
  for (const std::string& i : options_.insecure_registries) {
    args.insert(args.end(), {"--insecure-registry", i});
  }
  for (const std::string& a : options_.security_args) args.push_back(a);
  args.push_back(r.context_dir);
  return args;
}

absl::Status FarmSubmitBuilder::Build(TargetRun* r) {
  ASSIGN_OR_RETURN(common::TempDir tmp, common::TempDir::Create("farm-bake"));
  std::string iid = common::JoinPath(tmp.path(), "iid");
  std::string dockerfile = r->dockerfile_path;
  if (dockerfile.empty()) {
    // dockerfile-inline: the text goes as a file of its own (outside the context, as -f may).
    dockerfile = common::JoinPath(tmp.path(), "Dockerfile");
    RETURN_IF_ERROR(common::WriteFileAtomic(dockerfile, r->dockerfile_text));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> args, SubmitArgs(*r, iid, dockerfile));

  // argv before fork: the child of a threaded process only calls async-signal-safe functions.
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return absl::InternalError("fork failed");
  }
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    execv(options_.program.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  // Relay its lines with the target's prefix, counting steps as they finish.
  StepCounter counter;
  std::string prefix = absl::StrCat("[", r->def.name, "] ");
  std::string buf;
  char chunk[4096];
  auto line_done = [&](const std::string& line) {
    if (!options_.defaults.quiet) {
      std::string w = prefix + line + "\n";
      ssize_t n = write(2, w.data(), w.size());
      (void)n;
    }
    counter.OnLine(line);
  };
  bool killed = false;
  for (;;) {
    if (options_.cancel != nullptr && !killed) {
      // Wait for output at most 100 ms at a time, to notice a cancel.
      struct pollfd pfd = {out[0], POLLIN, 0};
      int ready = poll(&pfd, 1, 100);
      if (ready == 0 || (ready < 0 && errno == EINTR)) {
        if (options_.cancel->HasBeenNotified()) {
          kill(pid, SIGTERM);
          killed = true;
        }
        continue;
      }
    }
    ssize_t n = read(out[0], chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      line_done(buf.substr(0, nl));
      buf.erase(0, nl + 1);
    }
    if (!r->context_ready.HasBeenNotified() && counter.vertices() > 2) r->context_ready.Notify();
  }
  if (!buf.empty()) line_done(buf);
  close(out[0]);
  r->steps_run = counter.steps_run();
  r->steps_cached = counter.steps_cached();
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (killed) return absl::CancelledError("canceled");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::UnknownError("farm submit failed (see its lines above)");
  }
  absl::StatusOr<std::string> id = common::ReadFile(iid);
  if (id.ok()) r->image_id = *id;
  return absl::OkStatus();
}

}  // namespace farm::cli::bake
